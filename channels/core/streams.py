"""Token streams: a single writer appends indexed chunks; readers get snapshots and chunks.

Rules:
- Chunk indexes start at 0 and grow by one; an index already accepted is a duplicate (ignored,
  so a writer may resend after a resume); an index beyond `next` is refused.
- Text streams take string chunks and their content is the concatenation; json streams take any
  JSON value and their content is the list of chunks.
- A stream's size is the bytes its content takes on the wire in the larger format (JSON escapes
  count: U+0001 is six bytes). The append that would pass `max_bytes` is refused.
- A snapshot covers chunks 0 .. next-1.
- A stream may carry agent-room fields (`room`: `to`, and on a run's lanes `run_id`, `lane`,
  `tool_call`): every frame of the stream repeats them, and so does its final message.
- Content is kept compacted (chunks joined into one piece as they pile up), so a long stream
  holds a few large blocks rather than thousands of small strings, and gives its memory back
  when it ends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames

COMPACT_AFTER = 64  # pieces kept before they are joined into one


@dataclass(slots=True)
class Stream:
    """One open stream and its content so far."""

    stream_id: str
    channel: str
    writer: str  # session id of the only session allowed to append
    client_id: str
    kind: str
    name: str
    message_id: str
    reply_to: int | None
    meta: Any
    format: str
    ts: int
    max_bytes: int
    display_name: str | None = None
    fence: int = 1  # the Store's fencing token this node holds the stream under
    secret: str = ""  # hash of the writer's resume key
    thread: int | None = None  # the thread its final message replies in
    room: dict[str, Any] | None = None  # to, run_id, lane, tool_call: on every frame and the final message
    token: int | None = None  # the claim token the stream answers `reply_to` with
    next: int = 0  # chunks accepted so far
    size: int = 0  # wire bytes of the content, without its quotes or brackets
    _pieces: list[str] = field(default_factory=list)  # text, or JSON texts of chunks

    def append(self, index: int, chunk: Any, room: int | None = None) -> bool:
        """Accept chunk `index`; False for a duplicate; raises ProtocolError when refused.
        `room` bounds the bytes this chunk may add beyond the stream's own bound (the writer's
        budget across its open streams)."""
        if index < self.next:
            return False
        if index > self.next:
            raise ProtocolError(Code.CHUNK_OUT_OF_ORDER, "chunk index skips ahead", next=self.next)
        if self.format == "text":
            if not isinstance(chunk, str):
                raise ProtocolError(Code.INVALID_VALUE, "text streams take string chunks")
            piece = chunk
            added = encoded_size(chunk, encode_value(chunk), self.max_bytes) - 2  # without its quotes
        else:
            piece = encode_value(chunk)
            added = encoded_size(chunk, piece, self.max_bytes) + (1 if self.next else 0)  # the comma
        if self.size + added > self.max_bytes:
            raise ProtocolError(Code.STREAM_TOO_LARGE, f"stream exceeds {self.max_bytes} bytes")
        if room is not None and added > room:
            raise ProtocolError(Code.STREAM_TOO_LARGE, "the open streams of this client_id are too large")
        self._pieces.append(piece)
        if len(self._pieces) > COMPACT_AFTER:
            self._pieces = [("" if self.format == "text" else ",").join(self._pieces)]
        self.next += 1
        self.size += added
        return True

    def load(self, content: Any, chunks: int) -> None:
        """Start from content saved elsewhere (a takeover): `chunks` chunks are already in it."""
        if self.format == "text":
            text = content if isinstance(content, str) else ""
            self._pieces = [text] if text else []
            self.size = encoded_size(text, encode_value(text), 1 << 62) - 2
        else:
            items = content if isinstance(content, list) else []
            self._pieces = [encode_value(item) for item in items]
            self.size = sum(encoded_size(i, p, 1 << 62) for i, p in zip(items, self._pieces, strict=True))
            self.size += max(0, len(items) - 1)
        self.next = chunks

    def content(self) -> Any:
        """The content so far: the text, or the list of chunks."""
        if self.format == "text":
            return "".join(self._pieces)
        return json.loads("[" + ",".join(self._pieces) + "]")

    def header(self) -> dict[str, Any]:
        """The fields every stream frame repeats."""
        frame: dict[str, Any] = {
            "channel": self.channel,
            "stream_id": self.stream_id,
            "client_id": self.client_id,
            "kind": self.kind,
            "name": self.name,
            "format": self.format,
            "ts": self.ts,
        }
        if self.display_name is not None:
            frame["display_name"] = self.display_name
        if self.reply_to is not None:
            frame["reply_to"] = self.reply_to
        if self.thread is not None:
            frame["thread"] = self.thread
        if self.meta is not None:
            frame["meta"] = self.meta
        if self.room:
            frame.update(self.room)
        return frame

    @property
    def run_id(self) -> str | None:
        """The run this stream is a lane of, if any."""
        return None if self.room is None else self.room.get("run_id")

    def open_frame(self) -> dict[str, Any]:
        """The `stream_open` frame."""
        return frames.stream_open(self.header())

    def snapshot_frame(self) -> dict[str, Any]:
        """The `stream_snapshot` frame: content so far and the next chunk index."""
        return frames.stream_snapshot(self.header(), self.content(), self.next)


def snapshot_of(header: dict[str, Any], chunks: list[Any]) -> dict[str, Any]:
    """The `stream_snapshot` frame of a stream known only by its header and chunks (another node's)."""
    content: Any = (
        "".join(c for c in chunks if isinstance(c, str)) if header.get("format") == "text" else chunks
    )
    return frames.stream_snapshot(header, content, len(chunks))
