"""A reader's assembly of one live token stream: snapshot, chunks in index order, then the final message.

Rules (docs/protocol.md, "Stream frames"):
- `stream_open` starts an empty stream; `stream_snapshot` carries the content of chunks 0 … next-1
  and replaces what we have when it is ahead of it.
- A chunk below `next` is one we have (a resend, or covered by a snapshot): ignored. A chunk above
  `next` waits (bounded) until the ones before it arrive; nothing is reordered or doubled.
- The durable message carrying the stream's id is authoritative: its data and status replace the
  preview, and the stream is over.
- A stream that ends without its message reaching us (continuity lost) is `lost`: reload history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentchat.models import Message

MAX_EARLY_CHUNKS = 1000  # overflow policy: chunks beyond this many ahead of a hole are dropped


@dataclass(frozen=True, slots=True)
class StreamUpdate:
    """What a reader shows for one stream now.

    `content` is the text so far (a list of chunks for `format="json"`); `thread` the thread root it
    answers in, if any; `display_name` the writer's, if its token has one. `status` is `open`, then
    `complete`, `failed` (with `error`), `cancelled` (with `cancelled_by`, None when the writer
    cancelled) or `aborted` once `message` (the final durable message) arrived, or `lost` when the
    stream vanished without it. A run's lanes carry `run_id`, `lane` and `tool_call`.
    """

    stream_id: str
    channel: str
    client_id: str
    kind: str
    name: str
    reply_to: int | None
    meta: Any
    format: str
    content: Any
    next: int
    status: str
    message: Message | None = None
    thread: int | None = None
    display_name: str | None = None
    run_id: str | None = None
    lane: str | None = None
    tool_call: Mapping[str, Any] | None = None

    @property
    def error(self) -> Mapping[str, Any] | None:
        """Why a `failed` (or `aborted`, when a claim or run was lost) stream ended: `{"message", "code"}`."""
        return self.message.error if self.message is not None else None

    @property
    def cancelled_by(self) -> str | None:
        """Who cancelled a `cancelled` stream (None when its writer did)."""
        return self.message.cancelled_by if self.message is not None else None

    @property
    def text(self) -> str:
        """The content as text (JSON streams: their chunks joined as text where they are strings)."""
        if isinstance(self.content, str):
            return self.content
        return "".join(c if isinstance(c, str) else repr(c) for c in self.content)

    @property
    def done(self) -> bool:
        """True once the stream is over (final message arrived, or lost)."""
        return self.status != "open"


class StreamAssembly:
    """The content of one stream being read, built from its frames; no I/O."""

    def __init__(self, frame: dict[str, Any]) -> None:
        self.stream_id = str(frame.get("stream_id", ""))
        self.channel = str(frame.get("channel", ""))
        self.client_id = str(frame.get("client_id", ""))
        self.kind = str(frame.get("kind", "agent"))
        self.name = str(frame.get("name", "message"))
        reply_to = frame.get("reply_to")
        self.reply_to = reply_to if isinstance(reply_to, int) else None
        self.meta = frame.get("meta")
        thread = frame.get("thread")
        self.thread = thread if isinstance(thread, int) else None
        display_name = frame.get("display_name")
        self.display_name = display_name if isinstance(display_name, str) else None
        run_id, lane, tool_call = frame.get("run_id"), frame.get("lane"), frame.get("tool_call")
        self.run_id = run_id if isinstance(run_id, str) else None
        self.lane = lane if isinstance(lane, str) else None
        self.tool_call = dict(tool_call) if isinstance(tool_call, dict) else None
        self.format = "json" if frame.get("format") == "json" else "text"
        self.content: Any = [] if self.format == "json" else ""
        self.next = 0
        self.status = "open"
        self.message: Message | None = None
        # Set by a new attach; a snapshot clears it. Still set when presence follows: the stream is gone.
        self.stale = False
        self._early: dict[int, Any] = {}

    def snapshot(self, frame: dict[str, Any]) -> bool:
        """Apply a `stream_snapshot`; True when the content changed."""
        self.stale = False
        after = frame.get("next")
        if not isinstance(after, int) or after <= self.next or self.status != "open":
            return False
        content = frame.get("content")
        if self.format == "json":
            self.content = list(content) if isinstance(content, list) else []
        else:
            self.content = content if isinstance(content, str) else ""
        self.next = after
        self._drain()
        return True

    def chunk(self, index: int, piece: Any) -> bool:
        """Apply chunk `index`; True when the content grew."""
        if index < self.next or self.status != "open":
            return False
        if index > self.next:
            if len(self._early) < MAX_EARLY_CHUNKS:
                self._early[index] = piece
            return False
        self._append(piece)
        self._drain()
        return True

    def finish(self, message: Message) -> None:
        """The final durable message arrived: it replaces the preview."""
        self.status = message.status or "complete"
        self.content = message.data
        self.message = message
        self._early.clear()

    def lose(self) -> None:
        """The stream vanished without its final message reaching this reader."""
        self.status = "lost"
        self._early.clear()

    def update(self) -> StreamUpdate:
        """An immutable view of the stream as it is now."""
        content = list(self.content) if isinstance(self.content, list) else self.content
        return StreamUpdate(
            stream_id=self.stream_id,
            channel=self.channel,
            client_id=self.client_id,
            kind=self.kind,
            name=self.name,
            reply_to=self.reply_to,
            meta=self.meta,
            format=self.format,
            content=content,
            next=self.next,
            status=self.status,
            message=self.message,
            thread=self.thread,
            display_name=self.display_name,
            run_id=self.run_id,
            lane=self.lane,
            tool_call=self.tool_call,
        )

    def _append(self, piece: Any) -> None:
        if self.format == "json":
            self.content.append(piece)
        else:
            self.content += piece if isinstance(piece, str) else str(piece)
        self.next += 1

    def _drain(self) -> None:
        for index in [i for i in self._early if i < self.next]:
            del self._early[index]
        while self.next in self._early:
            self._append(self._early.pop(self.next))
