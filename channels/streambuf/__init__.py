"""The StreamBuffer port: open streams' headers and chunks where every node can read them.

The node holding a stream writes each accepted chunk here; a node serving a reader that arrives
mid-stream reads the snapshot here; a node taking the stream over (its writer resumed there) or
ending it as an orphan (its node died) reads the content so far here. Bounded: a stream holds at
most `max_stream_bytes` of chunks (the holder refuses more), and entries expire after a TTL.

Adapters: `LocalStreamBuffer` (one process: the node's own streams are the only ones, nothing to
share) and `RedisStreamBuffer` (several processes).
"""

from __future__ import annotations

from typing import Any, Protocol


class StreamBuffer(Protocol):
    """Open streams of every node."""

    def opened(self, channel: str, stream_id: str, header: dict[str, Any]) -> None:
        """A stream opened (or moved) here: readers elsewhere may snapshot it. Queued, in order."""

    def appended(self, stream_id: str, index: int, chunk: Any) -> None:
        """Chunk `index` was accepted. Queued, in order after `opened`."""

    def ended(self, channel: str, stream_id: str) -> None:
        """The stream ended: forget it. Queued."""

    async def chunks(self, stream_id: str) -> list[Any] | None:
        """The chunks accepted so far (index order), or None if the stream is unknown here."""

    async def open_streams(self, channel: str) -> list[tuple[dict[str, Any], list[Any]]]:
        """Header and chunks of every stream open in the channel, on any node."""

    async def flush(self) -> None:
        """Write what is queued (before a takeover elsewhere may read it)."""


class LocalStreamBuffer:
    """One process: nothing to share; the node's Streams hold every open stream."""

    def opened(self, channel: str, stream_id: str, header: dict[str, Any]) -> None:
        """Nothing to share."""

    def appended(self, stream_id: str, index: int, chunk: Any) -> None:
        """Nothing to share."""

    def ended(self, channel: str, stream_id: str) -> None:
        """Nothing to share."""

    async def chunks(self, stream_id: str) -> list[Any] | None:
        """Unknown here: chunks live only in the node that held the stream."""
        return None

    async def open_streams(self, channel: str) -> list[tuple[dict[str, Any], list[Any]]]:
        """No other node."""
        return []

    async def flush(self) -> None:
        """Nothing queued."""
