"""Plain values of group chat: who edited or deleted, reaction aggregates, thread summaries, read
marks, unread counts and the room directory (docs/protocol.md, "Group chat")."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple


def _int(value: Any, default: int = 0) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


@dataclass(frozen=True, slots=True)
class Stamp:
    """Who changed a message and when (`edited` and `deleted`): a client id and milliseconds."""

    by: str
    ts: int

    @classmethod
    def from_wire(cls, value: Any) -> Stamp | None:
        """A stamp from a message's `edited` or `deleted` object (None when absent)."""
        if not isinstance(value, dict):
            return None
        return cls(str(value.get("by", "")), _int(value.get("ts")))


@dataclass(frozen=True, slots=True)
class Reaction:
    """One reaction on a message: the exact `count`, and the first members who reacted (by time)."""

    count: int
    clients: tuple[str, ...] = ()

    @classmethod
    def from_wire(cls, value: Any) -> Reaction:
        """A reaction from one entry of a `reactions` aggregate."""
        entry = value if isinstance(value, dict) else {}
        clients = entry.get("clients")
        listed = tuple(c for c in clients if isinstance(c, str)) if isinstance(clients, list) else ()
        return cls(_int(entry.get("count")), listed)


def reactions_from_wire(value: Any) -> dict[str, Reaction]:
    """A `reactions` aggregate, in first-reaction order (empty when absent)."""
    if not isinstance(value, dict):
        return {}
    return {str(name): Reaction.from_wire(entry) for name, entry in value.items()}


@dataclass(frozen=True, slots=True)
class LastReply:
    """The newest reply of a thread, as its root's summary names it."""

    serial: int
    client_id: str
    ts: int


@dataclass(frozen=True, slots=True)
class Replies:
    """A thread root's summary: how many replies it has, and the newest one."""

    count: int
    last: LastReply | None = None

    @classmethod
    def from_wire(cls, value: Any) -> Replies | None:
        """A summary from a root's `replies` object (None when the message has no replies)."""
        if not isinstance(value, dict):
            return None
        last = value.get("last")
        newest = None
        if isinstance(last, dict):
            newest = LastReply(_int(last.get("serial")), str(last.get("client_id", "")), _int(last.get("ts")))
        return cls(_int(value.get("count")), newest)


class ReadMark(NamedTuple):
    """The stored read mark after `mark_read`: its `serial`, and whether this call `moved` it."""

    serial: int
    moved: bool


@dataclass(frozen=True, slots=True)
class Unread:
    """Unread and mention counts in one channel after the member's read mark.

    `unread` counts top-level messages by others; `mentions` the messages naming the member,
    thread replies included. With `capped` both are lower bounds (the server stops counting).
    """

    channel: str
    last_read: int
    last_serial: int
    unread: int
    mentions: int
    capped: bool = False

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> Unread:
        """An entry of an `unread` reply."""
        return cls(
            channel=str(value.get("channel", "")),
            last_read=_int(value.get("last_read")),
            last_serial=_int(value.get("last_serial")),
            unread=_int(value.get("unread")),
            mentions=_int(value.get("mentions")),
            capped=value.get("capped") is True,
        )


@dataclass(frozen=True, slots=True)
class UnreadPage:
    """The reply to `unread`: iterate its `channels`; `next` pages on while `has_more`."""

    channels: list[Unread]
    has_more: bool
    next: str | None = None

    def __iter__(self) -> Iterator[Unread]:
        return iter(self.channels)

    def __len__(self) -> int:
        return len(self.channels)

    def get(self, channel: str) -> Unread | None:
        """The entry of `channel`, None when the page has none."""
        return next((u for u in self.channels if u.channel == channel), None)


@dataclass(frozen=True, slots=True)
class Room:
    """A channel as the room directory shows it (a live `room` update leaves the counts out: 0, None).

    `members` counts presence entries; `last_serial` and `last_ts` are the last activity.
    """

    channel: str
    title: str | None = None
    topic: str | None = None
    members: int = 0
    last_serial: int = 0
    last_ts: int | None = None
    updated_by: str | None = None
    updated_ts: int | None = None

    @classmethod
    def from_wire(cls, value: Mapping[str, Any]) -> Room:
        """A room from a directory entry, a `room_get`/`room_set` reply's `room`, or a `room` frame."""
        return cls(
            channel=str(value.get("channel", "")),
            title=_opt_str(value.get("title")),
            topic=_opt_str(value.get("topic")),
            members=_int(value.get("members")),
            last_serial=_int(value.get("last_serial")),
            last_ts=_opt_int(value.get("last_ts")),
            updated_by=_opt_str(value.get("updated_by")),
            updated_ts=_opt_int(value.get("updated_ts")),
        )


@dataclass(frozen=True, slots=True)
class RoomsPage:
    """One page of the room directory, by channel name: iterate it; while `has_more`, ask again with
    `after=page.next`. A page may be short, even empty, with more to come."""

    rooms: list[Room]
    has_more: bool
    next: str | None = None

    def __iter__(self) -> Iterator[Room]:
        return iter(self.rooms)

    def __len__(self) -> int:
        return len(self.rooms)
