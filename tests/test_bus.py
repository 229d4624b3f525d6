"""The Bus contract on every adapter (LocalBus, RedisBus with a real Redis), and two nodes end to end."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from agentchat_server.bus import Bus, BusEvent, LocalBus
from agentchat_server.core.records import Message
from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire


def redis_bus(url: str, prefix: str) -> Any:
    """A RedisBus on its own client (closed by `stop_bus`)."""
    from redis.asyncio import Redis

    from agentchat_server.bus.redis import RedisBus

    return RedisBus(Redis.from_url(url), prefix)


async def stop_bus(bus: Any) -> None:
    await bus.stop()
    await bus.redis.aclose()


def message(serial: int) -> Message:
    return Message("room:bus", serial, f"id{serial}", "chat", {"n": serial}, "ana", "human", serial)


@pytest_asyncio.fixture(params=["local", "redis"])
async def bus_pair(
    request: pytest.FixtureRequest,
) -> AsyncIterator[tuple[Bus, Bus, list[BusEvent], list[BusEvent]]]:
    """Two nodes' buses (the same LocalBus twice for local) and what each received."""
    got_a, got_b = Received(), Received()
    if request.param == "local":
        bus = LocalBus()
        await bus.start(lambda e: (got_a(e), got_b(e)))
        yield bus, bus, got_a, got_b
        await bus.stop()
        return
    url = request.getfixturevalue("redis_url")
    prefix = f"test{secrets.token_hex(4)}"
    a, b = redis_bus(url, prefix), redis_bus(url, prefix)
    await a.start(got_a)
    await b.start(got_b)
    yield a, b, got_a, got_b
    await stop_bus(a)
    await stop_bus(b)


class Received(list[BusEvent]):
    """A bus handler that records events and wakes waiters."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = asyncio.Event()

    def __call__(self, event: BusEvent) -> None:
        self.append(event)
        self.changed.set()

    async def until(self, count: int) -> None:
        async with asyncio.timeout(UNIT):
            while len(self) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_events_reach_every_watching_node_in_order(bus_pair: Any) -> None:
    """Events from one node reach the other in publish order, and the publisher at once."""
    a, b, got_a, got_b = bus_pair
    for bus in (a, b):
        bus.watch("room:bus")
        await bus.ready("room:bus")
    for serial in range(1, 51):
        a.publish(BusEvent("room:bus", messages=[message(serial)], epoch="e1"))
    a.publish(BusEvent("room:bus", frame={"type": "stream_chunk", "i": 0}, presence=False))
    assert len(got_a) == 51  # local delivery does not wait for the network
    await got_b.until(51)
    serials = [e.messages[0].serial for e in got_b if e.messages]
    assert serials == list(range(1, 51))
    assert got_b[0].messages[0].data == {"n": 1} and got_b[0].epoch == "e1"
    assert got_b[-1].frame == {"type": "stream_chunk", "i": 0}


async def test_unwatched_channels_are_not_delivered_across_nodes(redis_url: str) -> None:
    """A RedisBus node receives only the channels it watches."""
    prefix = f"test{secrets.token_hex(4)}"
    a, b = redis_bus(redis_url, prefix), redis_bus(redis_url, prefix)
    got_b = Received()
    await a.start(lambda e: None)
    await b.start(got_b)
    b.watch("room:yes")
    await b.ready("room:yes")
    a.publish(BusEvent("room:no", frame={"n": 1}))
    a.publish(BusEvent("room:yes", frame={"n": 2}))
    await got_b.until(1)
    assert [e.frame for e in got_b] == [{"n": 2}]
    await stop_bus(a)
    await stop_bus(b)


async def test_two_servers_share_postgres_and_redis(
    make_server: Callable[..., Any], pg_url: str, redis_url: str
) -> None:
    """A reader on node B gets, in order, durable and ephemeral messages published on node A."""
    prefix = f"test{secrets.token_hex(4)}"
    key = f"shared:{secrets.token_urlsafe(24)}"
    node_a: TestServer = await make_server(db=pg_url, bus=f"{redis_url}?prefix={prefix}", keys=[key])
    node_b: TestServer = await make_server(db=pg_url, bus=f"{redis_url}?prefix={prefix}", keys=[key])
    reader = await Wire.open(node_b.ws_url, node_b.token("reader"))
    writer = await Wire.open(node_a.ws_url, node_a.token("writer"))
    try:
        await reader.request({"type": "attach", "channel": "room:multi"})
        for i in range(100):
            await writer.send({"type": "publish", "channel": "room:multi", "data": i})
        await writer.request(
            {"type": "publish", "channel": "room:multi", "data": "typing", "ephemeral": True}
        )
        # The lanes are not ordered with each other: collect both kinds as they come.
        durable: list[dict[str, Any]] = []
        ephemeral: list[dict[str, Any]] = []
        async with asyncio.timeout(UNIT * 2):
            while len(durable) < 100 or not ephemeral:
                frame = await reader.inbox.get()
                if frame["type"] == "message":
                    (ephemeral if frame.get("ephemeral") else durable).append(frame)
        assert [m["serial"] for m in durable] == list(range(1, 101))
        assert [m["data"] for m in durable] == list(range(100))
        assert [m["data"] for m in ephemeral] == ["typing"]
    finally:
        await asyncio.gather(reader.close(), writer.close())
