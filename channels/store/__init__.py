"""The Store port: durable history with serials assigned in the commit, plus stream markers.

Adapters: `SqlStore` (SQLite via aiosqlite, PostgreSQL via asyncpg), chosen by URL scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(slots=True)
class NewMessage:
    """A message to append; `data_json` and `meta_json` are encoded once by the caller."""

    id: str
    name: str
    data: Any
    data_json: str
    client_id: str
    kind: str
    ts: int
    reply_to: int | None = None
    stream_id: str | None = None
    status: str | None = None
    meta_json: str | None = None
    fresh_id: bool = False  # the server made the id just now: it cannot exist yet, skip the lookup


@dataclass(slots=True)
class StoredMessage:
    channel: str
    serial: int
    id: str
    name: str
    data: Any
    client_id: str
    kind: str
    ts: int
    reply_to: int | None = None
    stream_id: str | None = None
    status: str | None = None
    meta: Any = None

    def to_wire(self) -> dict[str, Any]:
        frame: dict[str, Any] = {
            "type": "message",
            "channel": self.channel,
            "serial": self.serial,
            "id": self.id,
            "name": self.name,
            "data": self.data,
            "client_id": self.client_id,
            "kind": self.kind,
            "ts": self.ts,
        }
        if self.reply_to is not None:
            frame["reply_to"] = self.reply_to
        if self.stream_id is not None:
            frame["stream_id"] = self.stream_id
            frame["status"] = self.status
        if self.meta is not None:
            frame["meta"] = self.meta
        return frame


@dataclass(slots=True)
class Append:
    """Append messages to one channel atomically, optionally only if its last serial is `if_serial`."""

    channel: str
    messages: list[NewMessage]
    if_serial: int | None = None


@dataclass(slots=True)
class AppendResult:
    serials: list[int]
    duplicates: list[int]  # indexes in the batch that already existed
    stored: list[StoredMessage]  # the newly stored messages, in serial order
    conflict: int | None = None  # set when if_serial did not match: the channel's last serial
    epoch: str = ""


@dataclass(slots=True)
class StreamMarker:
    """A stream's start, kept so a restart can end it as aborted instead of leaving it open."""

    stream_id: str
    channel: str
    message_id: str
    client_id: str
    kind: str
    name: str
    reply_to: int | None
    meta_json: str | None
    format: str
    ts: int


@dataclass(slots=True)
class OpenMarker:
    marker: StreamMarker


@dataclass(slots=True)
class ChannelInfo:
    name: str
    epoch: str
    last_serial: int
    first_serial: int  # lowest serial still in history (last_serial + 1 when empty)


@dataclass(slots=True)
class StoreStats:
    transactions: int = 0
    writes: int = 0  # operations written: one per Append or OpenMarker
    messages: int = 0
    writes_by_stream: dict[str, int] = field(default_factory=dict)


Operation = Append | OpenMarker


class Store(Protocol):
    """Durable history. `commit` runs many operations in one transaction (group commit)."""

    stats: StoreStats

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""

    async def close(self) -> None: ...

    async def commit(self, operations: Sequence[Operation]) -> list[AppendResult | None]:
        """Apply all operations in one transaction; results align with operations
        (None for markers). Raises on a storage failure: then nothing was committed."""

    async def history(
        self, channel: str, *, before: int | None, after: int | None, limit: int, forwards: bool
    ) -> list[StoredMessage]:
        """Messages with after < serial < before, oldest first if `forwards` else newest first."""

    async def channel(self, channel: str) -> ChannelInfo:
        """The channel's position; a channel never written to has last_serial 0."""

    async def find_message(self, channel: str, message_id: str) -> StoredMessage | None: ...

    async def open_markers(self) -> list[StreamMarker]:
        """Markers of streams that never ended (read at start to end them as aborted)."""

    async def prune(self, older_than_ms: int) -> dict[str, int]:
        """Delete messages older than the timestamp (retention); returns each affected channel's
        new first serial."""

    async def ping(self) -> None: ...


def make_store(url: str) -> Store:
    """Pick the adapter for a database URL (sqlite+aiosqlite:// or postgresql+asyncpg://)."""
    from agentchat_server.store.sql import SqlStore

    return SqlStore(url)
