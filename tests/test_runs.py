"""Runs over real sockets: lanes (text, reasoning, tool calls) end as one record each and replay to a
late reader; a reader joining mid-run gets the runs (nested ones too) and their lanes; failed,
cancelled and aborted stay distinct; only the run's writer writes to it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM, member, ok, record, refused, said, seen
from tests.wire import UNIT, Wire


async def lane(wire: Wire, run_id: str, kind: str, chunks: list[str], end: bool = True, **fields: Any) -> str:
    """Open a lane of a run, append its chunks, and end it (complete) unless told not to."""
    frame = {"type": "stream_open", "channel": ROOM, "run_id": run_id, "lane": kind, **fields}
    stream_id = str((await ok(wire, frame))["stream_id"])
    for i, chunk in enumerate(chunks):
        await wire.send({"type": "stream_append", "stream_id": stream_id, "i": i, "d": chunk})
    if end:
        await ok(wire, {"type": "stream_end", "stream_id": stream_id, "chunks": len(chunks)})
    else:
        await ok(wire, {"type": "ping"})  # the chunks are in before anyone attaches
    return stream_id


async def test_a_run_with_tool_calls_is_replayed_to_a_late_reader(make_server: Callable[..., Any]) -> None:
    """A run's start, reasoning, tool call (arguments streamed), tool result, answer and end are seven
    durable records; a reader arriving afterwards replays them in order, each tagged with the run."""
    srv: TestServer = await make_server()
    human = await member(srv, "ana", kind="human")
    question = await said(human, "weather in Oslo?", to=["planner"])
    planner = await member(srv, "planner")
    started = await ok(planner, {"type": "run_start", "channel": ROOM, "reply_to": question, "id": "q1-run"})
    run_id = started["run_id"]
    assert started["status"] == "running"
    await lane(planner, run_id, "reasoning", ["I need ", "the weather tool"])
    call = {"id": "call_1", "name": "weather"}
    await lane(planner, run_id, "tool_call", ['{"city":', ' "Oslo"}'], tool_call=call)
    await said(planner, {"temp_c": 4}, run_id=run_id, lane="tool_result", tool_call={"id": "call_1"})
    await lane(planner, run_id, "text", ["It is ", "4 °C."])
    ended = await ok(
        planner, {"type": "run_end", "run_id": run_id, "status": "completed", "result": {"ok": True}}
    )
    again = await ok(planner, {"type": "run_start", "channel": ROOM, "reply_to": question, "id": "q1-run"})
    assert again["run_id"] == run_id  # a retried start is the same run
    late = await member(srv, "late", kind="human", position=0)
    replay = await late.messages(7)
    assert [m["serial"] for m in replay] == list(range(1, 8))
    start, reasoning, tool_call, tool_result, text, end = replay[1:]
    assert (start["name"], start["data"], start["run_id"], start["reply_to"]) == (
        "agentchat.run",
        {"status": "running"},
        run_id,
        question,
    )
    assert (reasoning["lane"], reasoning["data"], reasoning["status"]) == (
        "reasoning",
        "I need the weather tool",
        "complete",
    )
    assert (tool_call["lane"], tool_call["tool_call"], tool_call["data"]) == (
        "tool_call",
        call,
        '{"city": "Oslo"}',
    )
    assert (tool_result["lane"], tool_result["tool_call"], tool_result["data"]) == (
        "tool_result",
        {"id": "call_1"},
        {"temp_c": 4},
    )
    assert (text["lane"], text["data"]) == ("text", "It is 4 °C.")
    assert end["serial"] == ended["serial"] and end["data"] == {"status": "completed", "result": {"ok": True}}
    assert {m["run_id"] for m in replay[1:]} == {run_id}
    running = await human.expect("run_status", run_id=run_id)
    assert (running["status"], running["version"], running["requester"], running["reply_to"]) == (
        "running",
        1,
        "ana",
        question,
    )
    completed = await human.expect("run_status", run_id=run_id, status="completed")
    assert completed["version"] == 2


async def test_a_reader_joining_mid_run_gets_the_runs_nested_ones_and_their_lanes(
    make_server: Callable[..., Any],
) -> None:
    """Mid-run, a new reader gets run snapshots (parent first, with the shared state so far) before
    the lanes' stream snapshots, then the live rest."""
    srv: TestServer = await make_server()
    planner, researcher = await member(srv, "planner"), await member(srv, "researcher")
    top = (await ok(planner, {"type": "run_start", "channel": ROOM}))["run_id"]
    sub = (await ok(researcher, {"type": "run_start", "channel": ROOM, "parent": top}))["run_id"]
    await planner.send({"type": "run_state", "run_id": top, "snapshot": {"steps": ["search"]}})
    delta = [{"op": "add", "path": "/steps/-", "value": "write"}]
    await ok(planner, {"type": "run_state", "run_id": top, "delta": delta})
    text = await lane(planner, top, "text", ["Draft: "], end=False)
    thinking = await lane(researcher, sub, "reasoning", ["looking"], end=False)
    late = await member(srv, "late", kind="human")
    catch_up = [
        await late.expect(kind)
        for kind in ("run_snapshot", "run_snapshot", "stream_snapshot", "stream_snapshot")
    ]
    parent, child = catch_up[0], catch_up[1]
    assert (parent["run_id"], parent["status"], parent["state"], parent["deltas"]) == (
        top,
        "running",
        {"steps": ["search"]},
        delta,
    )
    assert (child["run_id"], child["parent_run_id"], child["client_id"]) == (sub, top, "researcher")
    lanes = {f["stream_id"]: (f["run_id"], f["lane"], f["content"]) for f in catch_up[2:]}
    assert lanes == {text: (top, "text", "Draft: "), thinking: (sub, "reasoning", "looking")}
    await ok(researcher, {"type": "run_end", "run_id": sub, "status": "completed"})
    done, lane_end = await seen(
        late, {"type": "run_status", "run_id": sub}, {"type": "message", "stream_id": thinking}
    )
    assert (done["status"], done["version"], lane_end["status"]) == ("completed", 2, "complete")
    await ok(planner, {"type": "run_end", "run_id": top, "status": "completed"})
    assert (await late.expect("run_status", run_id=top))["status"] == "completed"


async def test_the_first_reader_on_a_node_learns_runs_from_the_store(make_server: Callable[..., Any]) -> None:
    """Runs that started before a node served the channel reach its first reader from the Store."""
    srv: TestServer = await make_server()
    planner = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))  # writes, never attaches
    run_id = (await ok(planner, {"type": "run_start", "channel": ROOM}))["run_id"]
    assert srv.broker.registry.get(ROOM) is None  # this node never saw the run's frames
    reader = await member(srv, "reader", kind="human")
    snapshot = await reader.expect("run_snapshot")
    assert (snapshot["run_id"], snapshot["status"], snapshot["client_id"]) == (run_id, "running", "planner")
    await planner.close()


async def test_failed_cancelled_and_aborted_are_three_different_endings(
    make_server: Callable[..., Any],
) -> None:
    """A model error ends `failed` with the error; a member's stop ends `cancelled` with who; a
    vanished writer ends `aborted` after the grace. Streams and runs alike."""
    srv: TestServer = await make_server(stream_grace=0.2, **FAST)
    human = await member(srv, "ana", kind="human")
    bot = await member(srv, "bot")
    stream_id = (await ok(bot, {"type": "stream_open", "channel": ROOM}))["stream_id"]
    await bot.send({"type": "stream_append", "stream_id": stream_id, "i": 0, "d": "partial"})
    error = {"message": "upstream timed out", "code": "model_timeout"}
    await ok(bot, {"type": "stream_end", "stream_id": stream_id, "status": "failed", "error": error})
    failed = await record(human, "message", stream_id=stream_id)
    assert (failed["status"], failed["error"], failed["data"]) == ("failed", error, "partial")
    assert "cancelled_by" not in failed

    run_id = (await ok(bot, {"type": "run_start", "channel": ROOM}))["run_id"]
    await ok(bot, {"type": "run_end", "run_id": run_id, "status": "failed", "error": error})
    run_failed = await record(
        human, "agentchat.run", run_id=run_id, data={"status": "failed", "error": error}
    )
    assert run_failed["kind"] == "agent"
    assert (await human.expect("run_status", run_id=run_id, status="failed"))["error"] == error

    run_id = (await ok(bot, {"type": "run_start", "channel": ROOM}))["run_id"]
    text = await lane(bot, run_id, "text", ["half an ans"], end=False)
    await ok(human, {"type": "run_cancel", "run_id": run_id})
    told = await bot.expect("run_cancelled", run_id=run_id)
    assert told["by"] == "ana"
    lane_end = await record(human, "message", stream_id=text)
    assert (lane_end["status"], lane_end["cancelled_by"], lane_end["data"]) == (
        "cancelled",
        "ana",
        "half an ans",
    )
    cancelled = await record(human, "agentchat.run", run_id=run_id)
    assert cancelled["data"] == {"status": "cancelled", "cancelled_by": "ana"}
    await refused(
        bot,
        {"type": "stream_append", "stream_id": text, "i": 1, "d": "swer", "ref": 0},
        Code.STREAM_NOT_FOUND,
    )
    await refused(bot, {"type": "run_end", "run_id": run_id, "status": "completed"}, Code.RUN_NOT_FOUND)

    run_id = (await ok(bot, {"type": "run_start", "channel": ROOM}))["run_id"]
    lost = await lane(bot, run_id, "text", ["never finished"], end=False)
    bot.cut()
    lane_end = await record(human, "message", timeout=UNIT * 2, stream_id=lost)
    assert (lane_end["status"], lane_end["data"]) == ("aborted", "never finished")
    aborted = await record(human, "agentchat.run", run_id=run_id)
    assert aborted["data"] == {"status": "aborted"} and aborted["serial"] > lane_end["serial"]
    await human.expect("run_status", run_id=run_id, status="aborted")
    await bot.close()


async def test_only_the_runs_writer_writes_to_it(connect: Callable[..., Any]) -> None:
    """Lanes, tool results, state and the end come from the writer's connection (40908); unknown or
    ended runs are 40404; a sub-run's parent must be active; state is bounded (41303)."""
    writer = await connect("planner", kind="agent")
    other = await connect("planner", kind="agent")  # same client, another connection
    stranger = await connect("mallory", kind="agent", capabilities={"*": ["subscribe", "publish", "stream"]})
    run_id = (await ok(writer, {"type": "run_start", "channel": ROOM}))["run_id"]
    lane_open = {"type": "stream_open", "channel": ROOM, "run_id": run_id, "lane": "text"}
    await refused(other, lane_open, Code.NOT_RUN_WRITER)
    await refused(
        stranger, {"type": "run_state", "run_id": run_id, "snapshot": 1, "ref": 1}, Code.NOT_RUN_WRITER
    )
    result = {
        "type": "publish",
        "channel": ROOM,
        "data": 1,
        "run_id": run_id,
        "lane": "tool_result",
        "tool_call": {"id": "c"},
    }
    await refused(stranger, result, Code.NOT_RUN_WRITER)
    await refused(stranger, {"type": "run_end", "run_id": run_id, "status": "completed"}, Code.NOT_RUN_WRITER)
    await refused(stranger, {"type": "run_cancel", "run_id": run_id}, Code.FORBIDDEN)
    await refused(writer, {"type": "run_end", "run_id": "r_nope", "status": "completed"}, Code.RUN_NOT_FOUND)
    await refused(writer, {"type": "run_start", "channel": ROOM, "parent": "r_nope"}, Code.RUN_NOT_FOUND)
    big = {"type": "run_state", "run_id": run_id, "snapshot": "x" * 70_000, "ref": 2}
    await refused(writer, big, Code.RUN_STATE_TOO_LARGE)
    delta = [{"op": "add", "path": "/a", "value": "y" * 40_000}]
    await ok(writer, {"type": "run_state", "run_id": run_id, "delta": delta})
    await refused(writer, {"type": "run_state", "run_id": run_id, "delta": delta}, Code.RUN_STATE_TOO_LARGE)
    await ok(writer, {"type": "run_state", "run_id": run_id, "snapshot": {"a": 1}})
    await ok(writer, {"type": "run_state", "run_id": run_id, "delta": delta})  # a snapshot resets the budget
    taken = await ok(other, {"type": "run_resume", "run_id": run_id})
    assert taken["status"] == "running"
    await refused(writer, lane_open, Code.NOT_RUN_WRITER)
    small = [{"op": "replace", "path": "/a", "value": 2}]
    await refused(
        other, {"type": "run_state", "run_id": run_id, "delta": small, "ref": 3}, Code.RUN_STATE_TOO_LARGE
    )
    await ok(other, {"type": "run_state", "run_id": run_id, "snapshot": {"a": 1}})
    await ok(other, {"type": "run_state", "run_id": run_id, "delta": small})
    await ok(other, {"type": "run_end", "run_id": run_id, "status": "completed"})
    await refused(stranger, {"type": "run_resume", "run_id": run_id}, Code.RUN_NOT_FOUND)


async def test_a_run_answering_a_claim_completes_it_or_frees_it(connect: Callable[..., Any]) -> None:
    """A run started with a claim token makes the claim done when it completes; a failed run frees
    it so another worker can take the task."""
    human = await connect("ana")
    await human.request({"type": "attach", "channel": ROOM, "presence": False})
    first, second = await said(human, "task one"), await said(human, "task two")
    worker, spare = await connect("worker", kind="agent"), await connect("spare", kind="agent")
    for task, status in ((first, "completed"), (second, "failed")):
        token = (await ok(worker, {"type": "claim", "channel": ROOM, "serial": task}))["token"]
        run_id = (await ok(worker, {"type": "run_start", "channel": ROOM, "reply_to": task, "claim": token}))[
            "run_id"
        ]
        end: dict[str, Any] = {"type": "run_end", "run_id": run_id, "status": status}
        if status == "failed":
            end["error"] = {"message": "model unavailable"}
        await ok(worker, end)
    assert (await human.expect("claim", serial=first, state="done"))["client_id"] == "worker"
    assert (await human.expect("claim", serial=second, state="released"))["client_id"] == "worker"
    await refused(spare, {"type": "claim", "channel": ROOM, "serial": first}, Code.CLAIMED)
    assert (await ok(spare, {"type": "claim", "channel": ROOM, "serial": second}))["token"] == 2


async def test_a_run_is_cancelled_from_another_node(
    make_server: Callable[..., Any], pg_url: str, redis_url: str
) -> None:
    """A member on node two cancels a run written on node one: the writer is told, its open lane
    ends `cancelled` by that member, and the run's record says who."""
    shared = {"db": pg_url, "bus": f"{redis_url}?prefix=runs{id(pg_url)}"}
    one: TestServer = await make_server(**shared)
    two: TestServer = await make_server(**shared)
    writer = await member(one, "planner")
    ana = await member(two, "ana", kind="human")
    run_id = (await ok(writer, {"type": "run_start", "channel": ROOM}))["run_id"]
    text = await lane(writer, run_id, "text", ["thinking out loud"], end=False)
    await ok(ana, {"type": "run_cancel", "run_id": run_id})
    told = await writer.expect("run_cancelled", timeout=UNIT * 2, run_id=run_id)
    assert told["by"] == "ana"
    lane_end, record_end = await seen(
        ana,
        {"type": "message", "stream_id": text},
        {"type": "message", "name": "agentchat.run", "data": {"status": "cancelled", "cancelled_by": "ana"}},
        timeout=UNIT * 2,
    )
    assert (lane_end["status"], lane_end["cancelled_by"], record_end["run_id"]) == (
        "cancelled",
        "ana",
        run_id,
    )


async def test_a_runs_state_reaches_a_reader_joining_a_channel_nobody_watched(
    connect: Callable[..., Any], server: TestServer
) -> None:
    """State a run's writer shared while no reader was attached anywhere still reaches the first
    reader to attach: its run snapshot carries the last snapshot and the deltas since."""
    planner = await connect("planner", kind="agent")
    run_id = (await ok(planner, {"type": "run_start", "channel": ROOM}))["run_id"]
    await ok(planner, {"type": "run_state", "run_id": run_id, "snapshot": {"steps": ["search"]}})
    delta = [{"op": "add", "path": "/steps/-", "value": "write"}]
    await ok(planner, {"type": "run_state", "run_id": run_id, "delta": delta})
    late = await member(server, "late", kind="human")
    snapshot = await late.expect("run_snapshot")
    assert (snapshot["run_id"], snapshot.get("state"), snapshot.get("deltas")) == (
        run_id,
        {"steps": ["search"]},
        delta,
    )
    await late.close()


async def test_runs_per_connection_are_bounded_and_counted_where_they_are_written(
    make_server: Callable[..., Any],
) -> None:
    """A connection writing `max_runs_per_connection` runs is refused another (42905); ending one
    frees its place, and a run taken over by another connection counts there, not here."""
    srv: TestServer = await make_server(max_runs_per_connection=2)
    writer = await member(srv, "planner")
    other = await member(srv, "planner")
    first = (await ok(writer, {"type": "run_start", "channel": ROOM}))["run_id"]
    second = (await ok(writer, {"type": "run_start", "channel": ROOM}))["run_id"]
    await refused(writer, {"type": "run_start", "channel": ROOM}, Code.TOO_MANY_RUNS)
    await ok(writer, {"type": "run_end", "run_id": first, "status": "completed"})
    third = (await ok(writer, {"type": "run_start", "channel": ROOM}))["run_id"]
    await ok(other, {"type": "run_resume", "run_id": second})  # `other` writes it now
    await ok(writer, {"type": "run_start", "channel": ROOM})
    await ok(other, {"type": "run_start", "channel": ROOM})
    await refused(other, {"type": "run_start", "channel": ROOM}, Code.TOO_MANY_RUNS)
    await ok(writer, {"type": "run_end", "run_id": third, "status": "completed"})
    await asyncio.gather(writer.close(), other.close())
