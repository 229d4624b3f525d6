"""The chunks of one stream this client writes, and how far the server has confirmed them; no I/O.

Rules:
- Chunk indexes are 0, 1, 2 … in the order pieces are added; a piece keeps its index for good, so
  a resend (after a reconnect, or when the server says which index it expects) is harmless: the
  server ignores indexes it has.
- An ack for chunk `i` means the server holds chunks 0 … i (it refuses an index beyond the next),
  so `acked` only grows.
- `40903` with `next` asks for everything from `next` again, once per distinct `next`.
- A stream ends once: cancelled by a member (`cancelled_by`), or failed (`error`).
"""

from __future__ import annotations

from typing import Any

from agentchat.errors import AgentChatError


class WriterState:
    """One open stream this client writes: its chunks, the confirmed count, and how it ended."""

    def __init__(
        self, channel: str, stream_id: str, resume_key: str | None = None, run_id: str | None = None
    ) -> None:
        self.channel = channel
        self.stream_id = stream_id
        self.run_id = run_id  # a lane of this run: cancelling the run cancels it
        self.resume_key = resume_key  # lets this writer take the stream back after losing its server
        self.chunks: list[Any] = []
        self.acked = 0
        self.cancelled = False
        self.cancelled_by: str | None = None
        self.error: AgentChatError | None = None
        self._resent_from = -1

    @property
    def unacked(self) -> int:
        """Chunks sent that the server has not confirmed yet."""
        return len(self.chunks) - self.acked

    @property
    def over(self) -> bool:
        """True once cancelled or failed: nothing more may be appended."""
        return self.cancelled or self.error is not None

    def add(self, pieces: list[Any]) -> list[tuple[int, Any]]:
        """Give `pieces` the next indexes; return (index, piece) pairs to send."""
        start = len(self.chunks)
        self.chunks.extend(pieces)
        return list(enumerate(pieces, start))

    def confirm(self, index: int) -> bool:
        """The server acked chunk `index`; True when that confirms something new."""
        if index + 1 <= self.acked:
            return False
        self.acked = min(index + 1, len(self.chunks))
        return True

    def resend_from(self, index: int) -> list[tuple[int, Any]]:
        """The server expects chunk `index` next: the (index, piece) pairs to send again (once per index)."""
        if index <= self._resent_from or self.over:
            return []
        self._resent_from = index
        return [(i, self.chunks[i]) for i in range(max(0, index), len(self.chunks))]

    def cancel(self, by: str | None) -> bool:
        """A member cancelled the stream; True the first time."""
        if self.cancelled:
            return False
        self.cancelled = True
        self.cancelled_by = by
        return True

    def fail(self, error: AgentChatError) -> bool:
        """The stream cannot go on; True the first time (a cancelled stream does not fail)."""
        if self.over:
            return False
        self.error = error
        return True
