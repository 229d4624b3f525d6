"""What the SDK's sans-I/O core tells its asyncio layer: one small frozen dataclass per happening.

The core (`agentchat.state`) emits these through the callable it is given; the Client turns
request events into resolved futures and hands channel events to the views listening on that
channel (subscriptions, feeds, presence, stream writers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentchat.assembly import StreamUpdate
from agentchat.chatmodels import Room
from agentchat.errors import AgentChatError, ConnectionClosed, ContinuityLost
from agentchat.models import LiveEvent, Message, Position
from agentchat.roommodels import ClaimEvent, RunUpdate


@dataclass(frozen=True, slots=True)
class Replied:
    """A caller's request (by `ref`) got its reply: an `ack`, `attached` or `detached` frame."""

    ref: int
    frame: dict[str, Any] = field(repr=False)


@dataclass(frozen=True, slots=True)
class Failed:
    """A caller's request (by `ref`) failed: refused (RequestError), its link ended (LinkGone), or the
    client stopped (ConnectionClosed)."""

    ref: int
    error: AgentChatError


@dataclass(frozen=True, slots=True)
class Ready:
    """Connected, and every wanted channel has answered its attach; `resumed` says if the session went on."""

    resumed: bool


@dataclass(frozen=True, slots=True)
class Stopped:
    """The client stopped for good (closed, or a close code after which reconnecting cannot help)."""

    error: ConnectionClosed


@dataclass(frozen=True, slots=True)
class RenewToken:
    """The server asked for a fresh token (`auth_renew`): send `auth` with one."""

    expires_at: int | None


@dataclass(frozen=True, slots=True)
class Attached:
    """The channel is attached on this connection at `position` (replayed messages run up to it)."""

    channel: str
    position: Position


@dataclass(frozen=True, slots=True)
class Delivered:
    """The channel's next durable message, in serial order, once."""

    channel: str
    message: Message


@dataclass(frozen=True, slots=True)
class Lost:
    """Continuity was lost in the channel (retention, epoch change): messages may be missing."""

    channel: str
    error: ContinuityLost


@dataclass(frozen=True, slots=True)
class Live:
    """A live-only frame of the channel: stream frames, an ephemeral message, a presence change."""

    channel: str
    event: LiveEvent


@dataclass(frozen=True, slots=True)
class PresenceChanged:
    """The channel's member set changed (a sync page or a diff was applied)."""

    channel: str


@dataclass(frozen=True, slots=True)
class RoomChanged:
    """The channel's title or topic changed (a live `room` frame); `room` has the new metadata
    (its counts are not part of the update: `members` 0, `last_serial` 0)."""

    channel: str
    room: Room


@dataclass(frozen=True, slots=True)
class StreamChanged:
    """A stream being read in the channel grew, ended, or was lost; `update` is what a reader shows now."""

    channel: str
    update: StreamUpdate


@dataclass(frozen=True, slots=True)
class ClaimChanged:
    """A message's claim changed in the channel (held, released, expired, done)."""

    channel: str
    claim: ClaimEvent


@dataclass(frozen=True, slots=True)
class RunChanged:
    """A run of the channel changed (status, state, or its end record arrived); `run` is the view now."""

    channel: str
    run: RunUpdate


@dataclass(frozen=True, slots=True)
class Ended:
    """Views of the channel end with `error`: refused or detached by the server, the client stopped,
    or (StopAsyncIteration) detached by this client."""

    channel: str
    error: BaseException


@dataclass(frozen=True, slots=True)
class WriterAcked:
    """The server confirmed more chunks of a stream this client writes."""

    channel: str
    stream_id: str


@dataclass(frozen=True, slots=True)
class WriterCancelled:
    """A member (`by`) cancelled a stream this client writes: the writer should stop producing."""

    channel: str
    stream_id: str
    by: str | None


@dataclass(frozen=True, slots=True)
class WriterFailed:
    """A stream this client writes cannot go on (its session was lost, or the server ended it)."""

    channel: str
    stream_id: str
    error: AgentChatError


@dataclass(frozen=True, slots=True)
class RunCancelledEvent:
    """A member (`by`) cancelled run `run_id`, which this client writes: its writer should stop."""

    channel: str
    run_id: str
    by: str | None


ChannelEvent = (
    Attached
    | Delivered
    | Lost
    | Live
    | PresenceChanged
    | RoomChanged
    | StreamChanged
    | ClaimChanged
    | RunChanged
    | Ended
    | WriterAcked
    | WriterCancelled
    | WriterFailed
    | RunCancelledEvent
)
"""Events that concern one channel (they carry its name); the Client routes them to its listeners."""

Event = Replied | Failed | Ready | Stopped | RenewToken | ChannelEvent
"""Everything the core emits."""
