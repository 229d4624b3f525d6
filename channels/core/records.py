"""Records of durable messages as the Store keeps them and the Bus carries them (plain values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agentchat_server.core.chat import ChatEvent


@dataclass(slots=True)
class NewMessage:
    """A message to append. `data_json`, `meta_json` and `extra_json` are encoded once by the caller.

    `extra` holds server-stamped optional fields that go on the wire as they are (`display_name`,
    `cancelled_by`, ...); clients cannot set them."""

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
    extra: Mapping[str, Any] | None = None
    extra_json: str | None = None
    fence: int | None = None  # a stream's end: the fencing token its writer holds (checked in the commit)
    thread: int | None = None  # root serial of the thread it replies in
    mentions: tuple[str, ...] = ()  # client ids it names (protocol.mentions), for mention counts
    event: ChatEvent | None = None  # set for edit, delete and reaction events


@dataclass(slots=True)
class Message:
    """A committed message of a channel's history."""

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
    extra: Mapping[str, Any] | None = None
    thread: int | None = None
    action: str | None = None  # edit, delete, react, unreact: an event on message `target`
    target: int | None = None

    def to_tuple(self) -> tuple[Any, ...]:
        """The fields in order, for carrying over the bus."""
        return (
            self.channel,
            self.serial,
            self.id,
            self.name,
            self.data,
            self.client_id,
            self.kind,
            self.ts,
            self.reply_to,
            self.stream_id,
            self.status,
            self.meta,
            None if self.extra is None else dict(self.extra),
            self.thread,
            self.action,
            self.target,
        )

    @classmethod
    def from_tuple(cls, fields: list[Any] | tuple[Any, ...]) -> Message:
        """The inverse of `to_tuple`; raises ValueError on a malformed tuple."""
        # 13 fields: a node from before chat events (rolling deploys).
        if len(fields) not in (13, 16) or not isinstance(fields[0], str) or type(fields[1]) is not int:
            raise ValueError("not a message record")
        return cls(*fields)
