"""The Presence port: who is in each channel, shared by every node that serves it.

Entries are keyed by connection id (the session id). A node refreshes the entries of its own
sessions; an entry whose node stopped refreshing it (a dead node) lapses after the TTL, and the
`expire` of any node removes it and wins its `leave` diff exactly once.

Adapters: `LocalPresence` (one process, in memory) and `RedisPresence` (several processes).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from agentchat_server.core.presence import Diff, Member, PresenceSet


class Presence(Protocol):
    """Presence entries of every channel."""

    async def enter(self, channel: str, member: Member) -> Diff | None:
        """Enter or update `member`; the diff to broadcast, or None when nothing changed."""

    async def leave(self, channel: str, connection_id: str, ts: int) -> Diff | None:
        """Remove an entry; the `leave` diff (with its last data) if it was there."""

    async def page(
        self, channel: str, after: str | None, count: int, max_bytes: int
    ) -> tuple[list[Member], bool]:
        """Entries after connection id `after`, in connection-id order, within both bounds; and
        whether more follow."""

    async def count(self, channel: str) -> int:
        """Entries in the channel."""

    async def member(self, channel: str, connection_id: str) -> Member | None:
        """One entry, if present."""

    async def refresh(self, entries: Iterable[tuple[str, str]], ttl_ms: int, now_ms: int) -> None:
        """Keep these (channel, connection id) entries alive for another `ttl_ms`."""

    async def expire(self, channel: str, now_ms: int) -> list[Diff]:
        """Remove the channel's entries whose TTL lapsed; the `leave` diffs this call won."""

    async def close(self) -> None:
        """Release connections."""


class LocalPresence:
    """One process: a PresenceSet per channel. Entries never lapse: the node's own grace timers
    remove them when their sessions go."""

    def __init__(self) -> None:
        self._sets: dict[str, PresenceSet] = {}

    async def enter(self, channel: str, member: Member) -> Diff | None:
        """Enter or update `member`."""
        found = self._sets.get(channel)
        if found is None:
            found = self._sets[channel] = PresenceSet()
        return found.enter(
            member.client_id,
            member.connection_id,
            member.kind,
            member.data,
            member.ts,
            member.size,
            member.display_name,
        )

    async def leave(self, channel: str, connection_id: str, ts: int) -> Diff | None:
        """Remove an entry."""
        found = self._sets.get(channel)
        if found is None:
            return None
        diff = found.leave(connection_id, ts)
        if not len(found):
            del self._sets[channel]
        return diff

    async def page(
        self, channel: str, after: str | None, count: int, max_bytes: int
    ) -> tuple[list[Member], bool]:
        """One page of entries."""
        found = self._sets.get(channel)
        return ([], False) if found is None else found.page(after, count, max_bytes)

    async def count(self, channel: str) -> int:
        """Entries in the channel."""
        found = self._sets.get(channel)
        return 0 if found is None else len(found)

    async def member(self, channel: str, connection_id: str) -> Member | None:
        """One entry, if present."""
        found = self._sets.get(channel)
        return None if found is None else found.get(connection_id)

    async def refresh(self, entries: Iterable[tuple[str, str]], ttl_ms: int, now_ms: int) -> None:
        """Nothing lapses in one process."""

    async def expire(self, channel: str, now_ms: int) -> list[Diff]:
        """Nothing lapses in one process."""
        return []

    async def close(self) -> None:
        """Nothing to release."""
