"""Plain values the SDK hands to users: messages, presence members, positions, history pages."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentchat.chatmodels import Reaction, Replies, Stamp, reactions_from_wire
from agentchat.mentions import mentioned, text_of


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _opt_dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


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
    """One message of a channel; `serial` is None for ephemeral messages.

    An *event* (`action` set: `edit`, `delete`, `react`, `unreact`) is a durable message that changes
    the message at serial `target`: answer messages, not events (`is_event`). Messages from history
    come in their current version: `rev` is the serial of the last event applied, `edited` and
    `deleted` say who changed them, `reactions` holds the aggregate and `replies` a thread root's
    summary. Apply live events to messages you hold with `agentchat.timeline`. In agent rooms, `to`
    names the addressees; a run's messages carry `run_id` and `lane` (`text`, `reasoning`,
    `tool_call`, `tool_result`, with `tool_call` `{"id", "name"}`); a failed stream's `error`
    is `{"message", "code"}`; input requests and answers carry `request_id`.
    """

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
    thread: int | None = None
    action: str | None = None
    target: int | None = None
    rev: int | None = None
    edited: Stamp | None = None
    deleted: Stamp | None = None
    reactions: Mapping[str, Reaction] = field(default_factory=dict)
    replies: Replies | None = None
    my_reactions: tuple[str, ...] = ()
    display_name: str | None = None
    cancelled_by: str | None = None
    to: tuple[str, ...] | None = None
    run_id: str | None = None
    lane: str | None = None
    tool_call: Mapping[str, Any] | None = None
    error: Mapping[str, Any] | None = None
    request_id: str | None = None

    @classmethod
    def from_wire(cls, frame: dict[str, Any], channel: str | None = None) -> Message:
        """A message from a `message` frame or a history entry (`channel` when the entry has none)."""
        action = frame.get("action")
        to = frame.get("to")
        mine = frame.get("my_reactions")
        return cls(
            channel=str(frame.get("channel", channel or "")),
            serial=_opt_int(frame.get("serial")),
            id=str(frame.get("id", "")),
            name=str(frame.get("name", "message")),
            data=frame.get("data"),
            client_id=str(frame.get("client_id", "")),
            kind=str(frame.get("kind", "human")),
            ts=int(frame.get("ts") or 0),
            reply_to=_opt_int(frame.get("reply_to")),
            stream_id=_opt_str(frame.get("stream_id")),
            status=_opt_str(frame.get("status")),
            meta=frame.get("meta"),
            ephemeral=bool(frame.get("ephemeral", False)),
            thread=_opt_int(frame.get("thread")),
            action=action if isinstance(action, str) else None,
            target=_opt_int(frame.get("target")),
            rev=_opt_int(frame.get("rev")),
            edited=Stamp.from_wire(frame.get("edited")),
            deleted=Stamp.from_wire(frame.get("deleted")),
            reactions=reactions_from_wire(frame.get("reactions")),
            replies=Replies.from_wire(frame.get("replies")),
            my_reactions=tuple(r for r in mine if isinstance(r, str)) if isinstance(mine, list) else (),
            display_name=_opt_str(frame.get("display_name")),
            cancelled_by=_opt_str(frame.get("cancelled_by")),
            to=tuple(t for t in to if isinstance(t, str)) if isinstance(to, list) else None,
            run_id=_opt_str(frame.get("run_id")),
            lane=_opt_str(frame.get("lane")),
            tool_call=_opt_dict(frame.get("tool_call")),
            error=_opt_dict(frame.get("error")),
            request_id=_opt_str(frame.get("request_id")),
        )

    @property
    def text(self) -> str:
        """The message as text: `data` if it is a string, `data["text"]` if present, else ''."""
        return text_of(self.data)

    @property
    def is_event(self) -> bool:
        """True for an event (edit, delete, react, unreact) on the message at `target`."""
        return self.action is not None

    @property
    def version(self) -> int | None:
        """The serial of the newest change this copy includes: `rev`, else its own serial."""
        return self.rev if self.rev is not None else self.serial

    @property
    def mentions(self) -> frozenset[str]:
        """The client ids this message names, by the server's rule (`agentchat.mentions`): its `to`
        list when it has one, else each `@client_id` in its text; never its author."""
        if self.action is not None and self.action != "edit":
            return frozenset()  # a reaction or a delete names nobody
        return frozenset(mentioned(self.data, self.client_id, self.to))


@dataclass(frozen=True, slots=True)
class Member:
    """One presence entry: a (client_id, connection_id) pair with its data."""

    client_id: str
    connection_id: str
    kind: str
    data: Any
    ts: int
    display_name: str | None = None

    @classmethod
    def from_wire(cls, value: dict[str, Any]) -> Member:
        """A member from a presence frame's `member` or a `presence_sync` entry."""
        return cls(
            client_id=str(value.get("client_id", "")),
            connection_id=str(value.get("connection_id", "")),
            kind=str(value.get("kind", "human")),
            data=value.get("data"),
            ts=int(value.get("ts") or 0),
            display_name=_opt_str(value.get("display_name")),
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
