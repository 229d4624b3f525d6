"""Presence of this node's sessions: enter, update, leave, snapshots in byte-bounded pages.

Each entry belongs to one session (its connection id is the session id, stable across resumes).
Diffs go out on the bus as live frames for readers that asked for presence. Updates are rate
limited per connection and per client id, and entry data is bounded in bytes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.registry import ChannelRegistry, ChannelState
from agentchat_server.core.presence import ENTRY_OVERHEAD, Diff
from agentchat_server.core.ratelimit import KeyedBuckets, TokenBucket
from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings

PublishLive = Callable[..., None]


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every `ts` on the wire."""
    return int(time.time() * 1000)


class Members:
    """Presence entries of this node's sessions, by channel."""

    def __init__(self, settings: Settings, registry: ChannelRegistry, publish_live: PublishLive) -> None:
        self.settings = settings
        self.registry = registry
        self.publish_live = publish_live
        self._present: dict[str, set[str]] = {}  # session id -> channels where it has an entry
        self._per_client = KeyedBuckets(settings.presence_client_rate, settings.presence_client_burst)

    def update(self, conn: Connection, name: str, action: str, data: Any) -> None:
        """Apply a client's `presence` frame (enter, update or leave); raises ProtocolError."""
        conn.identity.require(name, "presence")
        session_id = conn.session_id
        if session_id is None or name not in conn.attachments:
            raise ProtocolError(Code.NOT_ATTACHED, f"attach {name} before entering its presence")
        if action == "leave":
            self.leave(session_id, name)
            return
        self._spend(conn)
        limit = self.settings.max_presence_bytes
        data_json = encode_value(data)
        size = encoded_size(data, data_json, limit)
        if size > limit:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, f"presence data exceeds {limit} bytes")
        ch = self.registry.require(name)
        identity = conn.identity
        diff = ch.presence.enter(
            identity.client_id,
            session_id,
            identity.kind,
            data,
            now_ms(),
            size + ENTRY_OVERHEAD,
            identity.display_name,
        )
        self._present.setdefault(session_id, set()).add(name)
        if diff is not None:
            self._broadcast(ch, diff)

    def _spend(self, conn: Connection) -> None:
        now = time.monotonic()
        s = self.settings
        bucket = conn.presence_bucket
        if bucket is None:
            bucket = conn.presence_bucket = TokenBucket(s.presence_rate, s.presence_burst, now)
        wait = 0.0 if bucket.take(now) else bucket.retry_after()
        if not wait:
            wait = self._per_client.take(conn.client_id, now)
        if wait:
            raise ProtocolError(
                Code.RATE_LIMITED, "presence update rate exceeded", retry_after=round(wait, 3)
            )

    def leave(self, session_id: str, name: str) -> None:
        """The session's entry in `name` leaves (if it has one)."""
        channels = self._present.get(session_id)
        if channels is None or name not in channels:
            return
        channels.discard(name)
        if not channels:
            del self._present[session_id]
        ch = self.registry.get(name)
        if ch is None:
            return
        diff = ch.presence.leave(session_id, now_ms())
        if diff is not None:
            self._broadcast(ch, diff)
        self.registry.forget_if_idle(ch)

    def leave_all(self, session_id: str) -> None:
        """Every entry of a session leaves (it ended, or its grace ran out)."""
        for name in list(self._present.get(session_id, ())):
            self.leave(session_id, name)

    def _broadcast(self, ch: ChannelState, diff: Diff) -> None:
        self.publish_live(
            ch.name, frames.presence(ch.name, diff.action, diff.member.to_wire()), presence=True
        )

    def count(self, ch: ChannelState) -> int:
        """Entries in the channel."""
        return len(ch.presence)

    def sync_pages(self, ch: ChannelState) -> list[frames.Frame]:
        """The snapshot an attach sends: `presence_sync` pages, each bounded by count and bytes."""
        s = self.settings
        return [
            frames.presence_sync(ch.name, [m.to_wire() for m in members], last)
            for members, last in ch.presence.pages(s.presence_page_size, s.max_page_bytes)
        ]

    def get(self, identity: Identity, name: str, after: str | None) -> dict[str, Any]:
        """One page of the channel's entries after connection id `after`: `members`, `has_more`
        and, when more follow, `next` (the `after` of the next page)."""
        identity.require(name, "subscribe")
        ch = self.registry.get(name)
        if ch is None:
            return {"members": [], "has_more": False}
        s = self.settings
        members, more = ch.presence.page(after, s.presence_page_size, s.max_page_bytes)
        reply: dict[str, Any] = {"members": [m.to_wire() for m in members], "has_more": more}
        if more:
            reply["next"] = members[-1].connection_id
        return reply
