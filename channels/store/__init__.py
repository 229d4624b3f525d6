"""The Store port: durable history with serials assigned in the commit, plus stream markers and
the rows of agent rooms (claims, runs, input requests, loop-brake counts; see `store.room_ops`).

Message ids are idempotency keys scoped to their publisher: (channel, client_id, id) is unique.

Adapters: `SqlStore` (SQLite via aiosqlite, PostgreSQL via asyncpg), chosen by URL scheme.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from agentchat_server.core.agentrooms import ClaimRow
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.records import Message, NewMessage
from agentchat_server.core.refusal import Refusal
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
    fenced: bool = False  # a stream end whose writer no longer holds the stream: nothing stored
    # A rule refused it: an event or a thread reply's (nothing stored) or a room rule's (stored
    # may hold the loop brake's notice).
    refusal: Refusal | None = None
    unchanged: bool = False  # a reaction that was already so: nothing to store
    claims: list[ClaimRow] = field(default_factory=list)  # claims the commit changed
    run: RunRecord | None = None  # the run it started or changed
    request: RequestRecord | None = None  # the input request it made or closed


@dataclass(slots=True)
class StreamMarker:
    """An open stream as the Store knows it: who writes it and under which lease.

    The node holding the stream renews `lease_until` while it lives; a takeover (the writer
    resuming on another node, or after a restart) bumps `fence`, and only the holder of the
    current fence can end the stream. A marker whose lease has lapsed is an orphan: any node may
    end it as aborted. `secret` is the hash of the stream's resume key."""

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
    node: str | None = None
    lease_until: int = 0
    fence: int = 1
    secret: str = ""
    content_json: str | None = None  # the content so far, saved when its node let go of the stream
    chunks: int = 0  # how many chunks `content_json` holds
    thread: int | None = None


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


@dataclass(slots=True)
class MarkRead:
    """Move a member's read mark in a channel forward to `serial` (never backwards)."""

    channel: str
    client_id: str
    serial: int
    ts: int


@dataclass(slots=True)
class ReadMark:
    """A member's read mark after a MarkRead; `refusal` when the serial is beyond the channel."""

    serial: int
    moved: bool
    refusal: Refusal | None = None


@dataclass(slots=True)
class PutRoom:
    """Set a channel's directory metadata (None leaves a field as it is); `create` refuses a
    channel that already has metadata or messages."""

    channel: str
    title: str | None
    topic: str | None
    by: str
    ts: int
    create: bool = False


@dataclass(slots=True)
class Room:
    """A channel as the directory shows it (members come from presence, not the Store)."""

    channel: str
    title: str | None
    topic: str | None
    last_serial: int
    last_ts: int | None
    updated_by: str | None
    updated_ts: int | None
    refusal: Refusal | None = None


@dataclass(slots=True)
class Unread:
    """A member's read mark in a channel and what is unread past it (counts capped)."""

    channel: str
    last_read: int
    last_serial: int
    unread: int
    mentions: int
    capped: bool


Operation = Append | OpenMarker | MarkRead | PutRoom | ClaimChange | RunChange
Outcome = AppendResult | ReadMark | Room | ClaimResult | RunResult | None


class Store(Protocol):
    """Durable history. `commit` runs many operations in one transaction (group commit)."""

    stats: StoreStats

    async def open(self) -> None:
        """Connect and bring the schema up to date (migrations)."""

    async def close(self) -> None:
        """Close connections; the Store can be opened again."""

    async def commit(self, operations: Sequence[Operation]) -> list[Outcome]:
        """Apply all operations in one transaction; results align with operations (AppendResult,
        ReadMark, Room, ClaimResult, RunResult; None for a marker, an AppendResult for a marker a
        room rule refused). Raises on a storage failure: then nothing was committed."""

    async def history(
        self,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
        max_bytes: int | None = None,
        thread: int | None = None,
        main: bool = False,
        to_me: str | None = None,
    ) -> HistoryPage:
        """Messages with after < serial < before, oldest first if `forwards` else newest first: at most
        `limit`, and no more once their encoded size passes `max_bytes` (never fewer than one).
        Memory stays near the page's size whatever the rows hold. `thread`: only that thread's
        replies; `main`: only top-level messages (no replies, no events); `to_me`: only messages to
        nobody, to that client id, or from it."""

    async def message_at(self, channel: str, serial: int) -> Message | None:
        """The message (or event) stored at `serial`, in its current state."""

    async def my_reactions(
        self, channel: str, serials: Sequence[int], client_id: str
    ) -> dict[int, list[str]]:
        """The reactions `client_id` has on each of `serials` (only serials with some)."""

    async def unread(
        self, client_id: str, channels: Sequence[str] | None, after: str | None, limit: int, cap: int
    ) -> tuple[list[Unread], bool]:
        """Read marks and counts for `channels` (a mark of 0 where none is stored), or else a page
        of the member's marked channels after `after` by name; and whether more follow. Unread
        counts top-level messages by others past the mark; mentions count messages naming the
        member past it; both stop at `cap`."""

    async def rooms(self, prefixes: Sequence[str], after: str | None, limit: int) -> tuple[list[Room], bool]:
        """Channels whose names start with one of `prefixes`, in name order after `after`: at most
        `limit`, and whether more follow."""

    async def room(self, channel: str) -> Room | None:
        """One channel's directory entry; None if it has neither messages nor metadata."""

    async def channel(self, channel: str) -> ChannelInfo:
        """The channel's position; a channel never written to has last_serial 0."""

    async def heads(self, channels: Sequence[str]) -> dict[str, int]:
        """The last serial of each of these channels that exists (absent ones are left out)."""

    async def find_message(self, channel: str, client_id: str, message_id: str) -> Message | None:
        """The message `client_id` published with `message_id` (ids are scoped per publisher)."""

    async def open_markers(self) -> list[StreamMarker]:
        """Markers of every open stream, oldest first."""

    async def marker(self, stream_id: str) -> StreamMarker | None:
        """The marker of an open stream, or None once it ended."""

    async def lapsed_markers(self, now_ms: int) -> list[StreamMarker]:
        """Markers whose lease ended before `now_ms`: streams nobody holds any more."""

    async def renew_leases(self, node: str, until_ms: int) -> int:
        """Extend the lease of every stream and run `node` holds; returns how many streams it holds."""

    async def release(
        self, stream_id: str, fence: int, content_json: str, chunks: int, until_ms: int
    ) -> bool:
        """The holder lets go of a stream (shutting down), saving its content so far; it stays
        resumable by its writer, on any node, until `until_ms`. False if the fence moved on."""

    async def take_over(
        self, stream_id: str, client_id: str, secret: str, node: str, until_ms: int
    ) -> StreamMarker | None:
        """Give the stream to `node` with a new fence, if `client_id` writes it and `secret` is its
        resume key's hash; None otherwise (unknown, ended, or not this writer's)."""

    async def prune(self, older_than_ms: int) -> dict[str, int]:
        """Delete messages older than the timestamp (retention); returns each affected channel's
        new first serial."""

    async def ping(self) -> None:
        """Raise if the database does not answer."""

    # --- agent rooms ------------------------------------------------------------------------

    async def claims(self, channel: str, now: int, after: int | None, limit: int) -> list[ClaimRow]:
        """Claims held at `now` on messages after serial `after`, in serial order, at most `limit`."""

    async def due_claims(self, now: int, limit: int) -> list[ClaimRow]:
        """Held claims whose lease ended before `now` (for the sweep that announces them)."""

    async def run(self, run_id: str) -> RunRecord | None:
        """The run with this id."""

    async def active_runs(self, channel: str, limit: int) -> list[RunRecord]:
        """The channel's runs that have not ended, oldest first, at most `limit`."""

    async def lapsed_runs(self, now_ms: int) -> list[RunRecord]:
        """Active runs with a writer whose lease ended before `now_ms`: their node is gone."""

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
