"""The AG-UI translators alone, no sockets: frames wait for the ids the server assigns, server frames
become events, endings, A2A states, and bad input raising AguiError (never a KeyError)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from agentchat.agui import A2A_STATES, AguiError, AguiToFrames, FramesToAgui, a2a_state

ROOM = "team:alpha"


def test_frames_wait_for_the_ids_the_server_assigns() -> None:
    """A lane's frames come only after the run_start and stream_open replies bound the run and
    stream ids; the chunk indexes count from 0 and the end says how many there were."""
    t = AguiToFrames(ROOM, reply_to=7, to=["ana"])
    t.feed({"type": "RUN_STARTED", "threadId": "anything", "runId": "run-1"})
    t.feed({"type": "TEXT_MESSAGE_START", "messageId": "m-1"})
    t.feed({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m-1", "delta": "Hi"})
    t.feed({"type": "TEXT_MESSAGE_END", "messageId": "m-1"})
    assert t.next_frame() == {
        "type": "run_start",
        "channel": ROOM,
        "id": "run-1",
        "reply_to": 7,
        "to": ["ana"],
    }
    assert t.needs_reply and t.next_frame() is None
    t.reply({"type": "ack", "run_id": "r_1", "serial": 8, "status": "running"})
    meta = {"agui": {"messageId": "m-1", "role": "assistant"}}
    opened = {"type": "stream_open", "channel": ROOM, "run_id": "r_1", "lane": "text", "meta": meta}
    assert t.next_frame() == opened
    t.reply({"type": "ack", "stream_id": "s_1"})
    assert t.next_frame() == {"type": "stream_append", "stream_id": "s_1", "i": 0, "d": "Hi"}
    assert not t.needs_reply
    t.reply({"type": "ack"})
    assert t.next_frame() == {"type": "stream_end", "stream_id": "s_1", "chunks": 1}
    assert t.next_frame() is None
    with pytest.raises(AguiError, match="40908"):
        t.reply({"type": "nack", "code": 40908, "message": "not the run's writer"})


def test_server_frames_become_events() -> None:
    """Run status, lanes (chunks in order, duplicates skipped), tool results and the end record
    become AG-UI events; a run is announced once and ended by its end record (with the result), not
    by a terminal run_status; streams that are not lanes give nothing."""
    r = FramesToAgui()
    status = {"type": "run_status", "channel": ROOM, "run_id": "r_1", "version": 1, "status": "running"}
    assert r.feed(status) == [{"type": "RUN_STARTED", "threadId": ROOM, "runId": "r_1"}]
    start = {"type": "message", "channel": ROOM, "serial": 1, "name": "agentchat.run", "run_id": "r_1"}
    assert r.feed({**start, "data": {"status": "running"}}) == []
    lane = {"channel": ROOM, "stream_id": "s_1", "run_id": "r_1", "lane": "tool_call"}
    call = {"id": "c_1", "name": "search"}
    assert r.feed({"type": "stream_open", **lane, "tool_call": call}) == [
        {"type": "TOOL_CALL_START", "toolCallId": "c_1", "toolCallName": "search"}
    ]
    args = {"type": "TOOL_CALL_ARGS", "toolCallId": "c_1", "delta": "{}"}
    assert r.feed({"type": "stream_chunk", "channel": ROOM, "stream_id": "s_1", "i": 0, "d": "{}"}) == [args]
    assert r.feed({"type": "stream_chunk", "channel": ROOM, "stream_id": "s_1", "i": 0, "d": "{}"}) == []
    end = {
        "type": "message",
        "serial": 2,
        "id": "s_1",
        "data": "{}",
        "status": "complete",
        **lane,
        "tool_call": call,
    }
    assert r.feed(end) == [{"type": "TOOL_CALL_END", "toolCallId": "c_1"}]
    result = {"type": "message", "channel": ROOM, "serial": 3, "id": "x", "run_id": "r_1", "data": {"n": 1}}
    assert r.feed({**result, "lane": "tool_result", "tool_call": {"id": "c_1"}}) == [
        {
            "type": "TOOL_CALL_RESULT",
            "messageId": "x",
            "toolCallId": "c_1",
            "content": '{"n": 1}',
            "role": "tool",
        }
    ]
    plain = {"type": "stream_open", "channel": ROOM, "stream_id": "s_2", "format": "text"}
    assert r.feed(plain) == [] and r.feed({"type": "presence", "channel": ROOM}) == []
    assert r.feed({**status, "version": 2, "status": "completed"}) == []  # the record ends it
    assert r.feed({**start, "serial": 4, "data": {"status": "completed", "result": 42}}) == [
        {"type": "RUN_FINISHED", "threadId": ROOM, "runId": "r_1", "result": 42}
    ]
    assert r.feed({**status, "run_id": "r_9", "version": 2, "status": "failed"}) == []
    assert r.feed({"type": "run_state", "channel": ROOM, "run_id": "r_1", "snapshot": {}}) == []


def test_a_lane_that_comes_before_its_run_waits_for_run_started() -> None:
    """A run a node learns from the Store may reach a reader after its lanes' snapshots: the lane's
    events come out right after RUN_STARTED, never before it."""
    r = FramesToAgui()
    lane = {"channel": ROOM, "stream_id": "s_1", "run_id": "r_1", "lane": "text", "format": "text"}
    assert r.feed({"type": "stream_snapshot", **lane, "content": "Hel", "next": 1}) == []
    assert r.feed({"type": "stream_chunk", "channel": ROOM, "stream_id": "s_1", "i": 1, "d": "lo"}) == []
    snapshot = {"type": "run_snapshot", "channel": ROOM, "run_id": "r_1", "version": 1, "status": "running"}
    assert r.feed({**snapshot, "parent_run_id": "r_0"}) == [
        {"type": "RUN_STARTED", "threadId": ROOM, "runId": "r_1", "parentRunId": "r_0"},
        {"type": "TEXT_MESSAGE_START", "messageId": "s_1", "role": "assistant"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "s_1", "delta": "Hel"},
        {"type": "TEXT_MESSAGE_CONTENT", "messageId": "s_1", "delta": "lo"},
    ]


def test_run_error_without_run_id_ends_every_active_run() -> None:
    """RUN_ERROR without runId fails every active run, sub-runs first, with the message cut to 1000
    characters and the code to 64; with a runId it ends that run and its sub-runs only."""
    t = AguiToFrames(ROOM)
    for run, parent in (("a", None), ("b", "a"), ("c", "b")):
        t.feed({"type": "RUN_STARTED", "runId": run, **({"parentRunId": parent} if parent else {})})
        t.next_frame()
        t.reply({"type": "ack", "run_id": f"r_{run}"})
    t.feed({"type": "RUN_ERROR", "message": "boom", "runId": "b"})
    assert [f["run_id"] for f in iter(t.next_frame, None)] == ["r_c", "r_b"]
    assert t.active_runs == ["a"]
    t.feed({"type": "RUN_ERROR", "message": "m" * 2000, "code": "c" * 100})
    (end,) = iter(t.next_frame, None)
    assert end == {
        "type": "run_end",
        "run_id": "r_a",
        "status": "failed",
        "error": {"message": "m" * 1000, "code": "c" * 64},
    }
    assert t.active_runs == []


def test_lanes_written_without_agui_meta_and_state_after_a_new_attach() -> None:
    """A reasoning lane an agentchat agent wrote (no AG-UI meta) comes back in its own reasoning
    block named by its stream id; a run_snapshot repeats the state only after a new `attached`."""
    r = FramesToAgui()
    snapshot = {"type": "run_snapshot", "channel": ROOM, "run_id": "r_1", "version": 1, "status": "running"}
    assert r.feed({**snapshot, "state": {"a": 1}}) == [
        {"type": "RUN_STARTED", "threadId": ROOM, "runId": "r_1"},
        {"type": "STATE_SNAPSHOT", "snapshot": {"a": 1}},
    ]
    lane = {"channel": ROOM, "stream_id": "s_1", "run_id": "r_1", "lane": "reasoning"}
    end = {"type": "message", "serial": 2, "id": "s_1", "data": "hmm", "status": "complete", **lane}
    assert r.feed(end) == [
        {"type": "REASONING_START", "messageId": "s_1"},
        {"type": "REASONING_MESSAGE_START", "messageId": "s_1", "role": "reasoning"},
        {"type": "REASONING_MESSAGE_CONTENT", "messageId": "s_1", "delta": "hmm"},
        {"type": "REASONING_MESSAGE_END", "messageId": "s_1"},
        {"type": "REASONING_END", "messageId": "s_1"},
    ]
    assert r.feed({**snapshot, "state": {"a": 2}}) == []  # learned late: the live frames had it
    assert r.feed({"type": "attached", "channel": ROOM, "position": {"serial": 2, "epoch": "e"}}) == []
    assert r.feed({**snapshot, "state": {"a": 3}, "deltas": [{"op": "remove", "path": "/a"}]}) == [
        {"type": "STATE_SNAPSHOT", "snapshot": {"a": 3}},
        {"type": "STATE_DELTA", "delta": [{"op": "remove", "path": "/a"}]},
    ]


def test_a2a_states_follow_the_table() -> None:
    """Each run status has its A2A task state (`aborted` is `failed`); an unknown one is an AguiError."""
    assert {s: a2a_state(s) for s in A2A_STATES} == {
        "running": "working",
        "input_required": "input-required",
        "completed": "completed",
        "failed": "failed",
        "cancelled": "canceled",
        "aborted": "failed",
    }
    with pytest.raises(AguiError, match="no A2A state"):
        a2a_state("paused")


RUN = {"type": "RUN_STARTED", "threadId": ROOM, "runId": "run-1"}


@pytest.mark.parametrize(
    ("events", "says"),
    [
        ([{"type": "RUN_LAUNCHED"}], "unknown AG-UI event type"),
        ([{"runId": "run-1"}], "needs a type"),
        (["RUN_STARTED"], "is an object"),
        ([{"type": "RUN_STARTED", "threadId": ROOM}], "needs runId"),
        ([RUN, RUN], "started twice"),
        ([RUN, {**RUN, "runId": "run-2"}], "needs parentRunId"),
        ([{"type": "TEXT_MESSAGE_START", "messageId": "m"}], "outside a run"),
        ([RUN, {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": "x"}], "not an open text lane"),
        (
            [
                RUN,
                {"type": "TEXT_MESSAGE_START", "messageId": "m"},
                {"type": "TEXT_MESSAGE_CONTENT", "messageId": "m"},
            ],
            "delta",
        ),
        (
            [
                RUN,
                {"type": "TEXT_MESSAGE_START", "messageId": "m"},
                {"type": "TOOL_CALL_ARGS", "toolCallId": "m", "delta": "x"},
            ],
            "not an open tool_call lane",
        ),
        ([RUN, {"type": "TOOL_CALL_START", "toolCallId": "c"}], "needs toolCallName"),
        ([RUN, {"type": "TOOL_CALL_START", "toolCallId": "c" * 65, "toolCallName": "f"}], "longer than 64"),
        ([RUN, {"type": "TOOL_CALL_RESULT", "toolCallId": "c"}], "needs content"),
        ([RUN, {"type": "STATE_DELTA", "delta": {"op": "add"}}], "JSON Patch"),
        ([RUN, {"type": "STATE_SNAPSHOT"}], "needs a snapshot"),
        ([RUN, {"type": "RUN_FINISHED", "runId": "run-9"}], "innermost active run"),
        ([RUN, {"type": "RUN_FINISHED", "runId": "run-1", "outcome": "interrupt"}], "interrupt"),
        ([RUN, {"type": "RUN_ERROR", "code": "x"}], "needs message"),
        ([{"type": "RUN_ERROR", "message": "boom"}], "outside a run"),
        ([RUN, {"type": "TEXT_MESSAGE_CHUNK", "messageId": "m", "delta": "x"}], "not mapped"),
    ],
)
def test_bad_agui_input_raises_agui_error(events: list[Any], says: str) -> None:
    """Events that cannot map raise AguiError saying why (never a KeyError); known events with
    nothing to map (steps, custom, raw) are taken and send nothing."""
    translator = AguiToFrames(ROOM)
    with pytest.raises(AguiError, match=re.escape(says)):
        for event in events:
            translator.feed(event)
    quiet = AguiToFrames(ROOM)
    for event in ({"type": "STEP_STARTED", "stepName": "plan"}, {"type": "CUSTOM", "name": "x", "value": 1}):
        quiet.feed(event)
    assert quiet.next_frame() is None


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "run_status", "channel": ROOM, "run_id": "r_1"},
        {"type": "stream_open", "channel": ROOM, "run_id": "r_1", "lane": "text"},
        {"type": "message", "channel": ROOM, "serial": 3, "run_id": "r_1", "lane": "tool_result", "data": 1},
    ],
)
def test_broken_server_frames_raise_agui_error(frame: dict[str, Any]) -> None:
    """A run or lane frame without the fields of its kind raises AguiError, never a KeyError."""
    with pytest.raises(AguiError, match="without the fields"):
        FramesToAgui().feed(frame)


def test_a_chunk_that_skips_ahead_raises() -> None:
    """A lane chunk past the next expected index means frames were lost: AguiError, not a gap."""
    r = FramesToAgui()
    r.feed({"type": "stream_open", "channel": ROOM, "stream_id": "s_1", "run_id": "r_1", "lane": "text"})
    with pytest.raises(AguiError, match="chunk 2 arrived before chunk 0"):
        r.feed({"type": "stream_chunk", "channel": ROOM, "stream_id": "s_1", "i": 2, "d": "x"})
