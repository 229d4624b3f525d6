"""Translate AG-UI events to agentchat run frames and back, sans I/O (docs/agui.md has the prose).

Rules:

* The channel is AG-UI's `threadId`; the server's `run_id` is its `runId`. Writing, the server
  assigns run and stream ids, so `AguiToFrames` holds each frame that needs one until the reply
  (`ack`) of the `run_start` or `stream_open` that names it comes back through `reply`.
* A sub-run is a `RUN_STARTED` with a `parentRunId` while that run is active; events between a
  `RUN_STARTED` and its end belong to the innermost active run (lanes to the run they started in).
* `messageId`s ride in the lane's `meta.agui` (and a tool result's message `id`), `toolCallId`s in
  `tool_call`: they come back as sent. Lanes without that meta use their `stream_id` as messageId.
* Reading, each run starts once (its start record or first `run_status`/`run_snapshot`) and ends
  once, at its end record (it carries the result and follows the lanes' final messages).

| AG-UI event | agentchat frames |
|---|---|
| `RUN_STARTED` (`parentRunId`) | `run_start` (`parent`) / start record, `run_status`, `run_snapshot` |
| `RUN_FINISHED` (`result`) | `run_end` `completed` (`result`) / `completed` |
| `RUN_ERROR` (`message`, `code`) | `run_end` `failed` (`error`) / `failed` |
| `RUN_ERROR` code `writer_lost` (or the record's `error`) | / `aborted` |
| `RUN_ERROR` code `cancelled` | / `cancelled` |
| `TEXT_MESSAGE_START` / `CONTENT` / `END` | lane `text`: `stream_open` / `stream_append` / `stream_end` |
| `REASONING_START` / `END` | the `reasoningId` in its lanes' `meta.agui` |
| `REASONING_MESSAGE_START` / `CONTENT` / `END` | lane `reasoning`, likewise |
| `TOOL_CALL_START` / `ARGS` / `END` | lane `tool_call` with `tool_call: {id, name}`, likewise |
| `TOOL_CALL_RESULT` (`toolCallId`, `content`) | `publish` lane `tool_result`, `tool_call: {id}`, `data` |
| `STATE_SNAPSHOT` / `STATE_DELTA` | `run_state` `snapshot` / `delta`; `run_snapshot` `state` / `deltas` |
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable
from typing import Any, Protocol

from agentchat.agui_events import FramesToAgui
from agentchat.agui_frames import AguiError, AguiToFrames, Event, Frame

__all__ = [
    "A2A_STATES",
    "AguiError",
    "AguiToFrames",
    "Event",
    "Frame",
    "FramesToAgui",
    "Requester",
    "a2a_state",
    "send_agui",
]

A2A_STATES = {
    "running": "working",
    "input_required": "input-required",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "canceled",
    "aborted": "failed",
}


def a2a_state(run_status: str) -> str:
    """The A2A task state of a run status (`running` is `working`, `aborted` is `failed`, ...)."""
    try:
        return A2A_STATES[run_status]
    except KeyError:
        raise AguiError(f"no A2A state for run status {run_status!r}") from None


class Requester(Protocol):
    """What `send_agui` sends through: a connection whose `request(frame)` returns the reply."""

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send `frame` with a fresh ref; its reply."""
        ...


async def send_agui(
    link: Requester, target: str | AguiToFrames, events: Iterable[Event] | AsyncIterable[Event]
) -> AguiToFrames:
    """Put AG-UI `events` into the channel `target` (or through that translator): every frame is
    requested and its reply awaited, so a refusal raises at the event that caused it. Returns the
    translator (its `active_runs` tell what is still open)."""
    translator = AguiToFrames(target) if isinstance(target, str) else target

    async def flush(event: Event) -> None:
        translator.feed(event)
        while (frame := translator.next_frame()) is not None:
            translator.reply(await link.request(frame))

    if isinstance(events, AsyncIterable):
        async for event in events:
            await flush(event)
    else:
        for event in events:
            await flush(event)
    return translator
