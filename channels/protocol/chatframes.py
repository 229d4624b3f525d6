"""Client frames of group chat: edit, delete, react, read marks, unread counts, the room directory.

`docs/protocol.md` ("Group chat") is the prose contract for these models.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, JsonValue

from agentchat_server.protocol.fields import ChannelName, MessageId, Ref, Serial, StrictFrame

Reaction = Field(min_length=1, max_length=64)


class EditFrame(StrictFrame):
    """Replace the data of one's own message `serial` (a durable edit event)."""

    type: Literal["edit"]
    ref: Ref | None = None
    channel: ChannelName
    serial: Serial
    data: JsonValue = None
    id: MessageId | None = None  # idempotency key of the edit event


class DeleteFrame(StrictFrame):
    """Delete message `serial` (one's own, or any with `moderate`): it becomes a tombstone."""

    type: Literal["delete"]
    ref: Ref | None = None
    channel: ChannelName
    serial: Serial
    id: MessageId | None = None


class ReactFrame(StrictFrame):
    """Add (or with `remove`, take back) one's reaction to message `serial`."""

    type: Literal["react"]
    ref: Ref | None = None
    channel: ChannelName
    serial: Serial
    reaction: str = Reaction
    remove: bool = False


class ReadFrame(StrictFrame):
    """Mark the channel read up to `serial` (a read mark never moves backwards)."""

    type: Literal["read"]
    ref: Ref | None = None
    channel: ChannelName
    serial: Serial


class UnreadFrame(StrictFrame):
    """Unread and mention counts: for the listed channels, or a page of the member's read marks."""

    type: Literal["unread"]
    ref: Ref
    channels: list[ChannelName] | None = Field(default=None, min_length=1, max_length=100)
    after: ChannelName | None = None


class RoomsFrame(StrictFrame):
    """One page of the room directory: the channels this token may subscribe to."""

    type: Literal["rooms"]
    ref: Ref
    after: ChannelName | None = None
    prefix: str | None = Field(default=None, min_length=1, max_length=200)
    limit: int = Field(default=50, ge=1, le=1000)


class RoomGetFrame(StrictFrame):
    """One channel's directory entry."""

    type: Literal["room_get"]
    ref: Ref
    channel: ChannelName


class RoomSetFrame(StrictFrame):
    """Create (with `create`) or update a room's title and topic; needs `manage`."""

    type: Literal["room_set"]
    ref: Ref | None = None
    channel: ChannelName
    title: str | None = Field(default=None, max_length=400)
    topic: str | None = Field(default=None, max_length=2000)
    create: bool = False


# --- REST bodies ---------------------------------------------------------------------------


class RestEdit(StrictFrame):
    """Body of `PATCH /v1/channels/{channel}/messages/{serial}`: the new data."""

    data: JsonValue = None
    id: MessageId | None = None


class RestRead(StrictFrame):
    """Body of `PUT /v1/channels/{channel}/read`: the serial read up to."""

    serial: Serial


class RestRoom(StrictFrame):
    """Body of `PUT /v1/channels/{channel}/room`: title and topic, and whether to create."""

    title: str | None = Field(default=None, max_length=400)
    topic: str | None = Field(default=None, max_length=2000)
    create: bool = False
