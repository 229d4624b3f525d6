"""Token streams: a single writer appends indexed chunks; readers get snapshots and chunks.

Rules:
- Chunk indexes start at 0 and grow by one; an index already accepted is a duplicate (ignored,
  so a writer may resend after a resume); an index beyond `next` is refused.
- Text streams take string chunks and their content is the concatenation; json streams take any
  JSON value and their content is the list of chunks.
- The byte size of all chunks is bounded; the append that would pass the bound is refused.
- A snapshot covers chunks 0 .. next-1.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentchat_server.protocol import Code, ProtocolError


@dataclass(slots=True)
class Stream:
    stream_id: str
    channel: str
    writer: str  # session id of the only connection allowed to append
    client_id: str
    kind: str
    name: str
    message_id: str
    reply_to: int | None
    meta: Any
    format: str
    ts: int
    max_bytes: int
    chunks: list[Any] = field(default_factory=list)
    size: int = 0

    @property
    def next(self) -> int:
        return len(self.chunks)

    def append(self, index: int, chunk: Any, chunk_bytes: int) -> bool:
        """Accept chunk `index`; False for a duplicate; raises ProtocolError when refused."""
        if index < len(self.chunks):
            return False
        if index > len(self.chunks):
            raise ProtocolError(Code.CHUNK_OUT_OF_ORDER, "chunk index skips ahead", next=len(self.chunks))
        if self.format == "text" and not isinstance(chunk, str):
            raise ProtocolError(Code.INVALID_VALUE, "text streams take string chunks")
        if self.size + chunk_bytes > self.max_bytes:
            raise ProtocolError(Code.STREAM_TOO_LARGE, f"stream exceeds {self.max_bytes} bytes")
        self.chunks.append(chunk)
        self.size += chunk_bytes
        return True

    def content(self) -> Any:
        if self.format == "text":
            return "".join(self.chunks)
        return list(self.chunks)

    def header(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "channel": self.channel,
            "stream_id": self.stream_id,
            "client_id": self.client_id,
            "kind": self.kind,
            "name": self.name,
            "format": self.format,
            "ts": self.ts,
        }
        if self.reply_to is not None:
            frame["reply_to"] = self.reply_to
        if self.meta is not None:
            frame["meta"] = self.meta
        return frame

    def open_frame(self) -> dict[str, Any]:
        return {"type": "stream_open", **self.header()}

    def snapshot_frame(self) -> dict[str, Any]:
        return {"type": "stream_snapshot", **self.header(), "content": self.content(), "next": self.next}
