"""Client frames and REST bodies: pydantic models that validate what clients send, once, at the edge.

Everything inside the server works with the validated values; `docs/protocol.md` is the prose
contract for these models.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import Field, JsonValue, TypeAdapter, ValidationError, model_validator

from agentchat_server.protocol.chatframes import (
    DeleteFrame,
    EditFrame,
    ReactFrame,
    ReadFrame,
    RoomGetFrame,
    RoomSetFrame,
    RoomsFrame,
    UnreadFrame,
)
from agentchat_server.protocol.codes import MAX_SERIAL
from agentchat_server.protocol.fields import CHANNEL_PATTERN as CHANNEL_PATTERN
from agentchat_server.protocol.fields import CLIENT_ID_PATTERN as CLIENT_ID_PATTERN
from agentchat_server.protocol.fields import ChannelName as ChannelName
from agentchat_server.protocol.fields import ClientId as ClientId
from agentchat_server.protocol.fields import EventName as EventName
from agentchat_server.protocol.fields import Kind as Kind
from agentchat_server.protocol.fields import MessageId as MessageId
from agentchat_server.protocol.fields import Ref as Ref
from agentchat_server.protocol.fields import Serial as Serial
from agentchat_server.protocol.fields import StreamStatus as StreamStatus
from agentchat_server.protocol.fields import StrictFrame as _Frame
from agentchat_server.protocol.rooms import (
    ROOM_FRAME_TYPES,
    Addressees,
    AnswerFrame,
    AskFrame,
    ClaimFrame,
    ClaimReleaseFrame,
    ClaimsFrame,
    ClaimToken,
    ClientEventName,
    ErrorInfo,
    Filter,
    Lane,
    RequestsFrame,
    RunCancelFrame,
    RunEndFrame,
    RunId,
    RunResumeFrame,
    RunStartFrame,
    RunStateFrame,
    StreamLane,
    ToolCall,
    check_run_fields,
)

PROTOCOL_VERSION = 1


class Position(_Frame):
    """Where a reader is in a channel: the last serial it has, in the channel's epoch."""

    serial: Serial
    epoch: str | None = Field(default=None, max_length=64)


class ResumeToken(_Frame):
    """The session to resume: its id and secret key from `connected`."""

    session_id: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=128)


class ConnectFrame(_Frame):
    """The first frame of a connection: a token, and a session to resume."""

    type: Literal["connect"]
    token: str | None = Field(default=None, min_length=1, max_length=8192)
    resume: ResumeToken | None = None
    version: int = PROTOCOL_VERSION


class AttachFrame(_Frame):
    """Attach a channel, optionally continuing after a position."""

    type: Literal["attach"]
    ref: Ref | None = None
    channel: ChannelName
    position: Position | None = None
    presence: bool = True
    filter: Filter = "all"  # "to_me": only messages to this client, to nobody, or from it


class DetachFrame(_Frame):
    """Detach a channel (presence there leaves)."""

    type: Literal["detach"]
    ref: Ref | None = None
    channel: ChannelName


class OutgoingMessage(_Frame):
    """One message a client publishes; `to`, `claim` and the run fields are the agent-room fields."""

    data: JsonValue = None
    name: ClientEventName = "message"
    id: MessageId | None = None
    reply_to: Serial | None = None
    thread: Serial | None = None  # the root serial of the thread this message replies in
    ephemeral: bool = False
    to: Addressees | None = None
    claim: ClaimToken | None = None
    run_id: RunId | None = None
    lane: Lane | None = None
    tool_call: ToolCall | None = None

    @model_validator(mode="after")
    def _room_fields(self) -> Self:
        check_run_fields(
            run_id=self.run_id,
            lane=self.lane,
            tool_call=self.tool_call,
            claim=self.claim,
            reply_to=self.reply_to,
        )
        if self.ephemeral and (self.claim is not None or self.run_id is not None):
            raise ValueError("claim and run_id go on durable messages")
        return self


class _Publish(_Frame):
    """Publish bodies may carry one message inline (data/name/id/...) instead of `messages`."""

    @model_validator(mode="before")
    @classmethod
    def _single_message(cls, value: Any) -> Any:
        if isinstance(value, dict) and "messages" not in value:
            inline = {k: value[k] for k in _MESSAGE_FIELDS if k in value}
            rest = {k: v for k, v in value.items() if k not in inline}
            rest["messages"] = [inline]
            return rest
        return value

    @model_validator(mode="after")
    def _ephemeral_rules(self) -> Self:
        ephemeral = {m.ephemeral for m in self.messages}  # type: ignore[attr-defined]
        if len(ephemeral) > 1:
            raise ValueError("a batch is either all ephemeral or all durable")
        if True in ephemeral and getattr(self, "if_serial", None) is not None:
            raise ValueError("if_serial applies to durable messages only")
        messages: list[OutgoingMessage] = self.messages  # type: ignore[attr-defined]
        if len(messages) > 1 and any(m.claim is not None or m.run_id is not None for m in messages):
            raise ValueError("claim and run_id go on a publish of one message")
        return self


_MESSAGE_FIELDS = (
    "data",
    "name",
    "id",
    "reply_to",
    "ephemeral",
    "to",
    "claim",
    "run_id",
    "lane",
    "tool_call",
    "thread",
)


class PublishFrame(_Publish):
    """Publish 1-100 messages atomically, optionally only if the channel is still at `if_serial`."""

    type: Literal["publish"]
    ref: Ref | None = None
    channel: ChannelName
    messages: list[OutgoingMessage] = Field(min_length=1, max_length=100)
    if_serial: Serial | None = None


class HistoryFrame(_Frame):
    """Read one page of history."""

    type: Literal["history"]
    ref: Ref
    channel: ChannelName
    before: Serial | None = None
    after: Serial | None = None
    limit: int = Field(default=50, ge=1, le=10_000)
    direction: Literal["backwards", "forwards"] = "backwards"
    thread: Serial | None = None  # only the replies of the thread on this root
    view: Literal["all", "main"] = "all"  # main: top-level messages only (no replies, no events)
    filter: Filter = "all"


class PresenceFrame(_Frame):
    """Enter, update or leave the channel's presence."""

    type: Literal["presence"]
    ref: Ref | None = None
    channel: ChannelName
    action: Literal["enter", "update", "leave"]
    data: JsonValue = None
    replaces: str | None = Field(default=None, min_length=1, max_length=64)  # an entry of a lost session


class PresenceGetFrame(_Frame):
    """Read one page of the channel's presence entries."""

    type: Literal["presence_get"]
    ref: Ref
    channel: ChannelName
    after: str | None = Field(default=None, min_length=1, max_length=64)  # page on from a connection id


class OccupancyFrame(_Frame):
    """Count the channel's connections, subscribers, publishers and presence members."""

    type: Literal["occupancy"]
    ref: Ref
    channel: ChannelName


class StreamOpenFrame(_Frame):
    """Open a token stream in a channel."""

    type: Literal["stream_open"]
    ref: Ref
    channel: ChannelName
    name: ClientEventName = "message"
    id: MessageId | None = None
    reply_to: Serial | None = None
    thread: Serial | None = None
    meta: JsonValue = None
    format: Literal["text", "json"] = "text"
    to: Addressees | None = None
    claim: ClaimToken | None = None
    run_id: RunId | None = None
    lane: StreamLane | None = None
    tool_call: ToolCall | None = None

    @model_validator(mode="after")
    def _room_fields(self) -> Self:
        check_run_fields(
            run_id=self.run_id,
            lane=self.lane,
            tool_call=self.tool_call,
            claim=self.claim,
            reply_to=self.reply_to,
        )
        return self


class StreamAppendFrame(_Frame):
    """Append chunk `i` to one's own open stream."""

    type: Literal["stream_append"]
    ref: Ref | None = None
    stream_id: str = Field(min_length=1, max_length=64)
    i: int = Field(ge=0, le=MAX_SERIAL)
    d: JsonValue


class StreamEndFrame(_Frame):
    """End one's own stream as one durable message."""

    type: Literal["stream_end"]
    ref: Ref
    stream_id: str = Field(min_length=1, max_length=64)
    status: Literal["complete", "failed", "cancelled"] = "complete"
    data: JsonValue = None
    chunks: int | None = Field(default=None, ge=0, le=MAX_SERIAL)
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("error is given when, and only when, status is failed")
        return self


class StreamResumeFrame(_Frame):
    """Continue one's own open stream after losing the server (or the session): the resume key
    came in `stream_open`'s ack; the reply says which chunk index to send next."""

    type: Literal["stream_resume"]
    ref: Ref
    stream_id: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=128)


class StreamCancelFrame(_Frame):
    """Cancel an open stream (one's own, or any with `cancel`)."""

    type: Literal["stream_cancel"]
    ref: Ref
    stream_id: str = Field(min_length=1, max_length=64)


class AuthFrame(_Frame):
    """Swap the connection's token for a fresh one of the same client."""

    type: Literal["auth"]
    ref: Ref
    token: str = Field(min_length=1, max_length=8192)


class PingFrame(_Frame):
    """Keep the connection alive (answered with `ack` when it has a `ref`)."""

    type: Literal["ping"]
    ref: Ref | None = None


ClientFrame = Annotated[
    (
        ConnectFrame
        | AttachFrame
        | DetachFrame
        | PublishFrame
        | HistoryFrame
        | PresenceFrame
        | PresenceGetFrame
        | OccupancyFrame
        | StreamOpenFrame
        | StreamAppendFrame
        | StreamEndFrame
        | StreamResumeFrame
        | StreamCancelFrame
        | AuthFrame
        | PingFrame
        | EditFrame
        | DeleteFrame
        | ReactFrame
        | ReadFrame
        | UnreadFrame
        | RoomsFrame
        | RoomGetFrame
        | RoomSetFrame
        | ClaimFrame
        | ClaimReleaseFrame
        | ClaimsFrame
        | RunStartFrame
        | RunEndFrame
        | RunStateFrame
        | RunCancelFrame
        | RunResumeFrame
        | AskFrame
        | AnswerFrame
        | RequestsFrame
    ),
    Field(discriminator="type"),
]
CLIENT_FRAME_TYPES = frozenset(
    {
        "connect",
        "attach",
        "detach",
        "publish",
        "history",
        "presence",
        "presence_get",
        "occupancy",
        "stream_open",
        "stream_append",
        "stream_end",
        "stream_resume",
        "stream_cancel",
        "auth",
        "ping",
        "edit",
        "delete",
        "react",
        "read",
        "unread",
        "rooms",
        "room_get",
        "room_set",
        *ROOM_FRAME_TYPES,
    }
)
client_frame_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)


# --- REST bodies ---------------------------------------------------------------------------


class RestPublish(_Publish):
    """Body of `POST /v1/channels/{channel}/messages`: one message inline, or `messages`."""

    messages: list[OutgoingMessage] = Field(min_length=1, max_length=100)
    if_serial: Serial | None = None


class TokenRequest(_Frame):
    """Body of `POST /v1/tokens`: what the minted token may do."""

    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    kind: Kind = "human"
    ttl: int = Field(default=3600, ge=10, le=86_400 * 30)
    capabilities: dict[str, list[str]] = Field(default_factory=lambda: {"*": ["*"]})
    display_name: str | None = Field(default=None, min_length=1, max_length=64)


def validation_message(exc: ValidationError) -> str:
    """A short, safe description of the first validation problem (field path and reason)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))
