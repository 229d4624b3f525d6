"""The Store port: durable history with serials assigned in the commit, plus stream markers and
the rows of agent rooms (claims, runs, input requests, loop-brake counts; see `store.room_ops`).

Message ids are idempotency keys scoped to their publisher: (channel, client_id, id) is unique.

Adapters: `SqlStore` (SQLite via aiosqlite, PostgreSQL via asyncpg), chosen by URL scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.records import Message, NewMessage
from agentchat_server.core.rooms import ClaimRow, Refusal
from agentchat_server.core.runs import RunRecord
from agentchat_server.store.room_ops import (
    AskInput,
    ClaimChange,
    ClaimResult,
    CloseInput,
    Effect,
    LoseWriter,
    RoomWrite,
    RunChange,
    RunEnd,
    RunResult,
    RunStart,
)

__all__ = [
    "Append",
    "AppendResult",
    "AskInput",
    "ChannelInfo",
    "ClaimChange",
    "ClaimResult",
    "CloseInput",
    "Effect",
    "HistoryPage",
    "LoseWriter",
    "Message",
    "NewMessage",
    "OpenMarker",
    "Operation",
    "Result",
    "RoomWrite",
    "RunChange",
    "RunEnd",
    "RunResult",
    "RunStart",
    "Store",
    "StoreStats",
    "StreamMarker",
    "make_store",
]


@dataclass(slots=True)
class Append:
    """Append messages to one channel atomically, optionally only if its last serial is `if_serial`."""

    channel: str
    messages: list[NewMessage]
    if_serial: int | None = None
    room: RoomWrite | None = None


@dataclass(slots=True)
class AppendResult:
    """The outcome of one Append: serials per message, duplicates, what was stored, or a conflict."""

    serials: list[int]
    duplicates: list[int]  # indexes in the batch that already existed
    stored: list[Message]  # the newly stored messages, in serial order
    conflict: int | None = None  # set when if_serial did not match: the channel's last serial
    epoch: str = ""
    refusal: Refusal | None = None  # a room rule refused it (stored may hold the brake's notice)
    claims: list[ClaimRow] = field(default_factory=list)  # claims the commit changed
    run: RunRecord | None = None  # the run it started or changed
    request: RequestRecord | None = None  # the input request it made or closed


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
    """Store a stream's start marker (checked against the room's rules when `room` is given)."""

    marker: StreamMarker
    room: RoomWrite | None = None


@dataclass(slots=True)
class ChannelInfo:
    """A channel's position in the Store."""

    name: str
    epoch: str
    last_serial: int
    first_serial: int  # lowest serial still in history (last_serial + 1 when empty)


@dataclass(slots=True)
class HistoryPage:
    """Messages of one history read, and whether more exist past them in the direction read."""

    messages: list[Message]
    has_more: bool


@dataclass(slots=True)
class StoreStats:
    """Counts of the Store's work since it opened (for tests and the bench)."""

    transactions: int = 0
    writes: int = 0  # operations written: one per Append or OpenMarker
    messages: int = 0
    writes_by_stream: dict[str, int] = field(default_factory=dict)


Operation = Append | OpenMarker | ClaimChange | RunChange
Result = AppendResult | ClaimResult | RunResult | None


class Store(Protocol):
    """Durable history. `commit` runs many operations in one transaction (group commit)."""

    stats: StoreStats

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""

    async def close(self) -> None:
        """Close connections; the Store can be opened again."""

    async def commit(self, operations: Sequence[Operation]) -> list[Result]:
        """Apply all operations in one transaction; results align with operations (None for a
        marker, an AppendResult for a marker a room rule refused). Raises on a storage failure:
        then nothing was committed."""

    async def history(
        self,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
        max_bytes: int | None = None,
        to_me: str | None = None,
    ) -> HistoryPage:
        """Messages with after < serial < before, oldest first if `forwards` else newest first: at most
        `limit`, and no more once their encoded size passes `max_bytes` (never fewer than one).
        Memory stays near the page's size whatever the rows hold. `to_me`: only messages to nobody,
        to that client id, or from it."""

    async def channel(self, channel: str) -> ChannelInfo:
        """The channel's position; a channel never written to has last_serial 0."""

    async def find_message(self, channel: str, client_id: str, message_id: str) -> Message | None:
        """The message `client_id` published with `message_id` (ids are scoped per publisher)."""

    async def open_markers(self) -> list[StreamMarker]:
        """Markers of streams that never ended (read at start to end them as aborted)."""

    async def prune(self, older_than_ms: int) -> dict[str, int]:
        """Delete messages older than the timestamp (retention); returns each affected channel's
        new first serial."""

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    # --- agent rooms ------------------------------------------------------------------------

    async def message_at(self, channel: str, serial: int) -> Message | None:
        """The message with this serial, if it is still in history."""

    async def claims(self, channel: str, now: int, after: int | None, limit: int) -> list[ClaimRow]:
        """Claims held at `now` on messages after serial `after`, in serial order, at most `limit`."""

    async def due_claims(self, now: int, limit: int) -> list[ClaimRow]:
        """Held claims whose lease ended before `now` (for the sweep that announces them)."""

    async def run(self, run_id: str) -> RunRecord | None:
        """The run with this id."""

    async def active_runs(self, channel: str, limit: int) -> list[RunRecord]:
        """The channel's runs that have not ended, oldest first, at most `limit`."""

    async def written_runs(self) -> list[RunRecord]:
        """Active runs that have a writer (read at start: a previous run's writers are gone)."""

    async def request(self, request_id: str) -> RequestRecord | None:
        """The input request with this id."""

    async def requests(
        self, channel: str, *, asker: str | None, status: str, after: int | None, limit: int
    ) -> tuple[list[RequestRecord], bool]:
        """A page of the channel's input requests after serial `after` (pending, closed or any;
        of one asker if given), in serial order, and whether more follow."""

    async def due_requests(self, now: int, limit: int) -> list[RequestRecord]:
        """Pending requests whose deadline passed before `now` (for the sweep that expires them)."""


def make_store(url: str) -> Store:
    """Pick the adapter for a database URL (sqlite+aiosqlite:// or postgresql+asyncpg://)."""
    from agentchat_server.store.sql import SqlStore

    return SqlStore(url)
