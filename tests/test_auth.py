"""Who may do what: tokens, capabilities, renewal, dev tokens, Origin checks, and clean error replies.

The matrix runs every operation (WebSocket and REST) against five kinds of credentials: allowed,
denied by capabilities, expired, tampered and absent. A refused operation gets its documented
code and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import jwt
import pytest

from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

CH = "room:m"
ALL_OPS = ["subscribe", "publish", "presence", "history", "stream", "cancel"]
BAD_TOKENS = ["expired", "tampered_signature", "tampered_payload", "none"]
# The code a WebSocket `connect` (or a REST call) gets for each bad credential.
BAD_TOKEN_CODE = {"expired": 40102, "tampered_signature": 40101, "tampered_payload": 40101, "none": 40100}
LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|\bchannels\.|\b[A-Z][A-Za-z]*(Error|Exception)\b|0x[0-9a-f]{6,}"
)


def assert_clean(frame: dict[str, Any]) -> None:
    """An error reply names a code and a short safe message: no traceback, no internal names."""
    text = json.dumps(frame)
    assert not LEAKS.search(text), f"error reply leaks internals: {text}"


# --- tokens ------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def tamper_signature(token: str) -> str:
    """Change one character in the middle of the signature (never the last, whose low bits are padding)."""
    head, payload, sig = token.split(".")
    pos = len(sig) // 2
    swapped = "B" if sig[pos] != "B" else "C"
    return f"{head}.{payload}.{sig[:pos]}{swapped}{sig[pos + 1 :]}"


def tamper_payload(token: str) -> str:
    """Rewrite the claims (another client_id, every capability) and keep the original signature."""
    head, payload, sig = token.split(".")
    claims = json.loads(_unb64(payload))
    claims["sub"] = "mallory"
    claims["cap"] = {"*": ["*"]}
    return f"{head}.{_b64(json.dumps(claims).encode())}.{sig}"


def bad_token(srv: TestServer, case: str, client_id: str = "eve") -> str | None:
    """A token for one of the BAD_TOKENS cases (None: no token at all)."""
    if case == "expired":
        return srv.token(client_id, ttl=-5)
    if case == "tampered_signature":
        return tamper_signature(srv.token(client_id))
    if case == "tampered_payload":
        return tamper_payload(srv.token(client_id, capabilities={"room:nothing": []}))
    assert case == "none"
    return None


def caps_without(op: str) -> dict[str, list[str]]:
    return {"room:*": [o for o in ALL_OPS if o != op]}


async def refused_connect(url: str, token: str | None, then: dict[str, Any] | None = None) -> dict[str, Any]:
    """Send `connect` (no token field if None), pipeline `then`; return the error frame after close 4004."""
    wire = await Wire.open(url, None, connect=False)
    try:
        frame: dict[str, Any] = {"type": "connect"}
        if token is not None:
            frame["token"] = token
        await wire.send(frame)
        if then is not None:
            await wire.send({**then, "ref": 1})
        error = await wire.expect("error")
        async with asyncio.timeout(UNIT):
            await wire.closed.wait()
        assert wire.close_code == 4004, f"connect refused must close 4004, got {wire.close_code}"
        assert wire.inbox.empty(), "nothing may follow the refusal"
        assert_clean(error)
        return error
    finally:
        await wire.close()


# --- the WebSocket matrix --------------------------------------------------------------------


@dataclass
class World:
    """A channel with one message, an owner attached and present, and an open stream of the owner's."""

    srv: TestServer
    owner: Wire
    stream_id: str

    async def state(self) -> dict[str, Any]:
        """Everything a refused operation must leave unchanged."""
        history = await self.owner.request({"type": "history", "channel": CH, "limit": 100})
        members = await self.owner.request({"type": "presence_get", "channel": CH})
        occupancy = await self.owner.request({"type": "occupancy", "channel": CH})
        ch = self.srv.broker.registry.get(CH)
        streams = {} if ch is None else {sid: s.content() for sid, s in ch.streams.items()}
        return {
            "history": [(m["serial"], m["client_id"], m["data"]) for m in history["messages"]],
            "members": sorted((m["client_id"], m["connection_id"]) for m in members["members"]),
            "occupancy": occupancy["occupancy"],
            "streams": streams,
        }


async def make_world(srv: TestServer) -> World:
    owner = await Wire.open(srv.ws_url, srv.token("owner", kind="agent"))
    await owner.request({"type": "attach", "channel": CH})
    await owner.request({"type": "presence", "channel": CH, "action": "enter", "data": {"s": "here"}})
    ack = await owner.request({"type": "publish", "channel": CH, "data": "seed"})
    assert ack["serials"] == [1]
    opened = await owner.request({"type": "stream_open", "channel": CH, "name": "answer"})
    stream_id = opened["stream_id"]
    assert (await owner.request({"type": "stream_append", "stream_id": stream_id, "i": 0, "d": "Hel"}))[
        "type"
    ] == "ack"
    return World(srv, owner, stream_id)


# operation -> (capability it needs, needs an attach first, frame builder from the target stream id)
Frame = Callable[[str], dict[str, Any]]
WS_OPS: dict[str, tuple[str, bool, Frame]] = {
    "attach": ("subscribe", False, lambda sid: {"type": "attach", "channel": CH}),
    "publish": (
        "publish",
        False,
        lambda sid: {"type": "publish", "channel": CH, "name": "chat", "data": "x"},
    ),
    "presence_enter": (
        "presence",
        True,
        lambda sid: {"type": "presence", "channel": CH, "action": "enter", "data": {"s": "x"}},
    ),
    "history": ("history", False, lambda sid: {"type": "history", "channel": CH}),
    "presence_get": ("subscribe", False, lambda sid: {"type": "presence_get", "channel": CH}),
    "occupancy": ("subscribe", False, lambda sid: {"type": "occupancy", "channel": CH}),
    "stream_open": ("stream", False, lambda sid: {"type": "stream_open", "channel": CH}),
    "stream_append": (
        "stream",
        False,
        lambda sid: {"type": "stream_append", "stream_id": sid, "i": 1, "d": "lo"},
    ),
    "stream_end": ("stream", False, lambda sid: {"type": "stream_end", "stream_id": sid, "data": "Hello"}),
    "stream_cancel": ("cancel", False, lambda sid: {"type": "stream_cancel", "stream_id": sid}),
}


@pytest.mark.parametrize("op", list(WS_OPS))
async def test_ws_operation_allowed_with_its_capability(server: TestServer, op: str) -> None:
    """A token holding exactly the needed capability gets the operation done, with the token's identity."""
    world = await make_world(server)
    cap, needs_attach, build = WS_OPS[op]
    grants = [cap, "subscribe"] if needs_attach else [cap]
    actor = await Wire.open(server.ws_url, server.token("actor", kind="agent", capabilities={CH: grants}))
    try:
        target = world.stream_id
        if op in ("stream_append", "stream_end"):
            # Only a stream's writer appends and ends it: the actor opens its own.
            target = (await actor.request({"type": "stream_open", "channel": CH}))["stream_id"]
            await actor.request({"type": "stream_append", "stream_id": target, "i": 0, "d": "Hel"})
        if needs_attach:
            assert (await actor.request({"type": "attach", "channel": CH}))["type"] == "attached"
        before = await world.state()
        reply = await actor.request(build(target))
        assert reply["type"] == ("attached" if op == "attach" else "ack"), reply
        after = await world.state()
        if op == "publish":
            assert after["history"] == [(2, "actor", "x"), *before["history"]]
        elif op == "presence_enter":
            assert [m for m in after["members"] if m[0] == "actor"], after["members"]
            assert len(after["members"]) == len(before["members"]) + 1
        elif op == "attach":
            assert after["occupancy"]["connections"] == before["occupancy"]["connections"] + 1
        elif op == "history":
            assert [m["serial"] for m in reply["messages"]] == [1]
        elif op == "presence_get":
            assert [m["client_id"] for m in reply["members"]] == ["owner"]
        elif op == "occupancy":
            assert reply["occupancy"]["presence_members"] == 1
        elif op == "stream_open":
            assert reply["stream_id"] in after["streams"]
        elif op == "stream_append":
            assert after["streams"][target] == "Hello"
        elif op == "stream_end":
            assert target not in after["streams"]
            assert after["history"][0] == (reply["serial"], "actor", "Hello")
        elif op == "stream_cancel":
            assert world.stream_id not in after["streams"]
            assert after["history"][0] == (reply["serial"], "owner", "Hel")
            cancelled = await world.owner.expect("stream_cancelled", stream_id=world.stream_id)
            assert cancelled["by"] == "actor"
    finally:
        await actor.close()
        await world.owner.close()


@pytest.mark.parametrize("op", list(WS_OPS))
async def test_ws_operation_denied_by_capabilities_changes_nothing(server: TestServer, op: str) -> None:
    """Without the needed capability (or as a stream's non-writer) the reply is a nack; nothing changes."""
    world = await make_world(server)
    cap, needs_attach, build = WS_OPS[op]
    if op in ("stream_append", "stream_end"):
        # Appending or ending is the writer's alone: anyone else, even with every capability, gets 40901.
        caps, expected = {"*": ["*"]}, 40901
    else:
        caps, expected = caps_without(cap), 40300
    actor = await Wire.open(server.ws_url, server.token("actor", capabilities=caps))
    try:
        if needs_attach:
            assert (await actor.request({"type": "attach", "channel": CH}))["type"] == "attached"
        before = await world.state()
        reply = await actor.request(build(world.stream_id))
        assert reply["type"] == "nack" and reply["code"] == expected, reply
        assert_clean(reply)
        assert await world.state() == before
        assert (await actor.request({"type": "ping"}))["type"] == "ack", (
            "a refusal does not end the connection"
        )
        if op == "attach":
            subscribers = server.broker.registry.require(CH).subscribers
            assert all(c.identity.client_id != "actor" for c in subscribers)
    finally:
        await actor.close()
        await world.owner.close()


@pytest.mark.parametrize("case", BAD_TOKENS)
@pytest.mark.parametrize("op", list(WS_OPS))
async def test_ws_operation_with_bad_token_is_refused_at_connect(
    server: TestServer, op: str, case: str
) -> None:
    """A bad or missing token is refused at connect (error, close 4004); a pipelined op does nothing."""
    world = await make_world(server)
    try:
        before = await world.state()
        error = await refused_connect(
            server.ws_url, bad_token(server, case), then=WS_OPS[op][2](world.stream_id)
        )
        assert error["code"] == BAD_TOKEN_CODE[case], error
        assert "ref" not in error
        assert await world.state() == before
    finally:
        await world.owner.close()


# --- forged tokens and the first frame -------------------------------------------------------


def _forge(srv: TestServer, how: str) -> str:
    now = int(time.time())
    claims = {"sub": "eve", "kind": "human", "iat": now, "exp": now + 600, "cap": {"*": ["*"]}}
    kid = next(iter(srv.auth.keys))
    if how == "alg_none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": kid})
    if how == "wrong_secret":
        return jwt.encode(claims, "x" * 40, algorithm="HS256", headers={"kid": kid})
    if how == "unknown_kid":
        return jwt.encode(claims, srv.auth.keys[kid], algorithm="HS256", headers={"kid": "other"})
    if how == "no_kid":
        return jwt.encode(claims, srv.auth.keys[kid], algorithm="HS256")
    if how == "bad_capability":
        return jwt.encode({**claims, "cap": {"*": ["root"]}}, srv.auth.keys[kid], headers={"kid": kid})
    if how == "bad_client_id":
        return jwt.encode({**claims, "sub": "has space"}, srv.auth.keys[kid], headers={"kid": kid})
    if how == "no_exp":
        del claims["exp"]
        return jwt.encode(claims, srv.auth.keys[kid], algorithm="HS256", headers={"kid": kid})
    assert how == "garbage"
    return "not.a.jwt"


@pytest.mark.parametrize(
    "how",
    [
        "alg_none",
        "wrong_secret",
        "unknown_kid",
        "no_kid",
        "bad_capability",
        "bad_client_id",
        "no_exp",
        "garbage",
    ],
)
async def test_forged_tokens_are_refused(server: TestServer, how: str) -> None:
    """Tokens signed with no or another key, or with invalid claims, are refused with 40101 and close 4004."""
    error = await refused_connect(server.ws_url, _forge(server, how))
    assert error["code"] == 40101, error
    async with aiohttp.ClientSession() as http:
        headers = {"Authorization": f"Bearer {_forge(server, how)}"}
        async with http.get(f"{server.url}/v1/channels/{CH}/messages", headers=headers) as r:
            assert r.status == 401
            assert (await r.json())["error"]["code"] == 40101


async def test_first_frame_must_be_connect(server: TestServer) -> None:
    """Any frame before `connect` is refused as unauthorized (40100, close 4004) and is not executed."""
    world = await make_world(server)
    try:
        before = await world.state()
        wire = await Wire.open(server.ws_url, None, connect=False)
        await wire.send({"type": "publish", "channel": CH, "data": "sneaky", "ref": 1})
        error = await wire.expect("error")
        async with asyncio.timeout(UNIT):
            await wire.closed.wait()
        assert error["code"] == 40100 and wire.close_code == 4004
        await wire.close()
        assert await world.state() == before
    finally:
        await world.owner.close()


async def test_most_specific_pattern_decides(server: TestServer) -> None:
    """`{"*": ["*"], "admin:*": []}` allows room:x and denies admin:x; an exact name beats a prefix."""
    caps = {"*": ["*"], "admin:*": [], "admin:open": ["subscribe"]}
    wire = await Wire.open(server.ws_url, server.token("a", capabilities=caps))
    try:
        assert (await wire.request({"type": "attach", "channel": "room:x"}))["type"] == "attached"
        denied = await wire.request({"type": "attach", "channel": "admin:x"})
        assert denied["type"] == "nack" and denied["code"] == 40300
        assert (await wire.request({"type": "attach", "channel": "admin:open"}))["type"] == "attached"
        denied = await wire.request({"type": "publish", "channel": "admin:open", "data": 1})
        assert denied["type"] == "nack" and denied["code"] == 40300
    finally:
        await wire.close()


# --- identity comes from the token -------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_client_id_and_kind_come_from_the_token(server: TestServer, fmt: str) -> None:
    """Messages, presence and streams carry the token's client_id and kind; frames cannot set them (40002)."""
    token = server.token("ana", kind="human")
    wire = await Wire.open(server.ws_url, token, fmt=fmt)  # type: ignore[arg-type]
    watcher = await Wire.open(server.ws_url, server.token("w"), fmt=fmt)  # type: ignore[arg-type]
    try:
        await watcher.request({"type": "attach", "channel": CH})
        await wire.request({"type": "attach", "channel": CH})
        forged: list[dict[str, Any]] = [
            {"type": "publish", "channel": CH, "data": "x", "client_id": "boss"},
            {"type": "publish", "channel": CH, "data": "x", "kind": "system"},
            {"type": "publish", "channel": CH, "messages": [{"data": "x", "client_id": "boss"}]},
            {"type": "presence", "channel": CH, "action": "enter", "client_id": "boss"},
            {"type": "presence", "channel": CH, "action": "enter", "kind": "system"},
            {"type": "stream_open", "channel": CH, "client_id": "boss"},
        ]
        for frame in forged:
            reply = await wire.request(frame)
            assert reply["type"] == "nack" and reply["code"] == 40002, (frame, reply)
            assert_clean(reply)
        history = await wire.request({"type": "history", "channel": CH})
        assert history["messages"] == []
        await wire.request({"type": "publish", "channel": CH, "data": "hi"})
        await wire.request(
            {"type": "presence", "channel": CH, "action": "enter", "data": {"client_id": "boss"}}
        )
        [message] = await watcher.messages(1)
        assert (message["client_id"], message["kind"]) == ("ana", "human")
        presence = await watcher.expect("presence", action="enter")
        assert (presence["member"]["client_id"], presence["member"]["kind"]) == ("ana", "human")
        stream = await wire.request({"type": "stream_open", "channel": CH})
        opened = await watcher.expect("stream_open", stream_id=stream["stream_id"])
        assert (opened["client_id"], opened["kind"]) == ("ana", "human")
    finally:
        await wire.close()
        await watcher.close()


# --- REST matrix -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestOp:
    method: str
    path: str
    capability: str
    body: dict[str, Any] | None = None


REST_OPS = {
    "post_messages": RestOp(
        "POST", f"/v1/channels/{CH}/messages", "publish", {"data": "via rest", "name": "chat"}
    ),
    "get_messages": RestOp("GET", f"/v1/channels/{CH}/messages", "history"),
    "get_presence": RestOp("GET", f"/v1/channels/{CH}/presence", "subscribe"),
    "get_occupancy": RestOp("GET", f"/v1/channels/{CH}/occupancy", "subscribe"),
    "get_events": RestOp("GET", f"/v1/channels/{CH}/events", "subscribe"),
}
REST_CASES = ["allowed", "denied", *BAD_TOKENS]


async def rest_call(
    srv: TestServer, op: RestOp, token: str | None, *, via_query: bool = False
) -> tuple[int, dict[str, Any] | str]:
    """One REST call; the JSON body, or for a successful SSE the first line of the stream."""
    headers: dict[str, str] = {}
    params: dict[str, str] = {}
    if token is not None and via_query:
        params["token"] = token
    elif token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if op.path.endswith("/events"):
        # Raw HTTP, so this auth check does not depend on the SSE body framing (test_sse_body_is_readable...).
        path = op.path + (f"?token={token}" if via_query and token else "")
        return await raw_sse(srv, path, headers)
    async with (
        aiohttp.ClientSession() as http,
        http.request(op.method, srv.url + op.path, json=op.body, headers=headers, params=params) as r,
    ):
        return r.status, await r.json()


async def raw_sse(srv: TestServer, path: str, headers: dict[str, str]) -> tuple[int, dict[str, Any] | str]:
    """GET an SSE path over a raw socket: the status and JSON error, or "<event-stream>" for a 200 stream."""
    host, port = srv.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}:{port}", *(f"{k}: {v}" for k, v in headers.items())]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        async with asyncio.timeout(UNIT):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            status = int(head.split(" ", 2)[1])
            fields = {
                k.strip().lower(): v.strip()
                for k, _, v in (ln.partition(":") for ln in head.split("\r\n")[1:])
                if k
            }
            if status == 200:
                assert fields["content-type"].startswith("text/event-stream")
                return status, "<event-stream>"
            return status, json.loads(await reader.readexactly(int(fields["content-length"])))
    finally:
        writer.close()


@pytest.mark.parametrize("case", REST_CASES)
@pytest.mark.parametrize("name", list(REST_OPS))
async def test_rest_matrix(server: TestServer, name: str, case: str) -> None:
    """REST calls: 2xx when allowed; 403 40300 when denied; 401 with 40102/40101/40100 for bad tokens."""
    world = await make_world(server)
    op = REST_OPS[name]
    try:
        before = await world.state()
        if case == "allowed":
            token: str | None = server.token("rester", kind="agent", capabilities={"room:*": [op.capability]})
        elif case == "denied":
            token = server.token("rester", capabilities=caps_without(op.capability))
        else:
            token = bad_token(server, case)
        status, body = await rest_call(server, op, token)
        if case == "allowed":
            assert status == (201 if op.method == "POST" else 200), body
            after = await world.state()
            if name == "post_messages":
                assert isinstance(body, dict) and body["serials"] == [2]
                assert after["history"] == [(2, "rester", "via rest"), *before["history"]]
            else:
                assert after["history"] == before["history"]
            if name == "get_messages":
                assert isinstance(body, dict) and [m["serial"] for m in body["messages"]] == [1]
            elif name == "get_presence":
                assert isinstance(body, dict) and [m["client_id"] for m in body["members"]] == ["owner"]
            elif name == "get_occupancy":
                assert isinstance(body, dict) and body["occupancy"]["presence_members"] == 1
            elif name == "get_events":
                assert body == "<event-stream>"
            return
        expected = 40300 if case == "denied" else BAD_TOKEN_CODE[case]
        assert status == expected // 100, (status, body)
        assert isinstance(body, dict) and body["error"]["code"] == expected, body
        assert isinstance(body["error"]["message"], str)
        assert_clean(body)
        assert await world.state() == before
    finally:
        await world.owner.close()


async def test_rest_token_in_query_only_for_get(server: TestServer) -> None:
    """`?token=` authenticates GET (for EventSource) but not POST."""
    token = server.token("q")
    status, body = await rest_call(server, REST_OPS["get_messages"], token, via_query=True)
    assert status == 200, body
    status, body = await rest_call(server, REST_OPS["post_messages"], token, via_query=True)
    assert status == 401 and isinstance(body, dict) and body["error"]["code"] == 40100


async def test_sse_body_is_readable_by_an_http_client(server: TestServer) -> None:
    """An allowed SSE stream is valid HTTP/1.1: a standard client reads `retry:` and the first event."""
    world = await make_world(server)
    headers = {"Authorization": f"Bearer {server.token('reader', capabilities={'room:*': ['subscribe']})}"}
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.url}/v1/channels/{CH}/events?after=0", headers=headers) as r,
        ):
            assert r.status == 200
            lines: list[str] = []
            async with asyncio.timeout(UNIT):
                while "event: message" not in lines:
                    lines.append((await r.content.readline()).decode().rstrip("\n"))
            assert lines[0] == "retry: 1000"
    finally:
        await world.owner.close()


# --- POST /v1/tokens ---------------------------------------------------------------------------


def _basic(name: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()


@pytest.mark.parametrize(
    "case", ["allowed", "wrong_secret", "unknown_key", "bearer_token", "malformed", "none"]
)
async def test_token_endpoint_needs_an_api_key(server: TestServer, case: str) -> None:
    """POST /v1/tokens mints a working token with the API key (Basic); anything else is 401 40100."""
    name, secret = next(iter(server.auth.keys.items()))
    auth = {
        "allowed": _basic(name, secret),
        "wrong_secret": _basic(name, secret[:-1] + ("x" if secret[-1] != "x" else "y")),
        "unknown_key": _basic("nobody", secret),
        "bearer_token": f"Bearer {server.token('a')}",
        "malformed": "Basic !!!not-base64!!!",
        "none": None,
    }[case]
    body = {"client_id": "minted", "kind": "agent", "ttl": 600, "capabilities": {"room:*": ["subscribe"]}}
    headers = {} if auth is None else {"Authorization": auth}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/tokens", json=body, headers=headers) as r,
    ):
        status, reply = r.status, await r.json()
    if case != "allowed":
        assert status == 401 and reply["error"]["code"] == 40100, reply
        assert "token" not in reply
        assert_clean(reply)
        return
    assert status == 200 and reply["client_id"] == "minted"
    wire = await Wire.open(server.ws_url, reply["token"])
    try:
        assert wire.connected["client_id"] == "minted" and wire.connected["kind"] == "agent"
        assert wire.connected["expires_at"] == reply["expires_at"]
        assert (await wire.request({"type": "attach", "channel": "room:a"}))["type"] == "attached"
        denied = await wire.request({"type": "publish", "channel": "room:a", "data": 1})
        assert denied["code"] == 40300
    finally:
        await wire.close()


async def test_token_endpoint_rejects_invalid_requests(server: TestServer) -> None:
    """Invalid client_id, kind, ttl or capabilities are 400 with 4000x codes, never 500."""
    name, secret = next(iter(server.auth.keys.items()))
    headers = {"Authorization": _basic(name, secret)}
    bodies: list[Any] = [
        {"client_id": "has space"},
        {"client_id": "a", "kind": "root"},
        {"client_id": "a", "ttl": -1},
        {"client_id": "a", "capabilities": {"*": ["root"]}},
        {"client_id": "a", "capabilities": ["*"]},
        {"client_id": "a", "extra": 1},
        [],
    ]
    async with aiohttp.ClientSession() as http:
        for body in bodies:
            async with http.post(f"{server.url}/v1/tokens", json=body, headers=headers) as r:
                reply = await r.json()
                assert r.status == 400 and reply["error"]["code"] in (40002, 40004), (body, reply)
                assert_clean(reply)


# --- dev tokens ----------------------------------------------------------------------------------


async def test_dev_token_endpoint_absent_without_dev(server: TestServer) -> None:
    """POST /v1/dev/token does not exist unless the server runs with dev=True (404)."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}/v1/dev/token", json={"client_id": "a"}) as r,
    ):
        assert r.status == 404


async def test_dev_token_endpoint_with_dev(make_server: Callable[..., Awaitable[TestServer]]) -> None:
    """With dev=True the endpoint mints a working token without credentials."""
    srv = await make_server(dev=True)
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{srv.url}/v1/dev/token", json={"client_id": "dev-user", "kind": "human"}) as r,
    ):
        assert r.status == 200
        reply = await r.json()
    wire = await Wire.open(srv.ws_url, reply["token"])
    try:
        assert wire.connected["client_id"] == "dev-user"
        assert (await wire.request({"type": "publish", "channel": "room:a", "data": 1}))["type"] == "ack"
    finally:
        await wire.close()


# --- renewal and expiry -------------------------------------------------------------------------


async def test_renewal_keeps_the_connection_past_the_old_expiry(server: TestServer) -> None:
    """A short-lived token gets auth_renew; a fresh token is acked and the connection outlives the old one."""
    wire = await Wire.open(server.ws_url, server.token("renewer", kind="agent", ttl=3))
    try:
        await wire.request({"type": "attach", "channel": CH})
        renew = await wire.expect("auth_renew", timeout=UNIT)
        assert renew["expires_at"] == wire.connected["expires_at"]
        fresh, fresh_exp = server.auth.mint("renewer", kind="agent", ttl=3600)
        ack = await wire.request({"type": "auth", "token": fresh})
        assert ack["type"] == "ack" and ack["expires_at"] == fresh_exp
        # A canary whose token expires no earlier than the old one is closed 4003: the old expiry has passed.
        canary = await Wire.open(server.ws_url, server.token("canary", ttl=3))
        async with asyncio.timeout(UNIT * 2):
            await canary.closed.wait()
        assert canary.close_code == 4003
        await canary.close()
        assert not wire.closed.is_set()
        assert (await wire.request({"type": "ping"}))["type"] == "ack"
        assert (await wire.request({"type": "publish", "channel": CH, "data": "still here"}))["type"] == "ack"
    finally:
        await wire.close()


@pytest.mark.parametrize(
    ("case", "code"),
    [("other_client", 40101), ("other_kind", 40101), ("expired", 40102), ("tampered", 40101)],
)
async def test_renewal_with_a_wrong_token_is_refused(server: TestServer, case: str, code: int) -> None:
    """auth with another client_id or kind, an expired or a tampered token is nacked; the connection stays."""
    wire = await Wire.open(server.ws_url, server.token("renewer", kind="agent"))
    try:
        token = {
            "other_client": lambda: server.token("someone-else", kind="agent"),
            "other_kind": lambda: server.token("renewer", kind="system"),
            "expired": lambda: server.token("renewer", kind="agent", ttl=-5),
            "tampered": lambda: tamper_signature(server.token("renewer", kind="agent")),
        }[case]()
        reply = await wire.request({"type": "auth", "token": token})
        assert reply["type"] == "nack" and reply["code"] == code, reply
        assert_clean(reply)
        assert (await wire.request({"type": "ping"}))["type"] == "ack"
        assert server.broker.sessions.get(wire.connected["session_id"]).client_id == "renewer"  # type: ignore[union-attr]
    finally:
        await wire.close()


async def test_expired_connection_is_closed_4003(server: TestServer) -> None:
    """Without renewal, the connection gets auth_renew and is closed with 4003 when the token expires."""
    wire = await Wire.open(server.ws_url, server.token("late", ttl=2))
    try:
        await wire.expect("auth_renew", timeout=UNIT)
        async with asyncio.timeout(UNIT * 2):
            await wire.closed.wait()
        assert wire.close_code == 4003
    finally:
        await wire.close()


async def test_renewal_with_fewer_capabilities_detaches(server: TestServer) -> None:
    """A renewed token without subscribe on an attached channel detaches it with 40300."""
    wire = await Wire.open(server.ws_url, server.token("r"))
    try:
        await wire.request({"type": "attach", "channel": CH})
        await wire.request({"type": "attach", "channel": "room:other"})
        token = server.token("r", capabilities={"room:other": ["subscribe"]})
        assert (await wire.request({"type": "auth", "token": token}))["type"] == "ack"
        detached = await wire.expect("detached", channel=CH)
        assert detached["code"] == 40300
        denied = await wire.request({"type": "publish", "channel": "room:other", "data": 1})
        assert denied["code"] == 40300
    finally:
        await wire.close()


async def test_stream_append_needs_stream_capability_after_renewal(server: TestServer) -> None:
    """A writer whose renewed token lost `stream` can no longer append to or end its stream (40300)."""
    wire = await Wire.open(server.ws_url, server.token("w"))
    try:
        sid = (await wire.request({"type": "stream_open", "channel": CH}))["stream_id"]
        assert (await wire.request({"type": "stream_append", "stream_id": sid, "i": 0, "d": "a"}))[
            "type"
        ] == "ack"
        token = server.token("w", capabilities={"room:*": ["subscribe", "history"]})
        assert (await wire.request({"type": "auth", "token": token}))["type"] == "ack"
        reply = await wire.request({"type": "stream_append", "stream_id": sid, "i": 1, "d": "b"})
        assert reply["type"] == "nack" and reply["code"] == 40300, reply
    finally:
        await wire.close()


# --- Origin checks ---------------------------------------------------------------------------------


async def _ws_status(srv: TestServer, origin: str | None) -> int:
    """101 if the WebSocket upgrade with this Origin succeeds, else the HTTP status."""
    headers = {} if origin is None else {"Origin": origin}
    async with aiohttp.ClientSession() as http:
        try:
            ws = await http.ws_connect(f"{srv.ws_url}?format=json", headers=headers)
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101


async def _sse(srv: TestServer, origin: str | None) -> tuple[int, dict[str, Any] | str]:
    headers = {"Authorization": f"Bearer {srv.token('sse')}"}
    if origin is not None:
        headers["Origin"] = origin
    return await raw_sse(srv, f"/v1/channels/{CH}/events", headers)


async def test_foreign_origin_is_refused(server: TestServer) -> None:
    """A WebSocket or SSE request with a foreign Origin gets 403 (40301); same-origin and no Origin pass."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(server.ws_url, headers={"Origin": "http://evil.example"}) as r,
    ):
        assert r.status == 403 and (await r.json())["error"]["code"] == 40301
    assert await _ws_status(server, "http://evil.example") == 403
    status, body = await _sse(server, "http://evil.example")
    assert status == 403 and isinstance(body, dict) and body["error"]["code"] == 40301
    assert await _ws_status(server, server.url) == 101
    assert await _ws_status(server, None) == 101
    assert (await _sse(server, server.url))[0] == 200


async def test_allowed_origins_pass(make_server: Callable[..., Awaitable[TestServer]]) -> None:
    """Origins in allowed_origins pass the WebSocket and SSE checks and get CORS headers; others do not."""
    srv = await make_server(allowed_origins=["https://app.example"])
    assert await _ws_status(srv, "https://app.example") == 101
    assert (await _sse(srv, "https://app.example"))[0] == 200
    assert await _ws_status(srv, "https://other.example") == 403
    headers = {"Origin": "https://app.example", "Authorization": f"Bearer {srv.token('c')}"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{srv.url}/v1/channels/{CH}/messages", headers=headers) as r:
            assert r.headers.get("Access-Control-Allow-Origin") == "https://app.example"
        headers["Origin"] = "https://other.example"
        async with http.get(f"{srv.url}/v1/channels/{CH}/messages", headers=headers) as r:
            assert "Access-Control-Allow-Origin" not in r.headers


# --- error replies are clean ----------------------------------------------------------------------


async def test_error_replies_carry_no_internals(server: TestServer) -> None:
    """Every kind of refusal over WebSocket and REST has a code and a short message without internals."""
    wire = await Wire.open(server.ws_url, server.token("a", capabilities={"room:*": ["subscribe"]}))
    replies: list[dict[str, Any]] = []
    try:
        for raw in ["{", "[]", '{"type": 1}', '{"type": "nope"}', '{"type": "ping", "ref": -1}']:
            await wire.send_raw(raw)
            replies.append(await wire.expect("error"))
        for frame in [
            {"type": "publish", "channel": "room:a", "data": 1},
            {"type": "publish", "channel": "bad name", "data": 1},
            {"type": "history", "channel": "room:a", "limit": "many"},
            {"type": "presence", "channel": "room:a", "action": "enter"},
            {"type": "stream_append", "stream_id": "s_missing", "i": 0, "d": "x"},
            {"type": "connect", "token": "x"},
            {"type": "auth", "token": "x"},
        ]:
            replies.append(await wire.request(frame))
        async with aiohttp.ClientSession() as http:
            for method, path, body in [
                ("POST", f"/v1/channels/{CH}/messages", "{not json"),
                ("POST", "/v1/channels/bad%20name/messages", "{}"),
                ("GET", f"/v1/channels/{CH}/messages?limit=-1", None),
                ("GET", f"/v1/channels/{CH}/events?after=x", None),
            ]:
                headers = {"Authorization": f"Bearer {server.token('a')}", "Content-Type": "application/json"}
                async with http.request(method, server.url + path, data=body, headers=headers) as r:
                    assert 400 <= r.status < 500, (path, r.status)
                    replies.append(await r.json())
    finally:
        await wire.close()
    for reply in replies:
        assert reply.get("type") in ("error", "nack") or "error" in reply, reply
        assert_clean(reply)
