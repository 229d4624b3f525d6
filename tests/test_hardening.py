"""What a hostile member (or an honest big answer) tried against one node, over real sockets.

Each test is one finding of the adversarial campaign: it failed on the server before the fix.
Memory findings (history storms, stream memory) are in tests/test_memory.py.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest

from agentchat_server.protocol import CloseCode, Code
from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

CH = "room:hard"


# --- 1. ids that cannot be taken -------------------------------------------------------------


async def test_a_member_cannot_erase_an_answer_by_taking_its_stream_id(connect: Callable[..., Any]) -> None:
    """Publishing with the id a stream announced does not make the writer's end ack someone else's message."""
    writer = await connect("planner", kind="agent")
    mallory = await connect("mallory")
    reader = await connect("reader")
    await reader.request({"type": "attach", "channel": CH, "presence": False})
    await mallory.request({"type": "attach", "channel": CH, "presence": False})
    opened = await writer.request({"type": "stream_open", "channel": CH})
    stream_id = opened["stream_id"]
    announced = await mallory.expect("stream_open")
    assert announced["stream_id"] == stream_id
    squat = await mallory.request({"type": "publish", "channel": CH, "id": stream_id, "data": "gotcha"})
    assert squat["type"] == "ack" and squat["duplicates"] == []
    await writer.request({"type": "stream_append", "stream_id": stream_id, "i": 0, "d": "the real answer"})
    ended = await writer.request({"type": "stream_end", "stream_id": stream_id})
    assert ended["type"] == "ack" and ended["serial"] != squat["serials"][0]
    history = await reader.request({"type": "history", "channel": CH, "limit": 10})
    answers = [m for m in history["messages"] if m.get("stream_id") == stream_id]
    assert [(m["client_id"], m["data"]) for m in answers] == [("planner", "the real answer")]


async def test_a_member_cannot_pre_empt_another_members_reply_id(connect: Callable[..., Any]) -> None:
    """An id chosen ahead by another member does not silence the one who planned to use it."""
    bot = await connect("bot", kind="agent")
    mallory = await connect("mallory")
    planned = "bot:reply:room:hard:2"
    taken = await mallory.request({"type": "publish", "channel": CH, "id": planned, "data": "squatted"})
    assert taken["type"] == "ack"
    answer = await bot.request({"type": "stream_open", "channel": CH, "id": planned})
    assert answer["type"] == "ack", answer  # not 40902: the id is the bot's own
    retry = await bot.request({"type": "publish", "channel": CH, "id": "same", "data": 1})
    again = await bot.request({"type": "publish", "channel": CH, "id": "same", "data": 2})
    assert again["serials"] == retry["serials"] and again["duplicates"] == [0]


# --- 2. no single frame trips the slow-consumer close ------------------------------------------


async def test_big_presence_sets_reach_a_newcomer_in_pages(make_server: Callable[..., Any]) -> None:
    """Eighty members with 60 kB each (4.8 MB) reach a newcomer in byte-bounded pages, without 4008."""
    srv: TestServer = await make_server(max_presence_bytes=60_000)
    data = {"blob": "x" * 59_000}
    members = [await Wire.open(srv.ws_url, srv.token(f"m{i}")) for i in range(80)]
    newcomer: Wire | None = None
    try:
        for wire in members:
            await wire.request({"type": "attach", "channel": CH, "presence": False})
            await wire.request({"type": "presence", "channel": CH, "action": "enter", "data": data})
        newcomer = await Wire.open(srv.ws_url, srv.token("newcomer"))
        await newcomer.request({"type": "attach", "channel": CH})
        seen: set[str] = set()
        pages = 0
        while True:
            page = await newcomer.expect("presence_sync", timeout=UNIT * 4)
            pages += 1
            assert len(json.dumps(page)) <= srv.settings.max_page_bytes + 60_000
            seen.update(m["client_id"] for m in page["members"])
            if page["last"]:
                break
        assert seen == {f"m{i}" for i in range(80)} and pages > 1
        listed: set[str] = set()
        after = None
        while True:
            reply = await newcomer.request(
                {"type": "presence_get", "channel": CH, **({"after": after} if after else {})}
            )
            listed.update(m["client_id"] for m in reply["members"])
            if not reply["has_more"]:
                break
            after = reply["next"]
        assert listed == seen
        assert not newcomer.closed.is_set()
    finally:
        await asyncio.gather(*(w.close() for w in [*members, *([newcomer] if newcomer else [])]))


async def test_history_of_big_messages_comes_in_pages(connect: Callable[..., Any]) -> None:
    """Forty messages of 60 kB and the default history page: a bounded page with has_more, no 4008."""
    writer = await connect("writer")
    for _ in range(4):
        await writer.request({"type": "publish", "channel": CH, "messages": [{"data": "y" * 60_000}] * 1})
    for i in range(36):
        await writer.request({"type": "publish", "channel": CH, "data": "y" * 60_000, "id": f"b{i}"})
    reader = await connect("reader")
    pages = []
    before = None
    while True:
        frame: dict[str, Any] = {"type": "history", "channel": CH}
        if before is not None:
            frame["before"] = before
        page = await reader.request(frame)
        pages.append(len(page["messages"]))
        if not page["has_more"]:
            break
        before = page["messages"][-1]["serial"]
    assert sum(pages) == 40 and max(pages) < 40
    assert not reader.closed.is_set()


async def test_a_stream_of_exactly_the_limit_reaches_live_readers_and_replays(
    connect: Callable[..., Any], server: TestServer
) -> None:
    """An honest stream of exactly max_stream_bytes ends for live readers and replays later, no 4008."""
    limit = server.settings.max_stream_bytes
    readers = [await connect(f"r{i}", fmt=fmt) for i, fmt in enumerate(("json", "msgpack"))]
    for r in readers:
        await r.request({"type": "attach", "channel": CH, "presence": False})
    writer = await connect("writer", kind="agent")
    stream_id = (await writer.request({"type": "stream_open", "channel": CH}))["stream_id"]
    chunk = "z" * 65_536
    for i in range(limit // len(chunk)):
        await writer.request({"type": "stream_append", "stream_id": stream_id, "i": i, "d": chunk})
    over = await writer.request(
        {"type": "stream_append", "stream_id": stream_id, "i": limit // len(chunk), "d": "!"}
    )
    assert over["code"] == Code.STREAM_TOO_LARGE
    ended = await writer.request({"type": "stream_end", "stream_id": stream_id})
    for r in readers:
        final = await r.expect("message", timeout=UNIT * 4, stream_id=stream_id)
        assert len(final["data"]) == limit and not r.closed.is_set()
    late = await connect("late")
    replay = await late.request({"type": "attach", "channel": CH, "position": {"serial": 0}})
    assert replay["resumed"] is True
    (message,) = await late.messages(1)
    assert message["serial"] == ended["serial"] and len(message["data"]) == limit


async def test_stream_size_counts_json_escapes(connect: Callable[..., Any], server: TestServer) -> None:
    """180,000 x U+0001 is 1.08 MB of JSON: refused past max_stream_bytes, not counted as 180 kB."""
    writer = await connect("writer", kind="agent")
    stream_id = (await writer.request({"type": "stream_open", "channel": CH}))["stream_id"]
    refused = None
    for i in range(30):
        reply = await writer.request(
            {"type": "stream_append", "stream_id": stream_id, "i": i, "d": "\u0001" * 6_000}
        )
        if reply["type"] == "nack":
            refused = (i, reply["code"])
            break
    assert refused is not None and refused[1] == Code.STREAM_TOO_LARGE
    assert refused[0] * 36_000 <= server.settings.max_stream_bytes < (refused[0] + 1) * 36_000


async def test_message_size_counts_bytes_not_characters(connect: Callable[..., Any]) -> None:
    """A 129,000-byte CJK message (43,000 characters) passes no 65,536-byte limit."""
    writer = await connect("writer")
    reply = await writer.request({"type": "publish", "channel": CH, "data": "中" * 43_000})
    assert reply["code"] == Code.MESSAGE_TOO_LARGE and reply["limit"] == 65_536
    fits = await writer.request({"type": "publish", "channel": CH, "data": "中" * 20_000})
    assert fits["type"] == "ack"


# --- 4-7. strict input -------------------------------------------------------------------------


async def test_superscript_digits_are_not_numbers(server: TestServer) -> None:
    """`?limit=²` and `Last-Event-ID: x:²` are a 400 with a code, never a 500 with a traceback."""
    token = server.token("ana")
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for query in ("limit=²", "before=١٢", "after=+3", "limit= 5"):
            async with http.get(f"{server.url}/v1/channels/{CH}/messages?{query}", headers=headers) as resp:
                assert resp.status == 400, query
                assert (await resp.json())["error"]["code"] == Code.INVALID_VALUE
        async with http.get(
            f"{server.url}/v1/channels/{CH}/events", headers={**headers, "Last-Event-ID": "x:²"}
        ) as resp:
            assert resp.status == 400
            assert (await resp.json())["error"]["code"] == Code.INVALID_VALUE


async def test_sse_over_the_connection_limit_is_refused_before_the_stream(
    make_server: Callable[..., Any],
) -> None:
    """SSE beyond max_connections_per_client answers 429 with an error body, not a 200 stream."""
    srv: TestServer = await make_server(max_connections_per_client=1)
    url = f"{srv.url}/v1/channels/{CH}/events?token={srv.token('ana')}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as first:
            assert first.status == 200
            async with http.get(url) as second:
                assert second.status == 429
                assert second.headers["Content-Type"].startswith("application/json")
                assert (await second.json())["error"]["code"] == Code.TOO_MANY_CONNECTIONS


async def test_names_match_whole_not_up_to_a_newline(server: TestServer) -> None:
    """`room:secret\\n` is not a channel (REST, SSE), and `alice\\n` is not a client id (tokens)."""
    token = server.token("ana", capabilities={"room:*": ["*"], "room:secret": []})
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession() as http:
        for method, path in (("POST", "messages"), ("GET", "messages"), ("GET", "events")):
            async with http.request(
                method, f"{server.url}/v1/channels/room:secret%0A/{path}", headers=headers, json={"data": 1}
            ) as resp:
                assert resp.status == 400, (method, path)
                assert (await resp.json())["error"]["code"] == Code.INVALID_VALUE
    claims = {"sub": "alice\n", "exp": int(time.time()) + 60, "cap": {"*": ["*"]}}
    kid, secret = next(iter(server.auth.keys.items()))
    forged = jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/v1/channels/{CH}/messages", headers={"Authorization": f"Bearer {forged}"}
        ) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == Code.TOKEN_INVALID


def _raw_token(server: TestServer, exp_literal: str) -> str:
    """A token signed with the server's key whose exp is a literal JSON text (Infinity, NaN, 1e400)."""
    kid, secret = next(iter(server.auth.keys.items()))
    header = base64.urlsafe_b64encode(json.dumps({"alg": "HS256", "kid": kid}).encode()).rstrip(b"=")
    body = '{"sub": "ana", "cap": {"*": ["*"]}, "exp": ' + exp_literal + "}"
    payload = base64.urlsafe_b64encode(body.encode()).rstrip(b"=")
    signing = header + b"." + payload
    import hashlib
    import hmac

    signature = base64.urlsafe_b64encode(hmac.new(secret.encode(), signing, hashlib.sha256).digest()).rstrip(
        b"="
    )
    return (signing + b"." + signature).decode()


@pytest.mark.parametrize("exp", ["Infinity", "NaN", "1e400", "-Infinity", "true"])
async def test_tokens_with_non_finite_expiry_are_invalid(server: TestServer, exp: str) -> None:
    """exp = Infinity or NaN: REST 401, a WebSocket error frame with 40101; never a 500 or a silent close."""
    token = _raw_token(server, exp)
    async with aiohttp.ClientSession() as http:
        async with http.get(
            f"{server.url}/v1/channels/{CH}/messages", headers={"Authorization": f"Bearer {token}"}
        ) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["code"] == Code.TOKEN_INVALID
        async with http.ws_connect(server.ws_url) as ws:
            await ws.send_json({"type": "connect", "token": token})
            refusal = await ws.receive_json(timeout=UNIT)
            assert refusal["type"] == "error" and refusal["code"] == Code.TOKEN_INVALID
            closing = await ws.receive(timeout=UNIT)
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == CloseCode.UNAUTHORIZED


async def test_an_expired_token_stops_working_at_once(server: TestServer) -> None:
    """The first frame after expiry is refused (40102) and the connection closes with 4003, sweep or not."""
    token, expires = server.auth.mint("ana", ttl=10, now=time.time() - 8)
    wire = await Wire.open(server.ws_url, token)
    try:
        # Wall-clock time must pass; there is no event to await for a token's expiry.
        await asyncio.sleep(max(0.0, expires - time.time()) + 0.01)
        reply = await wire.request({"type": "publish", "channel": CH, "data": "late"})
        assert reply["type"] == "nack" and reply["code"] == Code.TOKEN_EXPIRED
        async with asyncio.timeout(UNIT):
            await wire.closed.wait()
        assert wire.close_code == CloseCode.TOKEN_EXPIRED
    finally:
        await wire.close()


# --- 9-10. limits everywhere a client can push --------------------------------------------------


async def test_rest_publish_is_rate_limited_with_retry_after(make_server: Callable[..., Any]) -> None:
    """REST publishes past the per-client burst get 429 with Retry-After and code 42900."""
    srv: TestServer = await make_server(rest_publish_rate=1, rest_publish_burst=3)
    headers = {"Authorization": f"Bearer {srv.token('ana')}"}
    statuses = []
    async with aiohttp.ClientSession() as http:
        for i in range(5):
            async with http.post(
                f"{srv.url}/v1/channels/{CH}/messages", headers=headers, json={"data": i}
            ) as resp:
                statuses.append(resp.status)
                if resp.status == 429:
                    assert int(resp.headers["Retry-After"]) >= 1
                    assert (await resp.json())["error"]["code"] == Code.RATE_LIMITED
    assert statuses[:3] == [201, 201, 201] and statuses[3:] == [429, 429]


async def test_presence_updates_are_rate_limited(make_server: Callable[..., Any]) -> None:
    """Presence updates past the per-connection burst are refused with 42900 and retry_after."""
    srv: TestServer = await make_server(presence_rate=1, presence_burst=3)
    wire = await Wire.open(srv.ws_url, srv.token("ana"))
    try:
        await wire.request({"type": "attach", "channel": CH})
        codes = [
            (await wire.request({"type": "presence", "channel": CH, "action": "update", "data": i})).get(
                "code"
            )
            for i in range(5)
        ]
        assert codes[:3] == [None, None, None] and codes[3:] == [Code.RATE_LIMITED] * 2
    finally:
        await wire.close()


async def test_token_minting_is_rate_limited(make_server: Callable[..., Any]) -> None:
    """Minting past the per-key burst is 429 with Retry-After."""
    srv: TestServer = await make_server(mint_rate=1, mint_burst=2)
    key = srv.settings.keys[0]
    auth = "Basic " + base64.b64encode(key.encode()).decode()
    statuses = []
    async with aiohttp.ClientSession() as http:
        for _ in range(4):
            async with http.post(
                f"{srv.url}/v1/tokens", headers={"Authorization": auth}, json={"client_id": "ana"}
            ) as resp:
                statuses.append(resp.status)
    assert statuses == [200, 200, 429, 429]


async def test_api_key_guessing_is_blocked_with_growing_backoff(make_server: Callable[..., Any]) -> None:
    """After the free failures an address is blocked (429, Retry-After), and the block grows."""
    srv: TestServer = await make_server(auth_failure_burst=3, auth_failure_rate=0.001)
    name = srv.settings.keys[0].partition(":")[0]
    wrong = "Basic " + base64.b64encode(f"{name}:{'w' * 32}".encode()).decode()
    right = "Basic " + base64.b64encode(srv.settings.keys[0].encode()).decode()
    answers = []
    async with aiohttp.ClientSession() as http:

        async def attempt(auth: str) -> tuple[int, str | None]:
            async with http.post(
                f"{srv.url}/v1/tokens", headers={"Authorization": auth}, json={"client_id": "ana"}
            ) as resp:
                return resp.status, resp.headers.get("Retry-After")

        for _ in range(4):
            answers.append(await attempt(wrong))
        blocked = await attempt(right)  # even the right key waits out the block
    assert [status for status, _ in answers[:3]] == [401, 401, 401]
    assert answers[3][0] == 401  # this failure starts the block
    assert blocked[0] == 429 and blocked[1] is not None and int(blocked[1]) >= 1


async def test_a_client_that_never_finishes_its_headers_is_closed(make_server: Callable[..., Any]) -> None:
    """A TCP connection that sends half a request is closed after http_header_timeout."""
    srv: TestServer = await make_server(http_header_timeout=UNIT / 5)
    host, port = srv.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # no blank line: the headers never end
        await writer.drain()
        async with asyncio.timeout(UNIT * 2):
            assert await reader.read() == b""  # closed by the server
    finally:
        writer.close()


async def test_a_trickled_body_times_out_and_a_big_one_arrives_whole(make_server: Callable[..., Any]) -> None:
    """A REST body that never finishes gets 408 (40800) after http_header_timeout; a body larger than
    one network read is read whole, not cut at the first chunk."""
    srv: TestServer = await make_server(http_header_timeout=UNIT / 5)
    host, port = srv.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        auth = f"Authorization: Bearer {srv.token('ana')}\r\n"
        writer.write(
            f"POST /v1/channels/{CH}/messages HTTP/1.1\r\nHost: x\r\n{auth}"
            'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"data":'.encode()
        )
        await writer.drain()
        async with asyncio.timeout(UNIT * 2):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408")
    finally:
        writer.close()
    big = "b" * 60_000
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{srv.url}/v1/channels/{CH}/messages",
            headers={"Authorization": f"Bearer {srv.token('ana')}"},
            data=json.dumps({"data": big}).encode(),
        ) as resp:
            assert resp.status == 201, await resp.text()
