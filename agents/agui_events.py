"""agentchat server frames in, AG-UI events out (`FramesToAgui`), sans I/O; the table is in `agentchat.agui`.

Rules:

* A run starts once (its start record, or its first `run_status`/`run_snapshot`) and ends once, at
  its end record: it has the result, and comes after the lanes' final messages (durable records may
  trail the live frames a little: a terminal `run_status` can come first, and ends nothing).
* A lane is a run's stream with `lane` text, reasoning or tool_call: `stream_open` (or a
  `stream_snapshot` mid-run) starts it, chunks in `i` order extend it, its final message ends it. A
  lane met only as its final message (history replay) gives its whole content at once.
* Lanes written without AG-UI meta use their `stream_id` as messageId.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentchat.agui_frames import AguiError, Event

TERMINAL = frozenset({"completed", "failed", "cancelled", "aborted"})
LANES = ("text", "reasoning", "tool_call")
REMEMBERED = 4096  # ended runs and lanes a reader remembers; past it the oldest are forgotten


@dataclass(slots=True)
class _RunView:
    started: bool = False
    resync: bool = False  # attached again: the next run_snapshot's state replaces what the reader has


@dataclass(slots=True)
class _LaneView:
    run: str
    kind: str
    ident: str  # messageId, or toolCallId on the tool_call lane
    meta: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    content: str = ""
    next: int = 0


class FramesToAgui:
    """Feed the server frames a reader of a channel receives (`feed`), get AG-UI events back: live
    runs, a reader joining mid-run (run and stream snapshots), and runs replayed from history.
    Frames of other kinds, and streams that are not a run's lanes, give no events."""

    def __init__(self) -> None:
        self._runs: dict[str, _RunView] = {}
        self._lanes: dict[str, _LaneView] = {}  # open lanes by stream_id
        self._ended: dict[str, None] = {}  # ended run and stream ids, oldest first (bounded)
        self._waiting: dict[str, list[Event]] = {}  # events of lanes whose run has not started yet

    def feed(self, frame: Mapping[str, Any]) -> list[Event]:
        """The AG-UI events one server frame stands for (often none). AguiError on a broken frame."""
        kind = frame.get("type")
        try:
            if kind in ("run_status", "run_snapshot"):
                return self._status(frame)
            if kind == "attached":
                for run in self._runs.values():
                    run.resync = True
                return []
            if kind == "run_state":
                return self._state(frame)
            if kind in ("stream_open", "stream_snapshot") and frame.get("lane") in LANES:
                return self._held(frame["run_id"], self._opened(frame))
            if kind == "stream_chunk" and frame.get("stream_id") in self._lanes:
                return self._held(self._lanes[frame["stream_id"]].run, self._chunk(frame))
            if kind == "message" and frame.get("serial") is not None and frame.get("run_id") is not None:
                if frame.get("name") == "agentchat.run":
                    return self._run_record(frame)
                return self._held(frame["run_id"], self._lane_record(frame))
        except (KeyError, TypeError, AttributeError) as exc:
            raise AguiError(f"a {kind} frame without the fields of its kind: {dict(frame)!r:.200}") from exc
        return []

    def _forget(self, ident: str) -> None:
        self._ended[ident] = None
        if len(self._ended) > REMEMBERED:
            del self._ended[next(iter(self._ended))]  # a very late frame of it is then taken as new

    def _held(self, run_id: str, events: list[Event]) -> list[Event]:
        # A lane can come before its run (a run this node learns from the Store reaches a reader
        # just after the lanes' snapshots): its events wait for RUN_STARTED, as AG-UI needs.
        run = self._runs.get(run_id)
        if not events or (run is not None and run.started) or run_id in self._ended:
            return events
        self._waiting.setdefault(run_id, []).extend(events)
        return []

    def _start(
        self, frame: Mapping[str, Any], run_id: str, parent: str | None, state: list[Event] | None = None
    ) -> list[Event]:
        run = self._runs.setdefault(run_id, _RunView())
        if run.started:
            return state or []
        run.started = True
        event: Event = {"type": "RUN_STARTED", "threadId": frame["channel"], "runId": run_id}
        if parent is not None:
            event["parentRunId"] = parent
        return [event, *(state or []), *self._waiting.pop(run_id, [])]

    def _status(self, frame: Mapping[str, Any]) -> list[Event]:
        run_id = frame["run_id"]
        if run_id in self._ended or (frame["status"] in TERMINAL and run_id not in self._runs):
            return []  # the end record ends a run; one this reader never saw is not started for it
        run = self._runs.setdefault(run_id, _RunView())
        state: list[Event] = []
        # A snapshot's state is news to a reader that had not seen the run, or that attached again;
        # otherwise the reader has it from the live frames (the run was learned after they came).
        if frame["type"] == "run_snapshot" and "state" in frame and (not run.started or run.resync):
            state.append({"type": "STATE_SNAPSHOT", "snapshot": frame["state"]})
            if frame.get("deltas"):
                state.append({"type": "STATE_DELTA", "delta": list(frame["deltas"])})
        run.resync = False
        return self._start(frame, run_id, frame.get("parent_run_id"), state)

    def _state(self, frame: Mapping[str, Any]) -> list[Event]:
        run = self._runs.get(frame["run_id"])
        if run is None or not run.started or frame["run_id"] in self._ended:
            return []
        if "delta" in frame:
            return [{"type": "STATE_DELTA", "delta": list(frame["delta"])}]
        return [{"type": "STATE_SNAPSHOT", "snapshot": frame["snapshot"]}]

    def _finish(
        self, frame: Mapping[str, Any], run_id: str, status: str, info: Mapping[str, Any]
    ) -> list[Event]:
        # `info` is the end record's data or the run_status frame: error, cancelled_by, result.
        events = self._start(frame, run_id, None)
        self._runs.pop(run_id, None)
        self._forget(run_id)
        if status == "completed":
            done: Event = {"type": "RUN_FINISHED", "threadId": frame["channel"], "runId": run_id}
            if info.get("result") is not None:
                done["result"] = info["result"]
            return [*events, done]
        error = dict(info.get("error") or {})
        if status == "aborted":
            error = {"message": "the run's writer was lost", "code": "writer_lost", **error}
        elif status == "cancelled":
            by = info.get("cancelled_by")
            error = {"message": f"cancelled by {by}" if by else "cancelled", "code": "cancelled"}
        failed: Event = {"type": "RUN_ERROR", "message": error.get("message", status), "runId": run_id}
        if error.get("code") is not None:
            failed["code"] = error["code"]
        return [*events, failed]

    def _opened(self, frame: Mapping[str, Any]) -> list[Event]:
        stream_id = frame["stream_id"]
        if stream_id in self._ended:
            return []
        lane = self._lanes.get(stream_id)
        events: list[Event] = []
        if lane is None:
            lane = self._lanes[stream_id] = self._lane(frame)
            events = self._lane_start(lane)
        if frame["type"] == "stream_snapshot":
            events += self._grow(lane, _as_text(frame["content"]))
            lane.next = max(lane.next, frame["next"])
        return events

    def _lane(self, frame: Mapping[str, Any]) -> _LaneView:
        meta = (frame.get("meta") or {}).get("agui")
        tool_call = frame.get("tool_call") or {}
        lane = frame["lane"]
        ident = tool_call["id"] if lane == "tool_call" else (meta or {}).get("messageId", frame["stream_id"])
        if meta is None and lane == "reasoning":
            meta = {"reasoningId": ident}  # a lane written without AG-UI still gets its reasoning block
        return _LaneView(frame["run_id"], lane, ident, dict(meta or {}), tool_call.get("name"))

    def _lane_start(self, lane: _LaneView) -> list[Event]:
        if lane.kind == "tool_call":
            event: Event = {"type": "TOOL_CALL_START", "toolCallId": lane.ident, "toolCallName": lane.name}
            if lane.meta.get("parentMessageId") is not None:
                event["parentMessageId"] = lane.meta["parentMessageId"]
            return [event]
        if lane.kind == "text":
            return [
                {
                    "type": "TEXT_MESSAGE_START",
                    "messageId": lane.ident,
                    "role": lane.meta.get("role", "assistant"),
                }
            ]
        events: list[Event] = []
        if lane.meta.get("reasoningId") is not None:
            events.append({"type": "REASONING_START", "messageId": lane.meta["reasoningId"]})
        role = lane.meta.get("role", "reasoning")
        return [*events, {"type": "REASONING_MESSAGE_START", "messageId": lane.ident, "role": role}]

    def _grow(self, lane: _LaneView, text: str) -> list[Event]:
        # Only text that extends what the reader has can be sent: AG-UI has no way to take text back.
        if len(text) <= len(lane.content) or not text.startswith(lane.content):
            return []
        return self._content(lane, text[len(lane.content) :])

    def _content(self, lane: _LaneView, delta: str) -> list[Event]:
        lane.content += delta
        if lane.kind == "tool_call":
            return [{"type": "TOOL_CALL_ARGS", "toolCallId": lane.ident, "delta": delta}]
        kind = "TEXT_MESSAGE_CONTENT" if lane.kind == "text" else "REASONING_MESSAGE_CONTENT"
        return [{"type": kind, "messageId": lane.ident, "delta": delta}]

    def _chunk(self, frame: Mapping[str, Any]) -> list[Event]:
        lane = self._lanes[frame["stream_id"]]
        index = frame["i"]
        if index < lane.next:
            return []  # already in a snapshot
        if index > lane.next:
            raise AguiError(f"stream {frame['stream_id']}: chunk {index} arrived before chunk {lane.next}")
        lane.next += 1
        return self._content(lane, _as_text(frame["d"]))

    def _run_record(self, frame: Mapping[str, Any]) -> list[Event]:
        run_id, data = frame["run_id"], frame["data"]
        if run_id in self._ended:
            return []
        if data["status"] in TERMINAL:
            return self._finish(frame, run_id, data["status"], data)
        return self._start(frame, run_id, data.get("parent_run_id"))

    def _lane_record(self, frame: Mapping[str, Any]) -> list[Event]:
        data = frame.get("data")
        if frame.get("lane") == "tool_result":
            content = data if isinstance(data, str) else json.dumps(data)
            call = frame["tool_call"]["id"]
            return [
                {
                    "type": "TOOL_CALL_RESULT",
                    "messageId": frame["id"],
                    "toolCallId": call,
                    "content": content,
                    "role": "tool",
                }
            ]
        stream_id = frame.get("stream_id")
        if frame.get("lane") not in LANES or stream_id is None or stream_id in self._ended:
            return []
        lane = self._lanes.pop(stream_id, None)
        events: list[Event] = []
        if lane is None:  # replayed from history, or it ended before we saw it open
            lane = self._lane(frame)
            events = self._lane_start(lane)
        events += self._grow(lane, _as_text(data))
        self._forget(stream_id)
        if lane.kind == "tool_call":
            return [*events, {"type": "TOOL_CALL_END", "toolCallId": lane.ident}]
        if lane.kind == "text":
            return [*events, {"type": "TEXT_MESSAGE_END", "messageId": lane.ident}]
        events.append({"type": "REASONING_MESSAGE_END", "messageId": lane.ident})
        if lane.meta.get("reasoningId") is not None:
            events.append({"type": "REASONING_END", "messageId": lane.meta["reasoningId"]})
        return events


def _as_text(value: Any) -> str:
    # Lanes are text streams; a lane opened with format json is rendered as the JSON of its chunks.
    if isinstance(value, str):
        return value
    return "" if value is None else json.dumps(value)
