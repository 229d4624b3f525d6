"""The shared parts of a node, chosen by URL: what must outlive a node lives in the Store and in Redis.

`bus = local`: one process; the bus, presence and open streams are in memory.
`bus = redis://host:port/db?prefix=agentchat`: several processes; the bus (pub/sub), presence
(entries with TTLs) and open streams' chunks live in that Redis, under the prefix. The Store
(SQLite or PostgreSQL) holds history, stream ownership (leases) and positions either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

from agentchat_server.bus import Bus, LocalBus
from agentchat_server.presence import LocalPresence, Presence
from agentchat_server.settings import Settings
from agentchat_server.store import Store
from agentchat_server.streambuf import LocalStreamBuffer, StreamBuffer


@dataclass
class Backends:
    """The Store and the shared live state of one node; `close` releases what they hold."""

    store: Store
    bus: Bus
    presence: Presence
    streams: StreamBuffer
    clustered: bool
    redis: Any = None

    async def start(self) -> None:
        """Start background writers (Redis); the Store and the Bus are opened by the broker."""
        start = getattr(self.streams, "start", None)
        if start is not None:
            start()

    async def close(self) -> None:
        """Stop writers and close the Redis connections."""
        stop = getattr(self.streams, "stop", None)
        if stop is not None:
            await stop()
        if self.redis is not None:
            await self.redis.aclose()


def make_backends(settings: Settings) -> Backends:
    """Build the Store and the live backends for the settings' URLs."""
    from agentchat_server.store import make_store

    store = make_store(settings.db)
    url = settings.bus
    if url == "local":
        return Backends(store, LocalBus(), LocalPresence(), LocalStreamBuffer(), clustered=False)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"unsupported bus {url!r}: use 'local' or redis://")
    from redis.asyncio import Redis

    from agentchat_server.bus.redis import RedisBus
    from agentchat_server.presence.redis import RedisPresence
    from agentchat_server.streambuf.redis import RedisStreamBuffer

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    prefix = query.pop("prefix", ["agentchat"])[0]
    redis = Redis.from_url(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    presence_ttl = int(settings.presence_ttl * 1000)
    stream_ttl = int(max(settings.stream_grace * 4, 60))
    return Backends(
        store,
        RedisBus(redis, prefix),
        RedisPresence(redis, prefix, presence_ttl),
        RedisStreamBuffer(redis, prefix, stream_ttl),
        clustered=True,
        redis=redis,
    )
