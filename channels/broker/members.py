"""Presence of this node's sessions: enter, update, leave, snapshots in byte-bounded pages.

Entries live behind the Presence port (in memory on one node, in Redis across nodes). Each entry
belongs to one session (its connection id is the session id, stable across resumes); this node
refreshes the entries of its own sessions, and removes entries whose node stopped refreshing them
(leaves broadcast once, by whichever node removed them). Updates are rate limited per connection
and per client id; entry data is bounded in bytes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.core.presence import ENTRY_OVERHEAD, Diff, Member
from agentchat_server.core.ratelimit import KeyedBuckets, TokenBucket
from agentchat_server.presence import Presence
from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)

PublishLive = Callable[..., None]
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


def now_ms() -> int:
    """Wall-clock milliseconds, the unit of every `ts` on the wire."""
    return int(time.time() * 1000)


class Members:
    """Presence entries, by channel; this node's own by session."""

    def __init__(
        self,
        settings: Settings,
        registry: ChannelRegistry,
        presence: Presence,
        publish_live: PublishLive,
        spawn: Spawn,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.presence = presence
        self.publish_live = publish_live
        self.spawn = spawn
        self._present: dict[str, set[str]] = {}  # session id -> channels where it has an entry
        self._per_client = KeyedBuckets(settings.presence_client_rate, settings.presence_client_burst)

    async def update(
        self, conn: Connection, name: str, action: str, data: Any, replaces: str | None = None
    ) -> None:
        """Apply a client's `presence` frame (enter, update or leave); raises ProtocolError.

        `replaces` names an entry this client held on a session it lost (its node died): it
        leaves now instead of lapsing later, so the client is not listed twice."""
        conn.identity.require(name, "presence")
        session_id = conn.session_id
        if session_id is None or name not in conn.attachments:
            raise ProtocolError(Code.NOT_ATTACHED, f"attach {name} before entering its presence")
        if action == "leave":
            await self.leave(session_id, name)
            return
        self._spend(conn)
        limit = self.settings.max_presence_bytes
        data_json = encode_value(data)
        size = encoded_size(data, data_json, limit)
        if size > limit:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, f"presence data exceeds {limit} bytes")
        identity = conn.identity
        if replaces is not None and replaces != session_id:
            await self._replace(name, replaces, identity.client_id)
        member = Member(
            identity.client_id,
            session_id,
            identity.kind,
            data,
            now_ms(),
            size + ENTRY_OVERHEAD,
            identity.display_name,
        )
        self._present.setdefault(session_id, set()).add(name)
        diff = await self.presence.enter(name, member)
        if diff is not None:
            self._broadcast(name, diff)

    async def _replace(self, name: str, old: str, client_id: str) -> None:
        found = await self.presence.member(name, old)
        if found is not None and found.client_id == client_id:
            diff = await self.presence.leave(name, old, now_ms())
            if diff is not None:
                self._broadcast(name, diff)

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

    async def leave(self, session_id: str, name: str) -> None:
        """The session's entry in `name` leaves (if it has one)."""
        channels = self._present.get(session_id)
        if channels is None or name not in channels:
            return
        channels.discard(name)
        if not channels:
            del self._present[session_id]
        diff = await self.presence.leave(name, session_id, now_ms())
        if diff is not None:
            self._broadcast(name, diff)
        ch = self.registry.get(name)
        if ch is not None:
            self.registry.forget_if_idle(ch)

    def leave_all(self, session_id: str) -> None:
        """Every entry of a session leaves (it ended, or its grace ran out); done in the background."""
        names = list(self._present.get(session_id, ()))
        if names:
            self.spawn(self._leave_all(session_id, names), "presence-leave")

    async def _leave_all(self, session_id: str, names: list[str]) -> None:
        for name in names:
            try:
                await self.leave(session_id, name)
            except Exception as exc:
                log.warning("presence leave of %s in %s failed: %s", session_id, name, exc)

    async def leave_everyone(self) -> None:
        """Shutting down: every entry of this node's sessions leaves now (not after a TTL)."""
        for session_id, names in list(self._present.items()):
            await self._leave_all(session_id, list(names))

    def present(self, session_id: str, name: str) -> bool:
        """True while the session has an entry in the channel."""
        return name in self._present.get(session_id, ())

    def _broadcast(self, name: str, diff: Diff) -> None:
        frame = frames.presence(name, diff.action, diff.member.to_wire())
        self.publish_live(name, frame, presence=True)

    async def count(self, name: str) -> int:
        """Entries in the channel, on every node."""
        return await self.presence.count(name)

    async def sync_pages(self, name: str) -> list[frames.Frame]:
        """The snapshot an attach sends: `presence_sync` pages, each bounded by count and bytes."""
        s = self.settings
        pages: list[frames.Frame] = []
        after: str | None = None
        while True:
            members, more = await self.presence.page(name, after, s.presence_page_size, s.max_page_bytes)
            pages.append(frames.presence_sync(name, [m.to_wire() for m in members], not more))
            if not more or not members:
                return pages
            after = members[-1].connection_id

    async def get(self, identity: Identity, name: str, after: str | None) -> dict[str, Any]:
        """One page of the channel's entries after connection id `after`: `members`, `has_more`
        and, when more follow, `next` (the `after` of the next page)."""
        identity.require(name, "subscribe")
        s = self.settings
        members, more = await self.presence.page(name, after, s.presence_page_size, s.max_page_bytes)
        reply: dict[str, Any] = {"members": [m.to_wire() for m in members], "has_more": more}
        if more and members:
            reply["next"] = members[-1].connection_id
        return reply

    async def refresh(self) -> None:
        """Keep this node's entries alive (called well within the presence TTL)."""
        entries = [(name, sid) for sid, names in self._present.items() for name in names]
        if entries:
            await self.presence.refresh(entries, int(self.settings.presence_ttl * 1000), now_ms())

    async def expire(self, names: list[str]) -> None:
        """Remove lapsed entries (their node died) in these channels and broadcast their leaves."""
        now = now_ms()
        for name in names:
            for diff in await self.presence.expire(name, now):
                self._broadcast(name, diff)
