"""Plain values the SDK hands to users: messages, presence members, positions, history pages."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_\-.@]{0,63})")


@dataclass(frozen=True, slots=True)
class Position:
    """The last serial seen in a channel and the channel's epoch (None when unknown)."""

    serial: int
    epoch: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The position as the protocol's `position` object."""
        wire: dict[str, Any] = {"serial": self.serial}
        if self.epoch is not None:
            wire["epoch"] = self.epoch
        return wire

    @classmethod
    def from_wire(cls, value: Any) -> Position:
        """A position from a frame's `position` field (serial 0 when it is missing)."""
        if not isinstance(value, dict):
            return cls(0, None)
        epoch = value.get("epoch")
        return cls(int(value.get("serial") or 0), epoch if isinstance(epoch, str) else None)


@dataclass(frozen=True, slots=True)
class Message:
    """One message of a channel; `serial` is None for ephemeral messages."""

    channel: str
    serial: int | None
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
    ephemeral: bool = False

    @classmethod
    def from_wire(cls, frame: dict[str, Any], channel: str | None = None) -> Message:
        """A message from a `message` frame or a history entry (`channel` when the entry has none)."""
        return cls(
            channel=str(frame.get("channel", channel or "")),
            serial=frame.get("serial"),
            id=str(frame.get("id", "")),
            name=str(frame.get("name", "message")),
            data=frame.get("data"),
            client_id=str(frame.get("client_id", "")),
            kind=str(frame.get("kind", "human")),
            ts=int(frame.get("ts") or 0),
            reply_to=frame.get("reply_to"),
            stream_id=frame.get("stream_id"),
            status=frame.get("status"),
            meta=frame.get("meta"),
            ephemeral=bool(frame.get("ephemeral", False)),
        )

    @property
    def text(self) -> str:
        """The message as text: `data` if it is a string, `data["text"]` if present, else ''."""
        if isinstance(self.data, str):
            return self.data
        if isinstance(self.data, dict) and isinstance(self.data.get("text"), str):
            return str(self.data["text"])
        return ""

    @property
    def mentions(self) -> frozenset[str]:
        """The client ids mentioned as `@client_id` in the text."""
        return frozenset(name.rstrip(".") for name in _MENTION.findall(self.text))


@dataclass(frozen=True, slots=True)
class Member:
    """One presence entry: a (client_id, connection_id) pair with its data."""

    client_id: str
    connection_id: str
    kind: str
    data: Any
    ts: int

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Member:
        """A member from a presence frame's `member` or a `presence_sync` entry."""
        return cls(
            client_id=str(value.get("client_id", "")),
            connection_id=str(value.get("connection_id", "")),
            kind=str(value.get("kind", "human")),
            data=value.get("data"),
            ts=int(value.get("ts") or 0),
        )


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """One page of history in the order asked for: iterate it (or `messages`), `len()` counts it.

    Only `has_more` says whether more messages lie beyond the page: the server may cut a page short
    of the `limit` asked for (by bytes, or at its `history_max_page`). Page on with the last
    message's serial, or let `Channel.messages()` do the paging.
    """

    messages: list[Message]
    has_more: bool

    def __iter__(self) -> Iterator[Message]:
        return iter(self.messages)

    def __len__(self) -> int:
        return len(self.messages)

    @property
    def last_serial(self) -> int | None:
        """The serial of the page's last message (where the next page starts), None when empty."""
        return self.messages[-1].serial if self.messages else None


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """A live-only frame of a channel: stream_open/chunk/snapshot/cancelled, ephemeral message, presence."""

    type: str
    channel: str
    frame: dict[str, Any] = field(repr=False)
