"""Delivery guarantees under faults: resume without gaps or duplicates, retries, if_serial, windows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import aiohttp

from agentchat_server.protocol import CloseCode, Code
from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire


class ResilientReader:
    """A subscriber that resumes its session and re-attaches at its last position after each cut."""

    def __init__(self, srv: TestServer, channel: str) -> None:
        self.srv = srv
        self.channel = channel
        self.serials: list[int] = []
        self.epoch: str | None = None
        self.wire: Wire | None = None
        self.resumes = 0

    async def connect(self) -> None:
        resume = self.wire.resume_token if self.wire is not None else None
        if self.wire is not None:
            await self.wire.close()
        self.wire = await Wire.open(self.srv.ws_url, self.srv.token("reader"), resume=resume)
        if resume is not None:
            assert self.wire.connected["resumed"] is True
            self.resumes += 1
        attach: dict[str, Any] = {"type": "attach", "channel": self.channel, "presence": False}
        if self.serials:
            attach["position"] = {"serial": self.serials[-1], "epoch": self.epoch}
        reply = await self.wire.request(attach)
        assert reply["resumed"] is True
        self.epoch = reply["position"]["epoch"] or self.epoch

    async def read_until(self, total: int, cut_after: list[int]) -> None:
        """Read until `total` messages, cutting the connection when reaching each count in cut_after."""
        cuts = sorted(cut_after)
        while len(self.serials) < total:
            assert self.wire is not None
            frame = await self.wire.expect("message", timeout=UNIT * 6)
            self.serials.append(frame["serial"])
            if cuts and len(self.serials) >= cuts[0]:
                cuts.pop(0)
                self.wire.cut()
                await self.wire.closed.wait()
                await self.connect()


async def test_twenty_cuts_during_two_thousand_messages(make_server: Callable[..., Any]) -> None:
    """A reader cut 25 times at random points ends with exactly the history's sequence."""
    srv: TestServer = await make_server(publish_burst=2000)
    rng = random.Random(2024)
    reader = ResilientReader(srv, "room:faults")
    await reader.connect()
    pubs = [await Wire.open(srv.ws_url, srv.token(f"p{i}")) for i in range(4)]

    async def publish(w: Wire, n: int) -> None:
        for k in range(0, 500, 25):
            await asyncio.gather(
                *(
                    w.request(
                        {"type": "publish", "channel": "room:faults", "data": f"{n}-{j}", "id": f"{n}-{j}"}
                    )
                    for j in range(k, k + 25)
                )
            )

    cut_points = sorted(rng.sample(range(1, 2000), 25))
    try:
        await asyncio.gather(
            reader.read_until(2000, cut_points), *(publish(w, n) for n, w in enumerate(pubs))
        )
        history = []
        after = 0
        while True:
            page = await pubs[0].request(
                {
                    "type": "history",
                    "channel": "room:faults",
                    "after": after,
                    "limit": 1000,
                    "direction": "forwards",
                }
            )
            history += [m["serial"] for m in page["messages"]]
            if not page["has_more"]:
                break
            after = history[-1]
        assert history == list(range(1, 2001))
        assert reader.serials == history
        assert reader.resumes == 25
    finally:
        assert reader.wire is not None
        await asyncio.gather(reader.wire.close(), *(w.close() for w in pubs))


async def test_publisher_retrying_three_times_stores_each_once(connect: Callable[..., Any]) -> None:
    """Every publish sent three times with one id: history has it once, every ack the same serial."""
    w = await connect("retry")
    for i in range(20):
        replies = [
            await w.request({"type": "publish", "channel": "room:r", "id": f"msg-{i}", "data": i})
            for _ in range(3)
        ]
        assert {tuple(r["serials"]) for r in replies} == {(i + 1,)}
        assert [r["duplicates"] for r in replies] == [[], [0], [0]]
    page = await w.request({"type": "history", "channel": "room:r", "limit": 100, "direction": "forwards"})
    assert [m["data"] for m in page["messages"]] == list(range(20))


async def test_unacked_publish_retried_after_resume_is_acked_once(server: TestServer) -> None:
    """A publish whose ack was lost in a cut, retried on the resumed session, exists once."""
    w = await Wire.open(server.ws_url, server.token("flaky"))
    await w.send({"type": "publish", "channel": "room:u", "id": "only-once", "data": "x"})
    w.cut()
    await w.closed.wait()
    again = await Wire.open(server.ws_url, server.token("flaky"), resume=w.resume_token)
    try:
        assert again.connected["resumed"] is True
        reply = await again.request({"type": "publish", "channel": "room:u", "id": "only-once", "data": "x"})
        assert reply["serials"] == [1]
        page = await again.request({"type": "history", "channel": "room:u"})
        assert len(page["messages"]) == 1
    finally:
        await w.close()
        await again.close()


async def test_if_serial_race_has_one_winner_per_serial(connect: Callable[..., Any]) -> None:
    """Two publishers racing with if_serial: one wins each serial, the loser learns the new serial."""
    a = await connect("a")
    b = await connect("b")
    wins = {"a": 0, "b": 0}
    seen = 0
    for _ in range(30):
        ra, rb = await asyncio.gather(
            a.request({"type": "publish", "channel": "room:turn", "data": "a", "if_serial": seen}),
            b.request({"type": "publish", "channel": "room:turn", "data": "b", "if_serial": seen}),
        )
        outcomes = sorted([ra["type"], rb["type"]])
        assert outcomes == ["ack", "nack"]
        winner, loser = (ra, rb) if ra["type"] == "ack" else (rb, ra)
        wins["a" if winner is ra else "b"] += 1
        assert winner["serials"] == [seen + 1]
        assert loser["code"] == Code.CONFLICT and loser["last_serial"] == seen + 1
        seen += 1
    page = await a.request({"type": "history", "channel": "room:turn", "limit": 100, "direction": "forwards"})
    assert [m["serial"] for m in page["messages"]] == list(range(1, 31))


async def test_batch_publish_is_atomic(connect: Callable[..., Any]) -> None:
    """A batch gets consecutive serials, or with a stale if_serial none at all."""
    w = await connect()
    ok = await w.request(
        {"type": "publish", "channel": "room:b", "messages": [{"data": i} for i in range(5)]}
    )
    assert ok["serials"] == [1, 2, 3, 4, 5]
    bad = await w.request(
        {"type": "publish", "channel": "room:b", "if_serial": 2, "messages": [{"data": "x"}, {"data": "y"}]}
    )
    assert bad["code"] == Code.CONFLICT and bad["last_serial"] == 5
    page = await w.request({"type": "history", "channel": "room:b"})
    assert len(page["messages"]) == 5


async def _raw_ws(port: int, token: str, channel: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A WebSocket client that connects, attaches, and then never reads (a stuck consumer)."""
    import base64
    import json
    import os
    import struct

    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**16)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /v1/ws?format=json HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    await reader.readuntil(b"\r\n\r\n")

    def frame(obj: dict[str, Any]) -> bytes:
        payload = json.dumps(obj).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        n = len(payload)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else struct.pack("!BBH", 0x81, 0x80 | 126, n)
        return head + mask + masked

    writer.write(frame({"type": "connect", "token": token}))
    writer.write(frame({"type": "attach", "channel": channel, "ref": 1}))
    await writer.drain()
    return reader, writer


async def _read_close_code(reader: asyncio.StreamReader) -> tuple[int, int]:
    """Read everything the server sent until EOF; returns (close code, last message serial seen)."""
    import json
    import struct

    data = bytearray()
    async with asyncio.timeout(UNIT * 6):
        while chunk := await reader.read(1 << 16):
            data += chunk
    pos, last = 0, 0
    while pos + 2 <= len(data):
        opcode, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n = struct.unpack_from("!H", data, pos)[0]
            pos += 2
        elif n == 127:
            n = struct.unpack_from("!Q", data, pos)[0]
            pos += 8
        payload = bytes(data[pos : pos + n])
        pos += n
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0], last
        frame = json.loads(payload)
        if frame["type"] == "message":
            assert frame["serial"] == last + 1, "the stuck reader's stream must have no gap"
            last = frame["serial"]
    raise AssertionError("no close frame")


async def test_slow_consumer_is_closed_and_fast_ones_keep_order(make_server: Callable[..., Any]) -> None:
    """A reader that reads nothing is closed with 4008; fast readers get everything in order; it resumes."""
    limit = 1024 * 1024
    srv: TestServer = await make_server(
        max_outbox_bytes=limit,
        max_stream_bytes=64 * 1024,
        publish_burst=5000,
        publish_rate=5000,
        slow_consumer_timeout=UNIT / 4,
    )
    port = int(srv.url.rsplit(":", 1)[1])
    slow_reader, slow_writer = await _raw_ws(port, srv.token("slow"), "room:slow")
    fast = [await Wire.open(srv.ws_url, srv.token(f"fast{i}")) for i in range(3)]
    pub = await Wire.open(srv.ws_url, srv.token("pub"))
    try:
        for w in fast:
            await w.request({"type": "attach", "channel": "room:slow", "presence": False})
        slow_conn = next(c for c in srv.broker.sessions.connections() if c.identity.client_id == "slow")
        assert slow_conn.transport.outbox.limit == limit
        # Publish until the reader that reads nothing has been closed: first its buffer fills, then
        # it waits `slow_consumer_timeout` to drain, then it is closed (4008).
        async with asyncio.timeout(UNIT * 6):
            while (
                srv.broker.metrics.slow_consumers._value.get() == 0
                or len(srv.broker.registry.require("room:slow").subscribers) != 3
            ):
                pass_ok = await pub.request(
                    {
                        "type": "publish",
                        "channel": "room:slow",
                        "messages": [{"data": "x" * 1000} for _ in range(50)],
                    }
                )
                assert pass_ok["type"] == "ack"
                last = pass_ok["serials"][-1]
        for w in fast:
            got = await w.messages(last, timeout=UNIT * 12)
            assert [m["serial"] for m in got] == list(range(1, last + 1))
        # Memory stayed bounded: after the limit nothing more was queued to the stuck connection.
        assert slow_conn.transport.outbox.buffered() <= limit + 1024
        # Memory stayed bounded: nothing more was queued to the slow connection after the limit.
        code, seen = await _read_close_code(slow_reader)
        assert code == CloseCode.SLOW_CONSUMER
        assert seen < last
        slow_writer.close()
        again = await Wire.open(srv.ws_url, srv.token("slow"))
        reply = await again.request(
            {"type": "attach", "channel": "room:slow", "position": {"serial": seen, "epoch": None}}
        )
        assert reply["resumed"] is True
        rest = await again.messages(last - seen, timeout=UNIT * 6)
        assert [m["serial"] for m in rest] == list(range(seen + 1, last + 1))
        await again.close()
    finally:
        await asyncio.gather(pub.close(), *(w.close() for w in fast))


async def test_resume_after_window_says_not_resumed_and_history_reloads(
    make_server: Callable[..., Any],
) -> None:
    """Past the resume window: connected.resumed is false with 80001; attach by position still works."""
    srv: TestServer = await make_server(resume_window=0)
    w = await Wire.open(srv.ws_url, srv.token("late"))
    await w.request({"type": "attach", "channel": "room:w"})
    await w.request({"type": "publish", "channel": "room:w", "data": 1})
    await w.messages(1)
    session = w.connected["session_id"]
    w.cut()
    await w.closed.wait()
    async with asyncio.timeout(UNIT):
        # The expiry timer (0 s) fires within the next loop turns; the broker exposes no event.
        while srv.broker.sessions.get(session) is not None:  # noqa: ASYNC110
            await asyncio.sleep(0)
    other = await Wire.open(srv.ws_url, srv.token("pub"))
    await other.request({"type": "publish", "channel": "room:w", "data": 2})
    again = await Wire.open(srv.ws_url, srv.token("late"), resume=w.resume_token)
    try:
        assert again.connected["resumed"] is False
        assert again.connected["reason"]["code"] == Code.SESSION_EXPIRED
        reply = await again.request(
            {"type": "attach", "channel": "room:w", "position": {"serial": 1, "epoch": None}}
        )
        assert reply["resumed"] is True
        assert [m["data"] for m in await again.messages(1)] == [2]
    finally:
        await asyncio.gather(w.close(), again.close(), other.close())


async def test_attach_after_retention_reports_history_lost(
    server: TestServer, connect: Callable[..., Any]
) -> None:
    """A position older than retained history gets resumed: false with 80002, never a silent skip."""
    w = await connect()
    await w.request({"type": "publish", "channel": "room:old", "messages": [{"data": i} for i in range(5)]})
    await server.broker.store.prune(older_than_ms=2**62)
    reply = await w.request(
        {"type": "attach", "channel": "room:old", "position": {"serial": 1, "epoch": None}}
    )
    assert reply["resumed"] is False and reply["reason"]["code"] == Code.HISTORY_LOST
    assert reply["position"]["serial"] == 5


async def test_wrong_epoch_reports_epoch_changed(connect: Callable[..., Any]) -> None:
    """A position from another epoch is refused explicitly with 80003."""
    w = await connect()
    await w.request({"type": "publish", "channel": "room:e", "data": 1})
    reply = await w.request(
        {"type": "attach", "channel": "room:e", "position": {"serial": 1, "epoch": "other"}}
    )
    assert reply["resumed"] is False and reply["reason"]["code"] == Code.EPOCH_CHANGED


async def test_idle_connections_get_heartbeats_and_dead_peers_are_closed(
    make_server: Callable[..., Any],
) -> None:
    """The server sends heartbeats when idle and closes a silent client with 4009."""
    srv: TestServer = await make_server(heartbeat_interval=0.2)
    w = await Wire.open(srv.ws_url, srv.token("quiet"))
    try:
        await w.expect("heartbeat", timeout=UNIT)
        await w.closed.wait()
        assert w.close_code == CloseCode.HEARTBEAT_TIMEOUT
    finally:
        await w.close()


async def test_sse_resumes_with_last_event_id(server: TestServer, connect: Callable[..., Any]) -> None:
    """SSE ids are epoch:serial; reconnecting with Last-Event-ID continues with no gap or duplicate."""
    pub = await connect("pub")
    token = server.token("sse")
    url = f"{server.url}/v1/channels/room:sse/events?token={token}"

    async def read_events(resp: aiohttp.ClientResponse, count: int) -> list[tuple[str, dict[str, Any]]]:
        import json

        events: list[tuple[str, dict[str, Any]]] = []
        event_id, kind = "", ""
        async with asyncio.timeout(UNIT * 2):
            async for raw in resp.content:
                line = raw.decode().rstrip("\n")
                if line.startswith("id: "):
                    event_id = line[4:]
                elif line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: ") and kind == "message":
                    events.append((event_id, json.loads(line[6:])))
                    if len(events) == count:
                        return events
        return events

    async with aiohttp.ClientSession() as http:
        async with http.get(url) as resp:
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            for i in range(5):
                await pub.request({"type": "publish", "channel": "room:sse", "data": i})
            first = await read_events(resp, 5)
        last_id = first[-1][0]
        assert last_id.endswith(":5")
        for i in range(5, 9):
            await pub.request({"type": "publish", "channel": "room:sse", "data": i})
        async with http.get(url, headers={"Last-Event-ID": last_id}) as resp:
            second = await read_events(resp, 4)
    assert [e["data"] for _, e in first + second] == list(range(9))
    assert [int(i.split(":")[1]) for i, _ in first + second] == list(range(1, 10))


async def test_retention_prunes_and_readers_learn_of_it(make_server: Callable[..., Any]) -> None:
    """With retention set, old messages go; an attach from before them says history is lost."""
    srv: TestServer = await make_server(retention_days=1e-9)  # everything older than ~0.1 ms
    w = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        await w.request({"type": "attach", "channel": "room:ret"})
        await w.request(
            {"type": "publish", "channel": "room:ret", "messages": [{"data": i} for i in range(3)]}
        )
        await w.messages(3)
        assert await srv.broker.prune_now() == 1
        page = await w.request({"type": "history", "channel": "room:ret"})
        assert page["messages"] == []
        reply = await w.request(
            {"type": "attach", "channel": "room:ret", "position": {"serial": 1, "epoch": None}}
        )
        assert reply["resumed"] is False and reply["reason"]["code"] == Code.HISTORY_LOST
        ok = await w.request(
            {"type": "attach", "channel": "room:ret", "position": {"serial": 3, "epoch": None}}
        )
        assert ok["resumed"] is True
    finally:
        await w.close()


async def test_a_message_lost_on_the_bus_is_filled_from_the_store(server: TestServer) -> None:
    """An at-most-once bus drops a committed message: readers still get every serial once, in order."""
    from agentchat_server.bus import BusEvent

    bus = server.broker.bus
    deliver = bus._handler  # type: ignore[attr-defined]
    assert deliver is not None

    def lossy(event: BusEvent) -> None:
        if event.messages and any(m.serial in (3, 7) for m in event.messages):
            return  # lost in transit, as Redis pub/sub may lose it
        deliver(event)

    bus._handler = lossy  # type: ignore[attr-defined]
    reader = await Wire.open(server.ws_url, server.token("reader"))
    writer = await Wire.open(server.ws_url, server.token("writer"))
    try:
        await reader.request({"type": "attach", "channel": "room:lossy"})
        for i in range(1, 11):
            reply = await writer.request({"type": "publish", "channel": "room:lossy", "data": i})
            assert reply["serials"] == [i]
        got = await reader.messages(10)
        assert [m["serial"] for m in got] == list(range(1, 11))
        assert [m["data"] for m in got] == list(range(1, 11))
    finally:
        await asyncio.gather(reader.close(), writer.close())
