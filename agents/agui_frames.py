"""AG-UI events in, agentchat client frames out (`AguiToFrames`), sans I/O; the table is in `agentchat.agui`.

Rules:

* The server assigns run and stream ids, so a frame that needs one waits in the queue until the
  reply (`ack`) of the `run_start` or `stream_open` that names it comes back through `reply`.
* A sub-run is a `RUN_STARTED` with a `parentRunId` while that run is active; other events belong
  to the innermost active run (a lane's events to the run it started in).
* `messageId`s ride in the lane's `meta.agui` (a tool result's in its message `id`), `toolCallId`s in
  `tool_call`: readers get them back as sent. The channel stands for every `threadId`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentchat.errors import AgentChatError

Event = dict[str, Any]
Frame = dict[str, Any]

# Known AG-UI events with nothing to map: they are accepted and send nothing.
IGNORED = frozenset(
    {
        "STEP_STARTED",
        "STEP_FINISHED",
        "MESSAGES_SNAPSHOT",
        "ACTIVITY_SNAPSHOT",
        "ACTIVITY_DELTA",
        "RAW",
        "CUSTOM",
        "REASONING_ENCRYPTED_VALUE",
    }
)
LANE_KINDS = {"TEXT_MESSAGE": "text", "REASONING_MESSAGE": "reasoning", "TOOL_CALL": "tool_call"}
MAX_ID = 64  # the server's bound on tool call ids and names


class AguiError(AgentChatError):
    """An AG-UI event (or a server reply to its frames) that cannot be translated; says why."""


def _text(event: Mapping[str, Any], name: str, *, limit: int = 128, required: bool = True) -> str | None:
    value = event.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise AguiError(f"{event.get('type')} needs {name} as a non-empty string, got {value!r:.80}")
    if len(value) > limit:
        raise AguiError(f"{event.get('type')}: {name} is longer than {limit} characters")
    return value


@dataclass(frozen=True, slots=True)
class _Ref:
    """A run or stream id the server has not assigned yet: `kind` "run" (by AG-UI runId) or "lane"."""

    kind: str
    key: str | int


@dataclass(slots=True)
class _Lane:
    number: int
    kind: str  # text, reasoning or tool_call
    run: str  # its AG-UI runId
    chunks: int = 0


class AguiToFrames:
    """Feed AG-UI events (camelCase dicts) with `feed`; send each `next_frame()`; hand the server's
    reply to `reply` (it must, before more frames come, when `needs_reply`). AguiError on bad input."""

    def __init__(
        self,
        channel: str,
        *,
        reply_to: int | None = None,
        to: list[str] | None = None,
        claim: int | None = None,
    ) -> None:
        self.channel = channel
        self._answer = {
            k: v for k, v in (("reply_to", reply_to), ("to", to), ("claim", claim)) if v is not None
        }
        self._bound: dict[tuple[str, str | int], str] = {}  # (kind, key) -> server id
        self._started: set[str] = set()  # every AG-UI runId seen starting
        self._active: list[str] = []  # AG-UI runIds of active runs, outermost first
        self._lanes: dict[str, _Lane] = {}  # open lanes by "m:<messageId>" or "t:<toolCallId>"
        self._calls: dict[str, str] = {}  # toolCallId -> AG-UI runId
        self._reasoning: str | None = None  # the open REASONING_START's messageId
        self._numbers = 0
        self._queue: deque[tuple[Frame, tuple[str, str | int] | None]] = deque()
        self._waiting: tuple[str, str | int] | None = None

    @property
    def needs_reply(self) -> bool:
        """True while the last frame given out waits for its reply (it assigns an id later frames use)."""
        return self._waiting is not None

    @property
    def active_runs(self) -> list[str]:
        """The AG-UI runIds started and not yet ended, outermost first."""
        return list(self._active)

    def feed(self, event: Mapping[str, Any]) -> None:
        """Take one AG-UI event; its frames queue up for `next_frame`. AguiError if it cannot map."""
        if not isinstance(event, Mapping):
            raise AguiError(f"an AG-UI event is an object, got {event!r:.80}")
        kind = event.get("type")
        if not isinstance(kind, str):
            raise AguiError(f"an AG-UI event needs a type, got {event!r:.120}")
        if kind in IGNORED:
            return
        family, _, step = kind.rpartition("_")
        if family in LANE_KINDS and step in ("START", "CONTENT", "ARGS", "END"):
            self._lane_event(LANE_KINDS[family], step, event)
            return
        handler = {
            "RUN_STARTED": self._run_started,
            "RUN_FINISHED": self._run_finished,
            "RUN_ERROR": self._run_error,
            "REASONING_START": self._reasoning_start,
            "REASONING_END": self._reasoning_end,
            "TOOL_CALL_RESULT": self._tool_result,
            "STATE_SNAPSHOT": self._state,
            "STATE_DELTA": self._state,
        }.get(kind)
        if handler is None:
            if kind.endswith("_CHUNK") or kind.startswith("THINKING_"):
                raise AguiError(f"{kind} is not mapped: send the START/CONTENT/END events instead")
            raise AguiError(f"unknown AG-UI event type {kind!r}")
        handler(event)

    def next_frame(self) -> Frame | None:
        """The next frame to send, or None: nothing queued, or waiting for `reply`."""
        if self._waiting is not None or not self._queue:
            return None
        template, binds = self._queue.popleft()
        self._waiting = binds
        return {key: self._resolve(value) for key, value in template.items()}

    def reply(self, reply: Mapping[str, Any]) -> None:
        """The server's reply to the last frame sent: binds the run or stream id it assigned.
        AguiError if the server refused the frame."""
        if reply.get("type") in ("nack", "error"):
            raise AguiError(f"the server refused a frame: {reply.get('code')} {reply.get('message')}")
        if self._waiting is None:
            return
        kind = self._waiting[0]
        assigned = reply.get("run_id" if kind == "run" else "stream_id")
        if not isinstance(assigned, str):
            raise AguiError(
                f"the reply names no {'run' if kind == 'run' else 'stream'} id: {dict(reply)!r:.200}"
            )
        self._bound[self._waiting] = assigned
        self._waiting = None

    def _resolve(self, value: Any) -> Any:
        if not isinstance(value, _Ref):
            return value
        try:
            return self._bound[(value.kind, value.key)]
        except KeyError:
            # The queue keeps frames behind the request that assigns their id: reaching here is a bug.
            raise AguiError(f"internal: {value.kind} {value.key!r} has no id yet") from None

    def _send(self, frame: Frame, binds: tuple[str, str | int] | None = None) -> None:
        self._queue.append((frame, binds))

    def _current(self, kind: str) -> str:
        if not self._active:
            raise AguiError(f"{kind} outside a run: send RUN_STARTED first")
        return self._active[-1]

    def _run_started(self, event: Mapping[str, Any]) -> None:
        run = str(_text(event, "runId"))
        if run in self._started:
            raise AguiError(f"run {run!r} started twice")
        parent = _text(event, "parentRunId", required=False)
        frame: Frame = {"type": "run_start", "channel": self.channel, "id": run}
        if parent is not None:
            if parent in self._started and parent not in self._active:
                raise AguiError(f"run {run!r}: its parent {parent!r} has ended")
            frame["parent"] = _Ref("run", parent) if parent in self._active else parent
        elif self._active:
            raise AguiError(
                f"run {run!r} starts while {self._active[-1]!r} runs: a sub-run needs parentRunId"
            )
        else:
            frame.update(self._answer)
        self._started.add(run)
        self._active.append(run)
        self._send(frame, ("run", run))

    def _run_finished(self, event: Mapping[str, Any]) -> None:
        run = str(_text(event, "runId"))
        if event.get("outcome") == "interrupt":
            raise AguiError("RUN_FINISHED with an interrupt outcome is not mapped")
        if not self._active or self._active[-1] != run:
            raise AguiError(f"RUN_FINISHED for {run!r}, but the innermost active run is {self._active[-1:]}")
        frame: Frame = {"type": "run_end", "run_id": _Ref("run", run), "status": "completed"}
        if event.get("result") is not None:
            frame["result"] = event["result"]
        self._end(run, frame)

    def _run_error(self, event: Mapping[str, Any]) -> None:
        message = str(_text(event, "message", limit=1 << 20))
        code = _text(event, "code", limit=1 << 20, required=False)
        error: dict[str, str] = {"message": message[:1000]}
        if code is not None:
            error["code"] = code[:MAX_ID]
        run = _text(event, "runId", required=False)
        if run is not None and run not in self._active:
            raise AguiError(f"RUN_ERROR for {run!r}, which is not an active run")
        if not self._active:
            raise AguiError("RUN_ERROR outside a run")
        # The error ends the named run (all of them without runId), sub-runs first.
        last = self._active.index(run) if run is not None else 0
        for ending in reversed(self._active[last:]):
            self._end(
                ending, {"type": "run_end", "run_id": _Ref("run", ending), "status": "failed", "error": error}
            )

    def _end(self, run: str, frame: Frame) -> None:
        self._active.remove(run)
        for key in [key for key, lane in self._lanes.items() if lane.run == run]:
            del self._lanes[key]  # run_end ends its open lanes (complete, or failed with the run)
        self._send(frame)

    def _reasoning_start(self, event: Mapping[str, Any]) -> None:
        self._current("REASONING_START")
        self._reasoning = _text(event, "messageId")

    def _reasoning_end(self, event: Mapping[str, Any]) -> None:
        _text(event, "messageId")
        self._reasoning = None

    def _lane_event(self, kind: str, step: str, event: Mapping[str, Any]) -> None:
        is_call = kind == "tool_call"
        ident = str(_text(event, "toolCallId" if is_call else "messageId", limit=MAX_ID if is_call else 128))
        key = ("t:" if is_call else "m:") + ident
        if step == "START":
            self._open(kind, key, ident, event)
            return
        lane = self._lanes.get(key)
        if lane is None or lane.kind != kind or step == ("CONTENT" if is_call else "ARGS"):
            raise AguiError(f"{event['type']} for {ident!r}, which is not an open {kind} lane")
        if step == "END":
            del self._lanes[key]
            self._send({"type": "stream_end", "stream_id": _Ref("lane", lane.number), "chunks": lane.chunks})
            return
        delta = event.get("delta")
        if not isinstance(delta, str):
            raise AguiError(f"{event['type']} needs delta as a string, got {delta!r:.80}")
        self._send(
            {"type": "stream_append", "stream_id": _Ref("lane", lane.number), "i": lane.chunks, "d": delta}
        )
        lane.chunks += 1

    def _open(self, kind: str, key: str, ident: str, event: Mapping[str, Any]) -> None:
        run = self._current(str(event["type"]))
        if key in self._lanes:
            raise AguiError(f"{event['type']}: {ident!r} is open already")
        frame: Frame = {
            "type": "stream_open",
            "channel": self.channel,
            "run_id": _Ref("run", run),
            "lane": kind,
        }
        meta: dict[str, Any] = {}
        if kind == "tool_call":
            frame["tool_call"] = {"id": ident, "name": _text(event, "toolCallName", limit=MAX_ID)}
            parent = _text(event, "parentMessageId", required=False)
            if parent is not None:
                meta["parentMessageId"] = parent
            self._calls[ident] = run
        else:
            role = _text(event, "role", limit=MAX_ID, required=False)
            meta = {"messageId": ident, "role": role or ("assistant" if kind == "text" else "reasoning")}
            if kind == "reasoning" and self._reasoning is not None:
                meta["reasoningId"] = self._reasoning
        if meta:
            frame["meta"] = {"agui": meta}
        self._numbers += 1
        self._lanes[key] = _Lane(self._numbers, kind, run)
        self._send(frame, ("lane", self._numbers))

    def _tool_result(self, event: Mapping[str, Any]) -> None:
        call = str(_text(event, "toolCallId", limit=MAX_ID))
        if "content" not in event:
            raise AguiError("TOOL_CALL_RESULT needs content")
        run = self._calls.get(call)
        run = run if run in self._active else self._current("TOOL_CALL_RESULT")
        frame: Frame = {
            "type": "publish",
            "channel": self.channel,
            "data": event["content"],
            "run_id": _Ref("run", str(run)),
            "lane": "tool_result",
            "tool_call": {"id": call},
        }
        message = _text(event, "messageId", required=False)
        if message is not None:
            frame["id"] = message
        self._send(frame)

    def _state(self, event: Mapping[str, Any]) -> None:
        run = _Ref("run", self._current(str(event["type"])))
        if event["type"] == "STATE_SNAPSHOT":
            if event.get("snapshot") is None:
                raise AguiError("STATE_SNAPSHOT needs a snapshot")
            self._send({"type": "run_state", "run_id": run, "snapshot": event["snapshot"]})
            return
        delta = event.get("delta")
        if not isinstance(delta, list) or not delta or not all(isinstance(op, dict) for op in delta):
            raise AguiError(f"STATE_DELTA needs delta as a list of JSON Patch operations, got {delta!r:.80}")
        self._send({"type": "run_state", "run_id": run, "delta": delta})
