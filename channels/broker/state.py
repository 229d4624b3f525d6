"""The broker's live records: connections, sessions, attachments and per-channel state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.core.ordering import Cursor
from agentchat_server.core.presence import PresenceSet
from agentchat_server.core.ratelimit import TokenBucket
from agentchat_server.core.streams import Stream
from agentchat_server.outbox import Encoded, Outbox
from agentchat_server.protocol import Format


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every `ts` on the wire."""
    return int(time.time() * 1000)


class Connection:
    """One live transport (a WebSocket or an SSE response) of a session."""

    __slots__ = (
        "attachments",
        "bad_frames",
        "closed",
        "closer",
        "fmt",
        "hb_bytes",
        "hb_since",
        "identity",
        "last_recv",
        "outbox",
        "publish_bucket",
        "renew_sent",
        "session",
        "sse",
        "sse_epoch",
    )

    def __init__(
        self,
        identity: Identity,
        fmt: Format,
        outbox: Outbox,
        closer: Callable[[int, str], None],
        now: float,
        sse: bool = False,
    ) -> None:
        self.identity = identity
        self.fmt: Format = fmt
        self.outbox = outbox
        self.closer = closer
        # Made on first use: most connections never publish and never send a bad frame.
        self.publish_bucket: TokenBucket | None = None
        self.bad_frames: TokenBucket | None = None
        self.session: Session | None = None
        self.attachments: dict[str, Attachment] = {}
        self.closed = False
        self.last_recv = now
        self.hb_bytes = 0
        self.hb_since = now
        self.renew_sent = False
        self.sse = sse
        self.sse_epoch = ""

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame for this connection alone."""
        if self.sse:
            frame = _sse_translate(frame)  # type: ignore[assignment]
            if frame is None:
                return
        self.deliver(Encoded(frame))

    def deliver(self, event: Encoded, serial: int | None = None, epoch: str = "") -> None:
        if self.sse:
            self.outbox.push(event.sse(f"{epoch}:{serial}" if serial is not None else None))
        else:
            self.outbox.push(event.ws(self.fmt))

    def close(self, code: int, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.closer(code, reason)


@dataclass(slots=True)
class Attachment:
    """A connection's attachment to one channel: its delivery cursor and presence wish."""

    connection: Connection
    cursor: Cursor
    presence: bool
    fill: asyncio.Task[None] | None = None


_NONE: frozenset[str] = frozenset()


class Session:
    """A client's identity across reconnects: presence entries and streams belong to it.

    Idle sessions are the common case, so their sets start as one shared empty frozenset."""

    __slots__ = (
        "channels",
        "client_id",
        "connection",
        "key",
        "kind",
        "presence",
        "session_id",
        "streams",
        "timers",
    )

    def __init__(self, session_id: str, key: str, client_id: str, kind: str) -> None:
        self.session_id = session_id
        self.key = key
        self.client_id = client_id
        self.kind = kind
        self.connection: Connection | None = None
        self.presence: set[str] | frozenset[str] = _NONE  # channels where it is present
        self.streams: set[str] | frozenset[str] = _NONE  # stream ids it writes
        self.channels: tuple[str, ...] = ()  # channels attached when it last dropped (a hint on resume)
        self.timers: list[asyncio.TimerHandle] = []

    def add_presence(self, channel: str) -> None:
        if not isinstance(self.presence, set):
            self.presence = set()
        self.presence.add(channel)

    def drop_presence(self, channel: str) -> None:
        if channel in self.presence:
            self.presence = self.presence - {channel}

    def add_stream(self, stream_id: str) -> None:
        if not isinstance(self.streams, set):
            self.streams = set()
        self.streams.add(stream_id)

    def drop_stream(self, stream_id: str) -> None:
        if stream_id in self.streams:
            self.streams = self.streams - {stream_id}

    def cancel_timers(self) -> None:
        for timer in self.timers:
            timer.cancel()
        if self.timers:
            self.timers = []


@dataclass(slots=True)
class ChannelState:
    """What this node knows and serves of one channel."""

    name: str
    epoch: str
    head: int  # last serial known committed
    first_serial: int
    subscribers: dict[Connection, Attachment] = field(default_factory=dict)
    presence: PresenceSet = field(default_factory=PresenceSet)
    streams: dict[str, Stream] = field(default_factory=dict)
    reserved_ids: set[str] = field(default_factory=set)  # message ids of streams being opened
    # Live frames of this loop tick awaiting the flush pass, with their presence-only flag.
    live: list[tuple[Encoded, bool]] = field(default_factory=list)

    def idle(self) -> bool:
        return not self.subscribers and not len(self.presence) and not self.streams and not self.reserved_ids


def _sse_translate(frame: dict[str, Any]) -> dict[str, Any] | None:
    """SSE has no replies: `attached` becomes a `reset` event when continuity was lost."""
    kind = frame.get("type")
    if kind == "attached":
        if frame.get("resumed", True):
            return None
        reason = frame.get("reason") or {}
        return {
            "type": "reset",
            "code": reason.get("code"),
            "message": reason.get("message"),
            "position": frame["position"],
        }
    if kind in ("connected", "ack", "nack", "auth_renew", "heartbeat"):
        return None
    return frame
