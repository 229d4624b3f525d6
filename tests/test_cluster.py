"""Several nodes, one room: real node processes on PostgreSQL and a redis-server of the test's own.

Each test is one finding of trying 2-3 nodes: it failed on the server before scale-out.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from agentchat_server.protocol import Code
from tests.cluster_helpers import PrivateRedis, TcpProxy, cluster
from tests.conftest import PG_HOST, PG_PORT
from tests.server_process import ServerProcess
from tests.wire import UNIT, Wire

CH = "room:cluster"
# Short graces so the bounds these tests wait for are a few units, not a quarter of a minute.
FAST = {"stream_grace": UNIT / 5, "presence_grace": UNIT / 5, "presence_ttl": UNIT / 5}


@pytest_asyncio.fixture
async def redis() -> AsyncIterator[PrivateRedis]:
    server = PrivateRedis()
    await server.start()
    yield server
    await server.kill()


async def open_wire(node: ServerProcess, client_id: str, **kw: Any) -> Wire:
    return await Wire.open(node.ws_url, node.token(client_id, **kw))


async def frames_until(wire: Wire, match: Any, timeout: float) -> list[dict[str, Any]]:
    """Frames from the inbox up to and including the first one `match` accepts."""
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            frame = await wire.inbox.get()
            seen.append(frame)
            if match(frame):
                return seen


async def test_starting_a_node_leaves_the_clusters_open_streams_alone(
    pg_url: str, redis: PrivateRedis
) -> None:
    """A node that starts while a stream is open elsewhere does not end it; its writer finishes it."""
    async with cluster(pg_url, redis.url(), 1, **FAST) as (a,):
        writer = await open_wire(a, "bot", kind="agent")
        reader = await open_wire(a, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        sid = (await writer.request({"type": "stream_open", "channel": CH}))["stream_id"]
        await writer.request({"type": "stream_append", "stream_id": sid, "i": 0, "d": "before "})
        b = ServerProcess(pg_url, key=a.key, bus=redis.url(), **FAST)
        await b.start()
        try:
            await writer.request({"type": "stream_append", "stream_id": sid, "i": 1, "d": "after"})
            ended = await writer.request({"type": "stream_end", "stream_id": sid})
            assert ended["type"] == "ack", ended
            final = await reader.expect("message", stream_id=sid)
            assert (final["status"], final["data"]) == ("complete", "before after")
        finally:
            await asyncio.gather(writer.close(), reader.close())
            await b.stop()


async def test_a_dead_nodes_streams_end_aborted_with_their_text_once(
    pg_url: str, redis: PrivateRedis
) -> None:
    """kill -9 of the writer's node: readers on another node get the answer ended as aborted, with
    the text so far, exactly once, within a lease."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        writer = await open_wire(a, "bot", kind="agent")
        reader = await open_wire(b, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        sid = (await writer.request({"type": "stream_open", "channel": CH}))["stream_id"]
        for i, chunk in enumerate(("par", "tial")):
            await writer.request({"type": "stream_append", "stream_id": sid, "i": i, "d": chunk})
        await reader.expect("stream_chunk", i=1)
        await a.kill()
        final = await reader.expect("message", timeout=UNIT * 4, stream_id=sid)
        assert (final["status"], final["data"]) == ("aborted", "partial")
        history = await reader.request({"type": "history", "channel": CH})
        assert [m["stream_id"] for m in history["messages"]] == [sid]
        await asyncio.gather(writer.close(), reader.close())


async def test_presence_is_the_clusters_and_a_dead_node_leaves(pg_url: str, redis: PrivateRedis) -> None:
    """A late joiner on B sees members of A and B; after kill -9 of A its members leave every view
    within the TTL; members who come back with `replaces` are listed once."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        members = [await open_wire(node, f"m{i}") for i, node in enumerate((a, a, b, b))]
        for m in members:
            await m.request({"type": "attach", "channel": CH, "presence": False})
            await m.request({"type": "presence", "channel": CH, "action": "enter", "data": {"n": 1}})
        late = await open_wire(b, "late")
        await late.request({"type": "attach", "channel": CH})
        sync = await late.expect("presence_sync")
        assert sorted(m["client_id"] for m in sync["members"]) == ["m0", "m1", "m2", "m3"]
        lost = {m.connected["session_id"]: m for m in members[:2]}
        await a.kill()
        left = set()
        async with asyncio.timeout(UNIT * 4):
            while left != {"m0", "m1"}:
                frame = await late.expect("presence")
                if frame["action"] == "leave":
                    left.add(frame["member"]["client_id"])
        back = []
        for old_session, wire in lost.items():
            again = await open_wire(b, wire.connected["client_id"])
            await again.request({"type": "attach", "channel": CH, "presence": False})
            await again.request(
                {
                    "type": "presence",
                    "channel": CH,
                    "action": "enter",
                    "data": {"n": 1},
                    "replaces": old_session,
                }
            )
            back.append(again)
        listed = await late.request({"type": "presence_get", "channel": CH})
        assert sorted(m["client_id"] for m in listed["members"]) == ["m0", "m1", "m2", "m3"]
        await asyncio.gather(*(w.close() for w in [*members, *back, late]), return_exceptions=True)


async def test_moving_to_another_node_right_after_a_message_keeps_continuity(
    pg_url: str, redis: PrivateRedis
) -> None:
    """Attaching on B with the position just read on A is `resumed`, never "ahead", and replays nothing."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        on_a = await open_wire(a, "ana")
        writer = await open_wire(a, "writer")
        on_b = await open_wire(b, "ana")
        for round_ in range(20):
            await on_a.request({"type": "attach", "channel": CH, "presence": False})
            ack = await writer.request({"type": "publish", "channel": CH, "data": round_})
            (seen,) = await on_a.messages(1)
            assert seen["serial"] == ack["serials"][0]
            await on_a.request({"type": "detach", "channel": CH})
            moved = await on_b.request(
                {"type": "attach", "channel": CH, "presence": False, "position": {"serial": seen["serial"]}}
            )
            assert moved["resumed"] is True, moved
            await on_b.request({"type": "detach", "channel": CH})
        leftovers = []
        while not on_b.inbox.empty():
            leftovers.append(on_b.inbox.get_nowait())
        assert [f for f in leftovers if f["type"] == "message"] == []  # nothing replayed twice
        await asyncio.gather(on_a.close(), writer.close(), on_b.close())


async def test_a_missing_tail_arrives_after_a_redis_outage_without_a_later_message(
    pg_url: str, redis: PrivateRedis
) -> None:
    """Messages committed on A while Redis is down reach B's reader once Redis is back, with no
    further publish, in order and once."""
    async with cluster(pg_url, redis.url(), 2, position_check_interval=UNIT / 10, **FAST) as (a, b):
        writer = await open_wire(a, "writer")
        reader = await open_wire(b, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        await writer.request({"type": "publish", "channel": CH, "data": 0})
        await reader.messages(1)
        await redis.kill()
        for i in range(1, 31):
            ack = await writer.request({"type": "publish", "channel": CH, "data": i})
            assert ack["type"] == "ack"
        await redis.start()
        got = await reader.messages(30, timeout=UNIT * 4)
        assert [m["data"] for m in got] == list(range(1, 31))
        await asyncio.gather(writer.close(), reader.close())


async def test_a_channel_first_attached_during_a_redis_outage_works_afterwards(
    pg_url: str, redis: PrivateRedis
) -> None:
    """During the outage an attach gets a clear 50300; once Redis is back, the same channel attaches."""
    async with cluster(pg_url, redis.url(), 1, **FAST) as (a,):
        reader = await open_wire(a, "reader")
        await redis.kill()
        refused = await reader.request({"type": "attach", "channel": "room:new"}, timeout=UNIT * 2)
        assert refused["type"] == "nack" and refused["code"] == Code.UNAVAILABLE
        await redis.start()
        async with asyncio.timeout(UNIT * 4):
            while True:
                reply = await reader.request({"type": "attach", "channel": "room:new"}, timeout=UNIT * 2)
                if reply["type"] == "attached":
                    break
                assert reply["code"] == Code.UNAVAILABLE
        await reader.close()


async def test_sigterm_exits_in_bounded_time_with_redis_gone(pg_url: str, redis: PrivateRedis) -> None:
    """With a presence member connected and Redis dead, SIGTERM still ends the node within its bound."""
    node = ServerProcess(pg_url, bus=redis.url(), shutdown_timeout=UNIT / 5, **FAST)
    await node.start()
    member = await open_wire(node, "member")
    await member.request({"type": "attach", "channel": CH})
    await member.request({"type": "presence", "channel": CH, "action": "enter"})
    await redis.kill()
    assert node.proc is not None
    node.proc.send_signal(signal.SIGTERM)
    async with asyncio.timeout(UNIT * 2):
        await node.proc.wait()
    await member.close()


async def test_two_publishing_nodes_cost_readers_no_fills(pg_url: str, redis: PrivateRedis) -> None:
    """Publishers on A and B into one room, 50 readers on B: every reader gets every message in
    order, and no reader reads the Store on its own (at most a shared repair per channel)."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        readers = [await open_wire(b, f"r{i}") for i in range(50)]
        for r in readers:
            await r.request({"type": "attach", "channel": CH, "presence": False})
        pubs = [await open_wire(a, "pa"), await open_wire(b, "pb")]

        async def publish(pub: Wire, tag: str) -> None:
            for k in range(0, 100, 10):
                await asyncio.gather(
                    *(
                        pub.request({"type": "publish", "channel": CH, "data": f"{tag}{j}"})
                        for j in range(k, k + 10)
                    )
                )

        await asyncio.gather(*(publish(p, tag) for p, tag in zip(pubs, ("a", "b"), strict=True)))
        results = await asyncio.gather(*(r.messages(200, timeout=UNIT * 6) for r in readers))
        first = [m["serial"] for m in results[0]]
        assert first == list(range(1, 201))
        assert all([m["serial"] for m in got] == first for got in results)
        assert await b.metric("agentchat_store_reads_total", reason="fill") == 0
        await asyncio.gather(*(w.close() for w in [*readers, *pubs]))


async def test_a_writer_resumes_its_stream_on_another_node(pg_url: str, redis: PrivateRedis) -> None:
    """The writer's node dies mid-answer; the writer resumes on B from the last chunk B has, and the
    readers see the answer continue: one final message with the whole text."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        reader = await open_wire(b, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        writer = await open_wire(a, "bot", kind="agent")
        opened = await writer.request({"type": "stream_open", "channel": CH})
        sid, key = opened["stream_id"], opened["resume_key"]
        chunks = ["one ", "two ", "three ", "four"]
        for i, chunk in enumerate(chunks[:2]):
            await writer.request({"type": "stream_append", "stream_id": sid, "i": i, "d": chunk})
        await reader.expect("stream_chunk", i=1)
        await a.kill()
        await writer.close()
        writer = await open_wire(b, "bot", kind="agent")
        resumed = await writer.request({"type": "stream_resume", "stream_id": sid, "key": key})
        assert resumed["type"] == "ack" and resumed["next"] == 2, resumed
        for i in range(resumed["next"], len(chunks)):
            await writer.request({"type": "stream_append", "stream_id": sid, "i": i, "d": chunks[i]})
        ended = await writer.request({"type": "stream_end", "stream_id": sid, "chunks": len(chunks)})
        assert ended["type"] == "ack", ended
        final = await reader.expect("message", stream_id=sid)
        assert (final["status"], final["data"]) == ("complete", "one two three four")
        history = await reader.request({"type": "history", "channel": CH})
        assert [m["stream_id"] for m in history["messages"]] == [sid]
        stranger = await open_wire(b, "mallory")
        refused = await stranger.request({"type": "stream_resume", "stream_id": sid, "key": key})
        assert refused["code"] == Code.STREAM_NOT_FOUND
        await asyncio.gather(reader.close(), writer.close(), stranger.close())


async def test_a_writer_resumes_after_a_single_node_restart(tmp_path: Any) -> None:
    """One node on SQLite, kill -9 mid-answer: the writer resumes after the restart and no text is
    lost; the answer ends once, complete."""
    node = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'one.db'}", stream_grace=UNIT)
    await node.start()
    try:
        writer = await open_wire(node, "bot", kind="agent")
        opened = await writer.request({"type": "stream_open", "channel": CH})
        sid, key = opened["stream_id"], opened["resume_key"]
        await writer.request({"type": "stream_append", "stream_id": sid, "i": 0, "d": "hello "})
        await node.kill()
        await writer.close()
        await node.start()
        writer = await open_wire(node, "bot", kind="agent")
        resumed = await writer.request({"type": "stream_resume", "stream_id": sid, "key": key})
        assert resumed["type"] == "ack", resumed
        chunks = ["hello ", "world"]
        for i in range(resumed["next"], len(chunks)):
            await writer.request({"type": "stream_append", "stream_id": sid, "i": i, "d": chunks[i]})
        ended = await writer.request({"type": "stream_end", "stream_id": sid})
        reader = await open_wire(node, "reader")
        history = await reader.request({"type": "history", "channel": CH})
        assert [(m["serial"], m["status"], m["data"]) for m in history["messages"]] == [
            (ended["serial"], "complete", "hello world")
        ]
        await asyncio.gather(writer.close(), reader.close())
    finally:
        await node.stop()


async def test_postgres_unreachable_fails_publishes_clearly_and_loses_nothing_acked(
    pg_url: str, tmp_path: Any
) -> None:
    """With the database cut off (a TCP proxy in between), publishes fail with 50300; what was acked
    before is all there once the database is back."""
    proxy = TcpProxy(PG_HOST, PG_PORT)
    await proxy.start()
    db = pg_url.replace(f"@{PG_HOST}:{PG_PORT}/", f"@127.0.0.1:{proxy.port}/")
    node = ServerProcess(db)
    await node.start()
    try:
        writer = await open_wire(node, "writer")
        acked = [
            (await writer.request({"type": "publish", "channel": CH, "data": i}))["serials"][0]
            for i in range(5)
        ]
        await proxy.cut()
        failed = await writer.request({"type": "publish", "channel": CH, "data": "lost?"}, timeout=UNIT * 4)
        assert failed["type"] == "nack" and failed["code"] == Code.UNAVAILABLE, failed
        await proxy.start()
        async with asyncio.timeout(UNIT * 4):
            while True:
                reply = await writer.request(
                    {"type": "publish", "channel": CH, "data": "after"}, timeout=UNIT * 2
                )
                if reply["type"] == "ack":
                    break
        history = await writer.request(
            {"type": "history", "channel": CH, "direction": "forwards", "after": 0}
        )
        stored = [m["serial"] for m in history["messages"]]
        assert stored[:5] == acked and [m["data"] for m in history["messages"]][-1] == "after"
        await writer.close()
    finally:
        await node.stop()
        await proxy.cut()


async def test_nodes_starting_together_on_a_fresh_database_all_come_up(
    pg_url: str, redis: PrivateRedis
) -> None:
    """Three nodes started at once on an empty database migrate it once, in turn, and all serve."""
    key = "cluster:" + "k" * 40
    nodes = [ServerProcess(pg_url, key=key, bus=redis.url()) for _ in range(3)]
    try:
        await asyncio.gather(*(node.start() for node in nodes))
        for node in nodes:
            wire = await open_wire(node, "ana")
            assert (await wire.request({"type": "publish", "channel": CH, "data": 1}))["type"] == "ack"
            await wire.close()
    finally:
        await asyncio.gather(*(node.stop() for node in nodes))


async def test_starting_a_node_leaves_the_clusters_runs_alone(pg_url: str, redis: PrivateRedis) -> None:
    """A run written on A stays its writer's while B starts and outlives several leases."""
    async with cluster(pg_url, redis.url(), 1, **FAST) as (a,):
        agent = await open_wire(a, "bot", kind="agent")
        reader = await open_wire(a, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        run_id = (await agent.request({"type": "run_start", "channel": CH}))["run_id"]
        b = ServerProcess(pg_url, key=a.key, bus=redis.url(), **FAST)
        await b.start()
        try:
            late = await open_wire(b, "late")
            # B's attach reads the active runs from the Store: the run is there, still running.
            await late.request({"type": "attach", "channel": CH, "presence": False})
            snapshot = await late.expect("run_snapshot", run_id=run_id)
            assert snapshot["status"] == "running"
            # A lease is UNIT / 5: a publish answered after a unit proves several renewals passed.
            await asyncio.sleep(UNIT)  # waits out leases on purpose: no event marks a renewal
            ended = await agent.request({"type": "run_end", "run_id": run_id, "status": "completed"})
            assert ended["type"] == "ack", ended
            status = await reader.expect("run_status", run_id=run_id, status="completed")
            assert status["version"] == 2  # nothing else touched the run meanwhile
            await late.close()
        finally:
            await asyncio.gather(agent.close(), reader.close())
            await b.stop()


async def test_a_dead_nodes_runs_lose_their_writer_once(pg_url: str, redis: PrivateRedis) -> None:
    """kill -9 of the writer's node: another node sees the runs' leases lapse; the running run ends
    aborted, the one waiting for an answer is parked, each exactly once; the agent takes the parked
    one back on the surviving node."""
    async with cluster(pg_url, redis.url(), 2, **FAST) as (a, b):
        agent = await open_wire(a, "bot", kind="agent")
        reader = await open_wire(b, "reader")
        await reader.request({"type": "attach", "channel": CH, "presence": False})
        busy = (await agent.request({"type": "run_start", "channel": CH}))["run_id"]
        waiting = (await agent.request({"type": "run_start", "channel": CH}))["run_id"]
        await agent.request({"type": "ask", "channel": CH, "prompt": "go on?", "run_id": waiting})
        await reader.expect("run_status", run_id=waiting, status="input_required")
        await a.kill()
        aborted = await reader.expect("run_status", timeout=UNIT * 4, run_id=busy, status="aborted")
        parked = await reader.expect("run_status", timeout=UNIT * 4, run_id=waiting, writer=None)
        assert parked["status"] == "input_required"
        history = await reader.request({"type": "history", "channel": CH, "limit": 100})
        ends = [
            m
            for m in history["messages"]
            if m["name"] == "agentchat.run" and m["data"]["status"] != "running"
        ]
        assert [(m["run_id"], m["data"]["status"]) for m in ends] == [(busy, "aborted")]
        assert aborted["version"] == 2
        back = await open_wire(b, "bot", kind="agent")
        resumed = await back.request({"type": "run_resume", "run_id": waiting})
        assert (resumed["type"], resumed["status"]) == ("ack", "input_required"), resumed
        await asyncio.gather(agent.close(), reader.close(), back.close())
