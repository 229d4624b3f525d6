"""Mint client tokens locally from an API key (HS256 JWTs as docs/protocol.md describes them)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jwt

MintFunction = Callable[[str, str], str]
"""`mint(client_id, kind)` returns a fresh token."""


def mint_token(
    key: str,
    client_id: str,
    *,
    kind: str = "agent",
    ttl: int = 3600,
    capabilities: dict[str, list[str]] | None = None,
) -> str:
    """A token for `client_id` signed with `key` ("name:secret"), valid for `ttl` seconds."""
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
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": name})


def key_minter(keys: str | Sequence[str], *, ttl: int = 3600) -> MintFunction:
    """A `mint(client_id, kind)` that signs with the first of `keys` (a list or "a:s1,b:s2")."""
    entries = [k.strip() for k in keys.split(",")] if isinstance(keys, str) else list(keys)
    entries = [k for k in entries if k]
    if not entries:
        raise ValueError("no API key given")

    def mint(client_id: str, kind: str) -> str:
        return mint_token(entries[0], client_id, kind=kind, ttl=ttl)

    return mint
