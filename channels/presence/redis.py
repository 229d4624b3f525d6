"""RedisPresence: presence entries in Redis, shared by every node, lapsing when their node dies.

Per channel: a hash of entries (connection id -> JSON), a sorted set of their expiry times, and a
sorted set of their ids (all scores 0: lexical order, for stable paging). The node holding an
entry refreshes its expiry; `expire` removes lapsed entries, and only the call whose ZREM took
the entry out reports its `leave`, so each leave is broadcast once across nodes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from redis.asyncio import Redis

from agentchat_server.core.presence import Diff, Member


def _encode(member: Member) -> str:
    return json.dumps(
        [member.client_id, member.kind, member.data, member.ts, member.size, member.display_name],
        ensure_ascii=False,
        separators=(",", ":"),
    )


def _decode(connection_id: str, raw: bytes | str) -> Member:
    client_id, kind, data, ts, size, display_name = json.loads(raw)
    return Member(client_id, connection_id, kind, data, ts, size, display_name)


class RedisPresence:
    """The Presence port on Redis; `prefix` separates deployments sharing one Redis."""

    def __init__(self, redis: Redis, prefix: str, ttl_ms: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = ttl_ms

    def _keys(self, channel: str) -> tuple[str, str, str]:
        base = f"{self.prefix}:pres:{channel}"
        return base, base + ":exp", base + ":ids"

    async def enter(self, channel: str, member: Member) -> Diff | None:
        """Enter or update `member` (its TTL starts now)."""
        entries, expiry, ids = self._keys(channel)
        cid = member.connection_id
        old = await self.redis.hget(entries, cid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zadd(expiry, {cid: member.ts + self.ttl_ms})
            if old is None or _decode(cid, old).data != member.data:
                pipe.hset(entries, cid, _encode(member))
                pipe.zadd(ids, {cid: 0})
            await pipe.execute()
        if old is None:
            return Diff("enter", member)
        if _decode(cid, old).data == member.data:
            return None
        return Diff("update", member)

    async def leave(self, channel: str, connection_id: str, ts: int) -> Diff | None:
        """Remove an entry; the leave diff only if this call removed it."""
        return await self._remove(channel, connection_id, ts)

    async def _remove(self, channel: str, cid: str, ts: int) -> Diff | None:
        entries, expiry, ids = self._keys(channel)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hget(entries, cid)
            pipe.hdel(entries, cid)
            pipe.zrem(expiry, cid)
            pipe.zrem(ids, cid)
            old, removed, _, _ = await pipe.execute()
        if not removed or old is None:
            return None
        member = _decode(cid, old)
        member.ts = ts
        return Diff("leave", member)

    async def page(
        self, channel: str, after: str | None, count: int, max_bytes: int
    ) -> tuple[list[Member], bool]:
        """One page of entries in connection-id order."""
        entries, _, ids = self._keys(channel)
        low = "-" if after is None else f"({after}"
        wanted: list[Any] = await self.redis.zrangebylex(ids, low, "+", start=0, num=count + 1)
        if not wanted:
            return [], False
        names = [w.decode() if isinstance(w, bytes) else str(w) for w in wanted[:count]]
        raws = await self.redis.hmget(entries, names)
        out: list[Member] = []
        size = 0
        for cid, raw in zip(names, raws, strict=True):
            if raw is None:
                continue  # left between the two reads
            member = _decode(cid, raw)
            if out and size + member.size > max_bytes:
                return out, True
            out.append(member)
            size += member.size
        return out, len(wanted) > count

    async def count(self, channel: str) -> int:
        """Entries in the channel."""
        return int(await self.redis.zcard(self._keys(channel)[2]))

    async def member(self, channel: str, connection_id: str) -> Member | None:
        """One entry, if present."""
        raw = await self.redis.hget(self._keys(channel)[0], connection_id)
        return None if raw is None else _decode(connection_id, raw)

    async def refresh(self, entries: Iterable[tuple[str, str]], ttl_ms: int, now_ms: int) -> None:
        """Push the expiry of these entries to now + ttl (only entries still present)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            queued = 0
            for channel, cid in entries:
                pipe.zadd(self._keys(channel)[1], {cid: now_ms + ttl_ms}, xx=True)
                queued += 1
            if queued:
                await pipe.execute()

    async def expire(self, channel: str, now_ms: int) -> list[Diff]:
        """Remove lapsed entries; the leaves this call won."""
        lapsed = await self.redis.zrangebyscore(self._keys(channel)[1], "-inf", now_ms)
        diffs = []
        for raw in lapsed:
            cid = raw.decode() if isinstance(raw, bytes) else str(raw)
            diff = await self._remove(channel, cid, now_ms)
            if diff is not None:
                diffs.append(diff)
        return diffs

    async def close(self) -> None:
        """The Redis client belongs to the node's backends; nothing of ours to release."""
