"""The loop brake over real sockets: two agents answering each other stop at the namespace's budget,
the room sees one notice, a person speaking lets them go on; the count survives a restart and
holds across two nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import ROOM, member, ok, record, refused, said, say
from tests.wire import UNIT, Wire

BUDGET = {"namespaces": {"team": {"loop_budget": 4}}}


async def echo(me: Wire, peer: str, until: asyncio.Event, results: list[dict[str, Any]]) -> None:
    """An agent that answers every message of `peer` with one of its own, until refused."""
    while not until.is_set():
        heard = await record(me, "message", timeout=UNIT * 4, client_id=peer)
        reply = await say(me, f"echo of {heard['data']}", reply_to=heard["serial"])
        results.append(reply)
        if reply["type"] == "nack":
            until.set()


async def test_two_echoing_agents_stop_at_the_budget_and_go_on_after_a_person(
    make_server: Callable[..., Any],
) -> None:
    """Ping and pong echo each other: exactly `loop_budget` agent turns pass, the next is 42907,
    the room gets one `agentchat.loop_brake` notice, and after a human message they may speak."""
    srv: TestServer = await make_server(**BUDGET)
    human = await member(srv, "ana", kind="human")
    ping, pong = await member(srv, "ping"), await member(srv, "pong")
    stop = asyncio.Event()
    results: list[dict[str, Any]] = []
    loops = [
        asyncio.create_task(echo(ping, "pong", stop, results)),
        asyncio.create_task(echo(pong, "ping", stop, results)),
    ]
    await said(ping, "hello pong")  # turn 1: the loop starts without any person in it
    async with asyncio.timeout(UNIT * 4):
        await stop.wait()
    for task in loops:
        task.cancel()
    await asyncio.gather(*loops, return_exceptions=True)
    accepted = [r for r in results if r["type"] == "ack"]
    assert len(accepted) == 3  # turns 2, 3, 4 were echoes; turn 5 is refused
    assert [(r["code"], r["budget"]) for r in results if r["type"] == "nack"] == [(Code.LOOP_BRAKE, 4)]
    notice = await record(human, "agentchat.loop_brake")
    assert (notice["kind"], notice["client_id"], notice["data"]["budget"]) == ("system", "agentchat", 4)
    await refused(ping, {"type": "publish", "channel": ROOM, "data": "still me?"}, Code.LOOP_BRAKE)
    await refused(pong, {"type": "stream_open", "channel": ROOM}, Code.LOOP_BRAKE)
    await refused(pong, {"type": "run_start", "channel": ROOM}, Code.LOOP_BRAKE)
    await said(human, "ok you two, carry on")
    await said(ping, "thanks")
    await ok(pong, {"type": "stream_open", "channel": ROOM})


async def test_one_agent_writing_many_messages_is_one_turn(make_server: Callable[..., Any]) -> None:
    """A lone agent posting twenty messages with no one else speaking is never braked."""
    srv: TestServer = await make_server(**BUDGET)
    bot = await member(srv, "reporter")
    for i in range(20):
        await said(bot, f"progress {i}")


async def test_the_brake_survives_a_restart(tmp_path: Path) -> None:
    """Braked agents stay braked after the server restarts (the count is in the Store) until a
    person speaks."""
    settings = {"namespaces": {"team": {"loop_budget": 2}}, "db": f"sqlite+aiosqlite:///{tmp_path / 'b.db'}"}
    async with TestServer(tmp_path, **settings) as srv:
        a, b = await member(srv, "a"), await member(srv, "b")
        await said(a, "1")
        await said(b, "2")
        await refused(a, {"type": "publish", "channel": ROOM, "data": "3"}, Code.LOOP_BRAKE)
        await asyncio.gather(a.close(), b.close())
    async with TestServer(tmp_path, **settings) as srv:
        a, human = await member(srv, "a"), await member(srv, "ana", kind="human")
        await refused(a, {"type": "publish", "channel": ROOM, "data": "3 again"}, Code.LOOP_BRAKE)
        await said(human, "go on")
        await said(a, "3")
        await asyncio.gather(a.close(), human.close())


async def test_the_brake_holds_across_two_nodes(
    make_server: Callable[..., Any], pg_url: str, redis_url: str
) -> None:
    """Agents on two nodes sharing PostgreSQL alternate: the count is one, so the budget holds."""
    shared = {
        "db": pg_url,
        "bus": f"{redis_url}?prefix=brake{id(pg_url)}",
        "namespaces": {"team": {"loop_budget": 3}},
    }
    one: TestServer = await make_server(**shared)
    two: TestServer = await make_server(**shared)
    a, b = await member(one, "a"), await member(two, "b")
    await said(a, "1")
    await said(b, "2")
    await said(a, "3")
    await refused(b, {"type": "publish", "channel": ROOM, "data": "4"}, Code.LOOP_BRAKE)
    human = await member(two, "ana", kind="human")
    await said(human, "enough")
    await said(b, "4")
