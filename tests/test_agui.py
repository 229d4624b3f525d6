"""AG-UI over a real server: a recorded AG-UI run goes into a room and a second reader turns the
frames it receives back into the same events; mid-run joins, replays, endings, refusals, the docs."""

from __future__ import annotations

import asyncio
import json
from ast import PyCF_ALLOW_TOP_LEVEL_AWAIT
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentchat import Client
from agentchat.agui import (
    AguiError,
    Event,
    FramesToAgui,
    send_agui,
)
from agentchat.errors import RequestError
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM, member, ok
from tests.snippets import block
from tests.wire import UNIT, Wire

ROOT = Path(__file__).resolve().parent.parent
RECORDING: list[Event] = json.loads((ROOT / "tests/vectors/agui_run.json").read_text())["events"]


def normalised(events: list[Event], recording: list[Event]) -> list[Event]:
    """`events` with the run ids the server assigned replaced by the recording's runIds, matched by
    the order in which the runs start (the only ids the server chooses: messageIds and toolCallIds
    travel as they were sent)."""
    ours = [e["runId"] for e in events if e["type"] == "RUN_STARTED"]
    theirs = [e["runId"] for e in recording if e["type"] == "RUN_STARTED"]
    assert len(ours) == len(theirs), (ours, theirs)
    names = dict(zip(ours, theirs, strict=True))
    return [
        {k: names.get(v, v) if k in ("runId", "parentRunId") else v for k, v in e.items()} for e in events
    ]


async def read_until(
    wire: Wire, reader: FramesToAgui, done: Callable[[list[Event]], bool], timeout: float = UNIT * 2
) -> list[Event]:
    """Feed every frame `wire` receives to `reader` until the events so far satisfy `done`."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        while not done(events):
            events += reader.feed(await wire.inbox.get())
    return events


def finished(run_count: int) -> Callable[[list[Event]], bool]:
    """True once `run_count` runs have ended (RUN_FINISHED or RUN_ERROR)."""
    return lambda events: sum(e["type"] in ("RUN_FINISHED", "RUN_ERROR") for e in events) >= run_count


def started_a_run(events: list[Event]) -> bool:
    """True once a run has started."""
    return any(e["type"] == "RUN_STARTED" for e in events)


def merged(events: list[Event]) -> list[Event]:
    """`events` as a replay gives them: no state (it is never stored), each lane's content in one piece."""
    out: list[Event] = []
    for event in events:
        if event["type"].startswith("STATE_"):
            continue
        last = out[-1] if out else {}
        if event["type"].endswith(("_CONTENT", "_ARGS")) and last.get("type") == event["type"]:
            out[-1] = {**last, "delta": last["delta"] + event["delta"]}
        else:
            out.append(event)
    return out


# --- over a real server -------------------------------------------------------------------------


async def test_a_recorded_agui_run_round_trips_through_a_room(make_server: Callable[..., Any]) -> None:
    """The recorded AG-UI run, sent as frames by one connection, comes back from another reader's
    frames as the same events (server run ids normalised); replayed from history it gives the same
    run with each lane whole and no state."""
    srv: TestServer = await make_server()
    reader = await member(srv, "ana", kind="human")
    writer = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))
    sent = await send_agui(writer, ROOM, RECORDING)
    assert sent.active_runs == []
    got = await read_until(reader, FramesToAgui(), finished(2))
    assert normalised(got, RECORDING) == RECORDING
    late = await member(srv, "late", kind="human", position=0)
    replayed = await read_until(late, FramesToAgui(), finished(2))
    assert normalised(replayed, RECORDING) == merged(RECORDING)
    await writer.close()


async def test_a_reader_joining_mid_run_gets_the_snapshot_first(make_server: Callable[..., Any]) -> None:
    """A reader attaching while the answer streams gets RUN_STARTED, the state (snapshot and the
    deltas since), the partial answer as START + CONTENT, then the live rest and RUN_FINISHED."""
    srv: TestServer = await make_server()
    writer = await member(srv, "planner")  # attached: this node serves the room and keeps its runs' state
    cut = RECORDING.index({"type": "TEXT_MESSAGE_CONTENT", "messageId": "answer-1", "delta": "It is "}) + 1
    translator = await send_agui(writer, ROOM, RECORDING[:cut])
    assert translator.active_runs == ["run-planner-1"]
    late = await member(srv, "late", kind="human")
    reader = FramesToAgui()
    joined = await read_until(late, reader, lambda events: len(events) >= 5)
    await send_agui(writer, translator, RECORDING[cut:])
    rest = await read_until(late, reader, finished(1))
    assert normalised(joined + rest, RECORDING[:1]) == [
        RECORDING[0],
        {"type": "STATE_SNAPSHOT", "snapshot": {"plan": ["search", "answer"], "done": []}},
        {"type": "STATE_DELTA", "delta": [{"op": "add", "path": "/done/-", "value": "search"}]},
        {"type": "TEXT_MESSAGE_START", "messageId": "answer-1", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "answer-1", "delta": "It is "},
        *RECORDING[cut:],
    ]
    await writer.close()


async def test_failed_cancelled_and_aborted_runs_end_in_run_error(make_server: Callable[..., Any]) -> None:
    """RUN_ERROR ends the run `failed` and comes back with its message and code; a member's cancel
    gives RUN_ERROR code `cancelled`; a writer that vanishes gives RUN_ERROR code `writer_lost`.
    The open text lane ends first each time."""
    srv: TestServer = await make_server(stream_grace=0.2, **FAST)
    ana = await member(srv, "ana", kind="human")
    writer = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))
    started = [
        {"type": "RUN_STARTED", "threadId": ROOM, "runId": "run-1"},
        {"type": "TEXT_MESSAGE_START", "messageId": "m-1", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-1", "delta": "Half an ans"},
    ]
    error = {"type": "RUN_ERROR", "message": "model unavailable", "code": "upstream_503"}
    await send_agui(writer, ROOM, [*started, error])
    reader = FramesToAgui()
    got = normalised(await read_until(ana, reader, finished(1)), started)
    assert got == [*started, {"type": "TEXT_MESSAGE_END", "messageId": "m-1"}, {**error, "runId": "run-1"}]

    translator = await send_agui(
        writer, ROOM, [{**e, "runId": "run-2"} if "runId" in e else e for e in started[:1]]
    )
    (run_id,) = [e["runId"] for e in await read_until(ana, reader, started_a_run)]
    await ok(ana, {"type": "run_cancel", "run_id": run_id})
    assert (await read_until(ana, reader, finished(1)))[-1] == {
        "type": "RUN_ERROR",
        "message": "cancelled by ana",
        "code": "cancelled",
        "runId": run_id,
    }
    assert translator.active_runs == ["run-2"]  # AG-UI has no cancel event: the writer is told by the server

    await send_agui(writer, ROOM, [{"type": "RUN_STARTED", "threadId": ROOM, "runId": "run-3"}])
    (run_id,) = [e["runId"] for e in await read_until(ana, reader, started_a_run)]
    writer.cut()
    lost = await read_until(ana, reader, finished(1), timeout=UNIT * 3)
    assert lost[-1] == {
        "type": "RUN_ERROR",
        "message": "the run's writer was lost",
        "code": "writer_lost",
        "runId": run_id,
    }


async def test_a_refused_frame_raises_at_the_event_that_caused_it(make_server: Callable[..., Any]) -> None:
    """A sub-run whose parent the server does not know is refused: send_agui raises AguiError with
    the server's code, and the connection stays usable."""
    srv: TestServer = await make_server()
    writer = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))
    orphan = {"type": "RUN_STARTED", "threadId": ROOM, "runId": "run-1", "parentRunId": "r_nope"}
    with pytest.raises(AguiError, match="40404"):
        await send_agui(writer, ROOM, [orphan])
    assert (await writer.request({"type": "ping"}))["type"] == "ack"
    await writer.close()


async def run_block(containing: str, srv: TestServer, namespace: dict[str, Any]) -> None:
    """Run the python block of docs/agui.md that contains `containing` against `srv` (its documented
    address replaced by the server's), as the body of an async function."""
    text = block("docs/agui.md", containing).text
    text = text.replace("ws://127.0.0.1:8080/v1/ws", srv.ws_url).replace("http://127.0.0.1:8080", srv.url)
    result = eval(compile(text, "<agui.md>", "exec", flags=PyCF_ALLOW_TOP_LEVEL_AWAIT), namespace)
    if asyncio.iscoroutine(result):
        await result


async def test_the_docs_examples_run(make_server: Callable[..., Any]) -> None:
    """docs/agui.md's examples against a real server: a Client puts the recorded run into the room
    through send_agui, and the raw WebSocket reader hands the same events to `send`."""
    srv: TestServer = await make_server()
    got: list[Event] = []
    attached, done = asyncio.Event(), asyncio.Event()

    def send(event: Event) -> None:
        got.append(event)
        attached.set()  # its first event comes from the run's snapshot: it is attached
        if finished(2)(got):
            done.set()

    async def events() -> AsyncIterator[Event]:
        yield RECORDING[0]
        await attached.wait()  # the rest once the reader is in the room
        for event in RECORDING[1:]:
            yield event

    reader = asyncio.create_task(run_block("FramesToAgui()", srv, {"token": srv.token("ana"), "send": send}))
    writer: dict[str, Any] = {"token": srv.token("planner", kind="agent"), "events": events()}
    try:
        async with asyncio.timeout(UNIT * 2):
            await run_block("send_agui(client", srv, writer)
            await done.wait()
    finally:
        reader.cancel()
    assert writer["translator"].active_runs == []
    assert normalised(got, RECORDING) == RECORDING


async def test_a_client_is_a_link_and_state_reaches_a_later_reader(
    make_server: Callable[..., Any],
) -> None:
    """An SDK Client carries send_agui (a refusal raises its RequestError). State a writer shared
    before any reader was on the node is in the run's snapshot (the writer's node keeps it); a fresh
    STATE_SNAPSHOT reaches the reader live."""
    srv: TestServer = await make_server()
    async with Client(srv.url, token=srv.token("planner", kind="agent")) as client:
        with pytest.raises(RequestError):
            await send_agui(client, ROOM, [{**RECORDING[0], "parentRunId": "r_nope"}])
        translator = await send_agui(client, ROOM, RECORDING[:2])  # RUN_STARTED, STATE_SNAPSHOT
        late = await member(srv, "late", kind="human")
        reader = FramesToAgui()
        has_state = lambda events: any(e["type"] == "STATE_SNAPSHOT" for e in events)  # noqa: E731
        joined = await read_until(late, reader, has_state)
        assert [e["type"] for e in joined] == ["RUN_STARTED", "STATE_SNAPSHOT"]
        assert joined[1]["snapshot"] == RECORDING[1]["snapshot"]
        await send_agui(client, translator, [RECORDING[1]])
        assert await read_until(late, reader, lambda events: len(events) == 1) == [RECORDING[1]]
    await late.close()


def test_the_docs_carry_the_modules_table() -> None:
    """docs/agui.md shows every row of the mapping table in agentchat.agui's docstring."""
    import agentchat.agui

    rows = [line for line in (agentchat.agui.__doc__ or "").splitlines() if line.startswith("| `")]
    assert len(rows) >= 10
    docs = (ROOT / "docs/agui.md").read_text()
    assert [row for row in rows if row not in docs] == []
