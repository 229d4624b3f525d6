"""The wire protocol: frame models, error codes and codecs shared by the server and the SDK.

Client frames are validated here once, at the edge; everything inside the server works
with plain values. `docs/protocol.md` is the prose contract for this module.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, Self

import msgpack
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError, model_validator

PROTOCOL_VERSION = 1

# Names: a channel is "namespace:rest"; the namespace carries settings and capabilities.
CHANNEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.:@]{0,199}$"
CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-.@]{0,63}$"
MAX_SERIAL = 2**53 - 1

Serial = Annotated[int, Field(ge=0, le=MAX_SERIAL)]
Ref = Annotated[int, Field(ge=0, le=MAX_SERIAL)]
ChannelName = Annotated[str, Field(pattern=CHANNEL_PATTERN)]
MessageId = Annotated[str, Field(min_length=1, max_length=128)]
EventName = Annotated[str, Field(min_length=1, max_length=64)]
Kind = Literal["agent", "human", "system"]
StreamStatus = Literal["complete", "cancelled", "aborted"]


class Code:
    """Numeric error codes carried by `nack` and `error` frames and by REST error bodies."""

    BAD_REQUEST = 40000
    MALFORMED_FRAME = 40001
    INVALID_FRAME = 40002
    UNKNOWN_FRAME_TYPE = 40003
    INVALID_VALUE = 40004
    NOT_ATTACHED = 40005
    NOT_CONNECTED = 40006
    UNAUTHORIZED = 40100
    TOKEN_INVALID = 40101
    TOKEN_EXPIRED = 40102
    FORBIDDEN = 40300
    ORIGIN_FORBIDDEN = 40301
    NOT_FOUND = 40400
    STREAM_NOT_FOUND = 40401
    CONFLICT = 40900
    NOT_STREAM_WRITER = 40901
    ALREADY_EXISTS = 40902
    CHUNK_OUT_OF_ORDER = 40903
    FRAME_TOO_LARGE = 41300
    MESSAGE_TOO_LARGE = 41301
    STREAM_TOO_LARGE = 41302
    RATE_LIMITED = 42900
    TOO_MANY_CHANNELS = 42901
    TOO_MANY_CONNECTIONS = 42902
    TOO_MANY_STREAMS = 42903
    INTERNAL = 50000
    UNAVAILABLE = 50300
    # Continuity reasons, carried by `connected.reason` and `attached.reason`.
    SESSION_EXPIRED = 80001
    HISTORY_LOST = 80002
    EPOCH_CHANGED = 80003


class CloseCode:
    """WebSocket close codes the server uses; a client reconnects (and resumes) after all but 4003/4004."""

    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL = 1011
    PROTOCOL_ABUSE = 4002
    TOKEN_EXPIRED = 4003
    UNAUTHORIZED = 4004
    TOO_MANY_CONNECTIONS = 4005
    CONNECT_TIMEOUT = 4006
    SLOW_CONSUMER = 4008
    HEARTBEAT_TIMEOUT = 4009
    SESSION_TAKEN_OVER = 4010


class ProtocolError(Exception):
    """A client's frame or request was refused; carries the wire code and a safe message."""

    def __init__(self, code: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class _Frame(BaseModel):
    # strict: "8" is not a ref and true is not 1; a wrong type is an error, never a guess.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Position(_Frame):
    """Where a reader is in a channel: the last serial it has, in the channel's epoch."""

    serial: Serial
    epoch: str | None = Field(default=None, max_length=64)


class ResumeToken(_Frame):
    session_id: str = Field(min_length=1, max_length=64)
    key: str = Field(min_length=1, max_length=128)


class ConnectFrame(_Frame):
    type: Literal["connect"]
    token: str | None = Field(default=None, min_length=1, max_length=8192)
    resume: ResumeToken | None = None
    version: int = PROTOCOL_VERSION


class AttachFrame(_Frame):
    type: Literal["attach"]
    ref: Ref | None = None
    channel: ChannelName
    position: Position | None = None
    presence: bool = True


class DetachFrame(_Frame):
    type: Literal["detach"]
    ref: Ref | None = None
    channel: ChannelName


class OutgoingMessage(_Frame):
    """One message a client publishes."""

    data: JsonValue = None
    name: EventName = "message"
    id: MessageId | None = None
    reply_to: Serial | None = None
    ephemeral: bool = False


class _Publish(_Frame):
    """Publish bodies may carry one message inline (data/name/id/...) instead of `messages`."""

    @model_validator(mode="before")
    @classmethod
    def _single_message(cls, value: Any) -> Any:
        if isinstance(value, dict) and "messages" not in value:
            inline = {k: value[k] for k in ("data", "name", "id", "reply_to", "ephemeral") if k in value}
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
        return self


class PublishFrame(_Publish):
    type: Literal["publish"]
    ref: Ref | None = None
    channel: ChannelName
    messages: list[OutgoingMessage] = Field(min_length=1, max_length=100)
    if_serial: Serial | None = None


class HistoryFrame(_Frame):
    type: Literal["history"]
    ref: Ref
    channel: ChannelName
    before: Serial | None = None
    after: Serial | None = None
    limit: int = Field(default=50, ge=1, le=10_000)
    direction: Literal["backwards", "forwards"] = "backwards"


class PresenceFrame(_Frame):
    type: Literal["presence"]
    ref: Ref | None = None
    channel: ChannelName
    action: Literal["enter", "update", "leave"]
    data: JsonValue = None


class PresenceGetFrame(_Frame):
    type: Literal["presence_get"]
    ref: Ref
    channel: ChannelName


class OccupancyFrame(_Frame):
    type: Literal["occupancy"]
    ref: Ref
    channel: ChannelName


class StreamOpenFrame(_Frame):
    type: Literal["stream_open"]
    ref: Ref
    channel: ChannelName
    name: EventName = "message"
    id: MessageId | None = None
    reply_to: Serial | None = None
    meta: JsonValue = None
    format: Literal["text", "json"] = "text"


class StreamAppendFrame(_Frame):
    type: Literal["stream_append"]
    ref: Ref | None = None
    stream_id: str = Field(min_length=1, max_length=64)
    i: int = Field(ge=0, le=MAX_SERIAL)
    d: JsonValue


class StreamEndFrame(_Frame):
    type: Literal["stream_end"]
    ref: Ref
    stream_id: str = Field(min_length=1, max_length=64)
    status: Literal["complete", "cancelled"] = "complete"
    data: JsonValue = None
    chunks: int | None = Field(default=None, ge=0, le=MAX_SERIAL)


class StreamCancelFrame(_Frame):
    type: Literal["stream_cancel"]
    ref: Ref
    stream_id: str = Field(min_length=1, max_length=64)


class AuthFrame(_Frame):
    type: Literal["auth"]
    ref: Ref
    token: str = Field(min_length=1, max_length=8192)


class PingFrame(_Frame):
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
        | StreamCancelFrame
        | AuthFrame
        | PingFrame
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
        "stream_cancel",
        "auth",
        "ping",
    }
)
SERVER_FRAME_TYPES = frozenset(
    {
        "connected",
        "attached",
        "detached",
        "message",
        "presence",
        "presence_sync",
        "stream_open",
        "stream_chunk",
        "stream_snapshot",
        "stream_cancelled",
        "ack",
        "nack",
        "error",
        "heartbeat",
        "auth_renew",
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


def validation_message(exc: ValidationError) -> str:
    """A short, safe description of the first validation problem (field path and reason)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    return f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid"))


# --- codecs --------------------------------------------------------------------------------

Format = Literal["json", "msgpack"]
FORMATS: tuple[Format, ...] = ("json", "msgpack")

_json_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode(frame: dict[str, Any], fmt: Format) -> bytes:
    """Encode one frame for the wire: UTF-8 JSON text or msgpack bytes."""
    if fmt == "json":
        return _json_encoder.encode(frame).encode()
    return msgpack.packb(frame, use_bin_type=True)  # type: ignore[no-any-return]


def decode(payload: bytes | str, fmt: Format) -> Any:
    """Decode one wire frame to plain values; raises ProtocolError(MALFORMED_FRAME) on garbage."""
    try:
        if fmt == "json":
            value = json.loads(payload, parse_constant=_reject_constant)
            # Only a \\u escape can smuggle a lone surrogate into a JSON string.
            if (
                ("\\ud" in payload or "\\uD" in payload)
                if isinstance(payload, str)
                else (b"\\ud" in payload or b"\\uD" in payload)
            ):
                _check_unicode(value)
            return value
        if isinstance(payload, str):
            raise ProtocolError(Code.MALFORMED_FRAME, "msgpack connections send binary frames")
        return msgpack.unpackb(payload, raw=False, strict_map_key=True)
    except ProtocolError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ProtocolError(Code.MALFORMED_FRAME, f"cannot decode {fmt} frame") from exc
    except RecursionError as exc:
        raise ProtocolError(Code.MALFORMED_FRAME, "frame nested too deeply") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _check_unicode(value: Any) -> None:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except UnicodeEncodeError as exc:
        ref = value.get("ref") if isinstance(value, dict) else None
        details = {"ref": ref} if type(ref) is int and 0 <= ref <= MAX_SERIAL else {}
        raise ProtocolError(
            Code.INVALID_VALUE, "strings must be valid unicode (lone surrogate)", **details
        ) from exc


_LONG_INT = re.compile(r"\d{19,}")
INT_MIN, INT_MAX = -(2**63), 2**64 - 1


def encode_value(value: Any) -> str:
    """JSON text of client-supplied data, refused (INVALID_VALUE) unless it is portable:
    finite numbers, integers that fit in 64 bits, valid unicode."""
    try:
        text = _json_encoder.encode(value)
    except ValueError as exc:
        raise ProtocolError(Code.INVALID_VALUE, "numbers must be finite (no NaN or Infinity)") from exc
    if _LONG_INT.search(text) is not None:
        _check_ints(value)
    return text


def _check_ints(value: Any) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise ProtocolError(Code.INVALID_VALUE, "integers must fit in 64 bits")
    elif isinstance(value, dict):
        for item in value.values():
            _check_ints(item)
    elif isinstance(value, list):
        for item in value:
            _check_ints(item)
