"""Configurable limits: each overflow gets its documented code; the connection (or its neighbours) survive."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

MakeServer = Callable[..., Awaitable[TestServer]]
CH = "room:l"


async def until(predicate: Callable[[], bool], limit: float = UNIT) -> None:
    """Wait, bounded, for server-side bookkeeping that has no event of its own."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the broker's per-client count has no event to await
            await asyncio.sleep(0.01)


async def history(wire: Wire, channel: str = CH) -> list[Any]:
    page = await wire.request({"type": "history", "channel": channel, "limit": 1000, "direction": "forwards"})
    return [m["data"] for m in page["messages"]]


async def test_frame_too_large_is_refused_and_connection_survives(make_server: MakeServer) -> None:
    """A frame above max_frame_bytes gets error 41300; the connection keeps working."""
    srv = await make_server(max_frame_bytes=2048)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        big = {"type": "publish", "channel": CH, "data": "x" * 4096, "ref": 99}
        await wire.send(big)
        error = await wire.expect("error")
        assert error["code"] == 41300
        assert (await wire.request({"type": "publish", "channel": CH, "data": "small"}))["type"] == "ack"
        assert await history(wire) == ["small"]
    finally:
        await wire.close()


async def test_frame_size_counts_bytes_not_characters(make_server: MakeServer) -> None:
    """max_frame_bytes bounds the UTF-8 bytes of a text frame: 1,000 emoji (4,000 bytes) exceed 2,048."""
    srv = await make_server(max_frame_bytes=2048)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        frame = json.dumps(
            {"type": "publish", "channel": CH, "data": "\U0001f600" * 1000}, ensure_ascii=False
        )
        assert len(frame) < 2048 < len(frame.encode())
        await wire.send_raw(frame)
        reply = await wire.request({"type": "ping"})
        assert reply["type"] == "ack"
        errors = [
            f for f in [wire.inbox.get_nowait() for _ in range(wire.inbox.qsize())] if f["type"] == "error"
        ]
        assert [e["code"] for e in errors] == [41300], errors
        assert await history(wire) == []
    finally:
        await wire.close()


async def test_ten_megabyte_frame_gets_41300_and_connection_stays_usable(server: TestServer) -> None:
    """A 10 MB frame (below max_ws_message) is refused with 41300 and nothing is stored."""
    wire = await Wire.open(server.ws_url, server.token("a"))
    try:
        await wire.send_raw(json.dumps({"type": "publish", "channel": CH, "data": "x" * (10 * 1024 * 1024)}))
        assert (await wire.expect("error", timeout=UNIT * 2))["code"] == 41300
        assert (await wire.request({"type": "ping"}))["type"] == "ack"
        assert (await wire.request({"type": "publish", "channel": CH, "data": "ok"}))["type"] == "ack"
        assert await history(wire) == ["ok"]
    finally:
        await wire.close()


async def test_frame_above_max_ws_message_closes_1009_only_that_connection(make_server: MakeServer) -> None:
    """A frame above the hard limit closes its connection with 1009; a neighbour keeps receiving."""
    srv = await make_server(max_frame_bytes=1024, max_ws_message=64 * 1024)
    bad = await Wire.open(srv.ws_url, srv.token("bad"))
    good = await Wire.open(srv.ws_url, srv.token("good"))
    try:
        await good.request({"type": "attach", "channel": CH})
        await bad.send_raw("x" * (128 * 1024))
        async with asyncio.timeout(UNIT):
            await bad.closed.wait()
        assert bad.close_code == 1009
        assert (await good.request({"type": "publish", "channel": CH, "data": "after"}))["type"] == "ack"
        [message] = await good.messages(1)
        assert message["data"] == "after"
    finally:
        await bad.close()
        await good.close()


async def test_message_too_large_41301(make_server: MakeServer) -> None:
    """Encoded data above max_message_bytes is nack 41301 (one message of a batch spoils the batch)."""
    srv = await make_server(max_message_bytes=100)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        reply = await wire.request({"type": "publish", "channel": CH, "data": "x" * 200})
        assert reply["type"] == "nack" and reply["code"] == 41301
        reply = await wire.request(
            {"type": "publish", "channel": CH, "messages": [{"data": 1}, {"data": "y" * 200}]}
        )
        assert reply["type"] == "nack" and reply["code"] == 41301
        reply = await wire.request({"type": "publish", "channel": CH, "data": "x" * 90})
        assert reply["type"] == "ack"
        assert await history(wire) == ["x" * 90]
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {srv.token('a')}"}
            async with http.post(
                f"{srv.url}/v1/channels/{CH}/messages", json={"data": "z" * 200}, headers=headers
            ) as r:
                assert r.status == 413 and (await r.json())["error"]["code"] == 41301
    finally:
        await wire.close()


async def test_publish_rate_token_bucket_42900(make_server: MakeServer) -> None:
    """Past publish_burst the next publish is nack 42900 with a positive retry_after; nothing is stored."""
    srv = await make_server(publish_rate=0.01, publish_burst=3)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    other = await Wire.open(srv.ws_url, srv.token("b"))
    try:
        for i in range(3):
            assert (await wire.request({"type": "publish", "channel": CH, "data": i}))["type"] == "ack"
        reply = await wire.request({"type": "publish", "channel": CH, "data": 3})
        assert reply["type"] == "nack" and reply["code"] == 42900
        assert isinstance(reply["retry_after"], int | float) and reply["retry_after"] > 0
        ephemeral = await wire.request({"type": "publish", "channel": CH, "data": 4, "ephemeral": True})
        assert ephemeral["code"] == 42900
        # The bucket is per connection: another connection still publishes.
        assert (await other.request({"type": "publish", "channel": CH, "data": "b"}))["type"] == "ack"
        assert await history(wire) == [0, 1, 2, "b"]
        assert (await wire.request({"type": "ping"}))["type"] == "ack"
    finally:
        await wire.close()
        await other.close()


async def test_channels_per_connection_42901(make_server: MakeServer) -> None:
    """Attaching past max_channels is nack 42901; re-attaching an attached channel is fine."""
    srv = await make_server(max_channels=2)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        assert (await wire.request({"type": "attach", "channel": "room:1"}))["type"] == "attached"
        assert (await wire.request({"type": "attach", "channel": "room:2"}))["type"] == "attached"
        reply = await wire.request({"type": "attach", "channel": "room:3"})
        assert reply["type"] == "nack" and reply["code"] == 42901
        assert (await wire.request({"type": "attach", "channel": "room:2"}))["type"] == "attached"
        assert wire.connected["limits"]["max_channels"] == 2
        await wire.request({"type": "detach", "channel": "room:1"})
        assert (await wire.request({"type": "attach", "channel": "room:3"}))["type"] == "attached"
    finally:
        await wire.close()


async def test_connections_per_client_42902_close_4005(make_server: MakeServer) -> None:
    """Past max_connections_per_client a connection gets error 42902 and close 4005; others are fine."""
    srv = await make_server(max_connections_per_client=2)
    first = await Wire.open(srv.ws_url, srv.token("a"))
    second = await Wire.open(srv.ws_url, srv.token("a"))
    extra = await Wire.open(srv.ws_url, None, connect=False)
    other = await Wire.open(srv.ws_url, srv.token("b"))
    try:
        await extra.send({"type": "connect", "token": srv.token("a")})
        error = await extra.expect("error")
        async with asyncio.timeout(UNIT):
            await extra.closed.wait()
        assert error["code"] == 42902 and extra.close_code == 4005
        assert (await other.request({"type": "ping"}))["type"] == "ack"
        await first.close()
        await until(lambda: srv.broker.sessions.connection_count("a") == 1)
        again = await Wire.open(srv.ws_url, srv.token("a"))
        assert (await again.request({"type": "ping"}))["type"] == "ack"
        await again.close()
    finally:
        for wire in (first, second, extra, other):
            await wire.close()


async def test_history_page_is_capped(make_server: MakeServer) -> None:
    """history and REST GET messages return at most history_max_page messages, with has_more."""
    srv = await make_server(history_max_page=5)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        await wire.request({"type": "publish", "channel": CH, "messages": [{"data": i} for i in range(12)]})
        page = await wire.request({"type": "history", "channel": CH, "limit": 1000})
        assert [m["serial"] for m in page["messages"]] == [12, 11, 10, 9, 8] and page["has_more"]
        assert wire.connected["limits"]["history_max_page"] == 5
        async with aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {srv.token('a')}"}
            async with http.get(f"{srv.url}/v1/channels/{CH}/messages?limit=1000", headers=headers) as r:
                body = await r.json()
        assert len(body["messages"]) == 5 and body["has_more"]
    finally:
        await wire.close()


async def test_streams_per_connection_42903(make_server: MakeServer) -> None:
    """Opening past max_streams_per_connection is nack 42903; ending one frees a slot."""
    srv = await make_server(max_streams_per_connection=2)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        ids = [(await wire.request({"type": "stream_open", "channel": CH}))["stream_id"] for _ in range(2)]
        reply = await wire.request({"type": "stream_open", "channel": CH})
        assert reply["type"] == "nack" and reply["code"] == 42903
        assert len(srv.broker.streams) == 2
        assert (await wire.request({"type": "stream_end", "stream_id": ids[0]}))["type"] == "ack"
        assert (await wire.request({"type": "stream_open", "channel": CH}))["type"] == "ack"
    finally:
        await wire.close()


async def test_streams_per_channel_42903(make_server: MakeServer) -> None:
    """Opening past max_streams_per_channel (from any connection) is nack 42903; other channels are free."""
    srv = await make_server(max_streams_per_channel=2)
    a = await Wire.open(srv.ws_url, srv.token("a"))
    b = await Wire.open(srv.ws_url, srv.token("b"))
    try:
        assert (await a.request({"type": "stream_open", "channel": CH}))["type"] == "ack"
        assert (await b.request({"type": "stream_open", "channel": CH}))["type"] == "ack"
        reply = await b.request({"type": "stream_open", "channel": CH})
        assert reply["type"] == "nack" and reply["code"] == 42903
        assert (await b.request({"type": "stream_open", "channel": "room:elsewhere"}))["type"] == "ack"
    finally:
        await a.close()
        await b.close()


async def test_stream_too_large_41302(make_server: MakeServer) -> None:
    """An append that would pass max_stream_bytes is nack 41302; the stream keeps what it had and can end."""
    srv = await make_server(max_stream_bytes=1024)
    wire = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        sid = (await wire.request({"type": "stream_open", "channel": CH}))["stream_id"]
        assert (await wire.request({"type": "stream_append", "stream_id": sid, "i": 0, "d": "a" * 600}))[
            "type"
        ] == "ack"
        reply = await wire.request({"type": "stream_append", "stream_id": sid, "i": 1, "d": "b" * 600})
        assert reply["type"] == "nack" and reply["code"] == 41302
        end = await wire.request({"type": "stream_end", "stream_id": sid, "chunks": 1})
        assert end["type"] == "ack"
        assert await history(wire) == ["a" * 600]
    finally:
        await wire.close()


async def test_too_many_bad_frames_close_4002_neighbours_unaffected(make_server: MakeServer) -> None:
    """Past max_bad_frames malformed frames the connection is closed with 4002; each got an error first."""
    srv = await make_server(max_bad_frames=5)
    abuser = await Wire.open(srv.ws_url, srv.token("abuser"))
    good = await Wire.open(srv.ws_url, srv.token("good"))
    try:
        await good.request({"type": "attach", "channel": CH})
        for _ in range(20):
            if abuser.closed.is_set():
                break
            await abuser.send_raw("{not json")
        async with asyncio.timeout(UNIT):
            await abuser.closed.wait()
        assert abuser.close_code == 4002
        errors = []
        while not abuser.inbox.empty():
            frame = abuser.inbox.get_nowait()
            if frame["type"] == "error":
                errors.append(frame["code"])
        assert errors and set(errors) == {40001} and len(errors) >= 5
        assert (await good.request({"type": "publish", "channel": CH, "data": "fine"}))["type"] == "ack"
        assert [m["data"] for m in await good.messages(1)] == ["fine"]
    finally:
        await abuser.close()
        await good.close()


async def test_refusals_by_capability_do_not_count_as_bad_frames(make_server: MakeServer) -> None:
    """Nacks for valid frames (40300) do not spend the bad-frame budget: no 4002 close."""
    srv = await make_server(max_bad_frames=3)
    wire = await Wire.open(srv.ws_url, srv.token("a", capabilities={"room:*": ["subscribe"]}))
    try:
        for i in range(10):
            reply = await wire.request({"type": "publish", "channel": CH, "data": i})
            assert reply["code"] == 40300
        assert (await wire.request({"type": "ping"}))["type"] == "ack"
    finally:
        await wire.close()
