"""Client tokens: minted locally from an API key (HS256 JWTs as docs/protocol.md describes them), or
asked from a server in development mode."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import aiohttp
import jwt

from agentchat.connection import http_url
from agentchat.errors import AgentChatError, DevModeOff, RequestError
from agentchat_server.protocol import Code

MintFunction = Callable[[str, str], str]
"""`mint(client_id, kind)` returns a fresh token."""


def mint_token(
    key: str,
    client_id: str,
    *,
    kind: str = "agent",
    ttl: int = 3600,
    capabilities: dict[str, list[str]] | None = None,
    display_name: str | None = None,
) -> str:
    """A token for `client_id` signed with `key` ("name:secret"), valid for `ttl` seconds; with
    `display_name`, the member's messages, streams and presence entries carry that name."""
    name, sep, secret = key.partition(":")
    if not sep or not name or not secret:
        raise ValueError("an API key is 'name:secret'")
    issued = int(time.time())
    claims = {
        "sub": client_id,
        "kind": kind,
        "iat": issued,
        "exp": issued + ttl,
        "cap": capabilities if capabilities is not None else {"*": ["*"]},
    }
    if display_name is not None:
        claims["name"] = display_name
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": name})


def first_key(keys: str | Sequence[str]) -> str:
    """The first API key of a list or of "name1:secret1,name2:secret2"; ValueError when there is none."""
    entries = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else [k.strip() for k in keys]
    entries = [k for k in entries if k]
    if not entries:
        raise ValueError("no API key given")
    return entries[0]


def key_minter(keys: str | Sequence[str], *, ttl: int = 3600) -> MintFunction:
    """A `mint(client_id, kind)` that signs with the first of `keys` (a list or "a:s1,b:s2")."""
    key = first_key(keys)

    def mint(client_id: str, kind: str) -> str:
        """A fresh token for `client_id` of `kind`."""
        return mint_token(key, client_id, kind=kind, ttl=ttl)

    return mint


async def dev_token(
    url: str,
    client_id: str,
    kind: str = "agent",
    *,
    display_name: str | None = None,
    session: aiohttp.ClientSession | None = None,
) -> str:
    """A token for `client_id` (and `display_name`, if given) from a server started in development
    mode (`agentchat serve --dev`), by `POST /v1/dev/token`; it allows everything, for local demos.

    Raises DevModeOff when the server does not mint development tokens, RequestError when it refuses
    the request (e.g. an invalid client_id), AgentChatError when it cannot be reached.
    """
    endpoint = http_url(url, "/v1/dev/token")
    http = session or aiohttp.ClientSession()
    try:
        payload = {"client_id": client_id, "kind": kind}
        if display_name is not None:
            payload["display_name"] = display_name
        async with http.post(endpoint, json=payload) as response:
            if response.status in (404, 405):
                raise DevModeOff(
                    f"the server at {url} does not mint development tokens: start it with "
                    "`agentchat serve --dev`, or mint tokens with an API key (agentchat.tokens.mint_token)"
                )
            body = await response.json(content_type=None)
    except (aiohttp.ClientError, OSError) as exc:
        raise AgentChatError(f"cannot get a development token from {endpoint}: {exc}") from exc
    except ValueError as exc:
        raise AgentChatError(
            f"{endpoint} answered {response.status} with something that is not JSON"
        ) from exc
    finally:
        if session is None:
            await http.close()
    if response.status != 200 or not isinstance(body, dict) or not isinstance(body.get("token"), str):
        error = body.get("error") if isinstance(body, dict) else None
        error = error if isinstance(error, dict) else {}
        code = error.get("code")
        message = str(error.get("message") or f"{endpoint} answered {response.status}")
        raise RequestError(code if isinstance(code, int) else Code.BAD_REQUEST, message)
    return str(body["token"])
