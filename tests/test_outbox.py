"""Outboxes over a real loopback socket: order across push and send_now, and one bound for both."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from agentchat_server.broker.tick import Flusher
from agentchat_server.transport.outbox import Outbox
from tests.wire import UNIT


async def _pair() -> tuple[asyncio.Transport, asyncio.StreamReader, asyncio.Server]:
    accepted: asyncio.Future[asyncio.StreamReader] = asyncio.get_running_loop().create_future()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set_result(reader)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport, _ = await asyncio.get_running_loop().create_connection(asyncio.Protocol, "127.0.0.1", port)
    async with asyncio.timeout(UNIT):
        return transport, await accepted, server


async def test_send_now_keeps_order_behind_queued_bytes_and_the_flush_pass() -> None:
    transport, peer, server = await _pair()
    flusher = Flusher()
    overflows: list[bool] = []
    outbox = Outbox(transport, 1 << 20, lambda: overflows.append(True), flusher)
    outbox.push(b"a")
    outbox.push(b"b")
    assert outbox.send_now(b"c")  # writes what was queued first, then its own bytes
    assert outbox.send_now(b"d")  # nothing queued: straight to the transport
    outbox.push(b"e")  # waits for this tick's flush pass
    async with asyncio.timeout(UNIT):
        assert await peer.readexactly(5) == b"abcde"
    assert outbox.sent_bytes == 5 and not overflows
    transport.close()
    server.close()


async def test_send_now_over_the_bound_closes_as_a_slow_consumer_like_push() -> None:
    transport, _peer, server = await _pair()
    cases: dict[str, Callable[[Outbox], bool]] = {
        "push": lambda o: o.push(b"x" * 600) and o.push(b"y" * 500),
        "send_now": lambda o: o.send_now(b"x" * 1001),
        "push, then send_now": lambda o: o.push(b"x" * 600) and o.send_now(b"y" * 500),
    }
    for name, fill in cases.items():
        overflows: list[str] = []
        outbox = Outbox(transport, 1000, functools.partial(overflows.append, name), Flusher())
        assert fill(outbox) is False
        assert overflows == [name] and outbox.closed
        assert outbox.send_now(b"late") is False and outbox.push(b"late") is False
    assert not transport.is_closing()  # the outbox's owner closes the connection, not the outbox
    transport.close()
    server.close()
