"""RedisBus: fan-out across server processes over Redis pub/sub (one Redis channel per watched channel).

Events from this node are handled locally at once and skipped when Redis echoes them back.
Redis pub/sub is at-most-once: a node that misses a durable message sees a serial gap and its
readers fill it from the shared Store, so ordering and completeness do not depend on Redis.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from agentchat_server.bus import BusEvent, Handler
from agentchat_server.core.records import Message

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # events waiting to be sent to Redis; beyond this the oldest are dropped


class RedisBus:
    """`redis://host:port/db?prefix=agentchat`: the prefix separates deployments sharing a Redis."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qs(parts.query)
        self.prefix = query.pop("prefix", ["agentchat"])[0]
        self.url = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
        self.origin = secrets.token_hex(6)
        self._handler: Handler | None = None
        self._redis: Redis | None = None
        self._pubsub: PubSub | None = None
        self._outgoing: deque[tuple[str, bytes]] = deque(maxlen=MAX_QUEUED)
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._watched: set[str] = set()
        self._subscribed = asyncio.Event()
        self.dropped = 0

    def _key(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    async def start(self, handler: Handler) -> None:
        """Connect to Redis and deliver events to `handler` from now on."""
        self._handler = handler
        self._redis = Redis.from_url(self.url)
        await self._redis.ping()
        self._pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        # A placeholder subscription so the reader has a connection from the start.
        await self._pubsub.subscribe(f"{self.prefix}:node:{self.origin}")
        self._tasks = [
            asyncio.create_task(self._read(), name="redisbus-read"),
            asyncio.create_task(self._write(), name="redisbus-write"),
        ]

    async def stop(self) -> None:
        """Stop reading and writing and close the Redis connections."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            await self._pubsub.aclose()  # type: ignore[no-untyped-call]
        if self._redis is not None:
            await self._redis.aclose()
        self._handler = None

    def publish(self, event: BusEvent) -> None:
        """Handle the event here at once and queue it for the other nodes (oldest dropped when full)."""
        if self._handler is not None:
            self._handler(event)
        if len(self._outgoing) == self._outgoing.maxlen:
            self.dropped += 1  # receivers fill durable gaps from the Store
        self._outgoing.append((self._key(event.channel), _pack(event, self.origin)))
        self._wake.set()

    def watch(self, channel: str) -> None:
        """Subscribe to the channel (in the background; `ready` waits for it)."""
        if channel not in self._watched:
            self._watched.add(channel)
            asyncio.get_running_loop().create_task(self._subscribe(channel, True))

    def unwatch(self, channel: str) -> None:
        """Unsubscribe from the channel (in the background)."""
        if channel in self._watched:
            self._watched.discard(channel)
            asyncio.get_running_loop().create_task(self._subscribe(channel, False))

    async def _subscribe(self, channel: str, on: bool) -> None:
        if self._pubsub is None:
            return
        try:
            if on:
                await self._pubsub.subscribe(self._key(channel))
            else:
                await self._pubsub.unsubscribe(self._key(channel))
        except Exception:
            log.exception("redis (un)subscribe of %s failed", channel)

    async def ready(self, channel: str) -> None:
        """Return once Redis has confirmed this node's subscription to the channel."""
        if self._pubsub is None:
            return
        key = self._key(channel).encode()
        async with asyncio.timeout(5.0):
            # redis-py records the confirmation but offers no event for it.
            while key not in self._pubsub.channels:  # noqa: ASYNC110
                await asyncio.sleep(0.002)

    async def _write(self) -> None:
        assert self._redis is not None
        while True:
            if not self._outgoing:
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._outgoing.popleft() for _ in range(min(500, len(self._outgoing)))]
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key, payload in batch:
                        pipe.publish(key, payload)
                    await pipe.execute()
            except Exception as exc:
                self.dropped += len(batch)
                log.warning("redis publish failed (%s); %d events dropped", exc, len(batch))
                await asyncio.sleep(0.5)

    async def _read(self) -> None:
        assert self._pubsub is not None
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscription failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            if message is None or message.get("type") != "message":
                continue
            try:
                origin, event = _unpack(message["data"])
            except Exception:
                log.warning("undecodable bus event ignored")
                continue
            if origin != self.origin and self._handler is not None:
                try:
                    self._handler(event)
                except Exception:
                    log.exception("bus event handler failed")


def _pack(event: BusEvent, origin: str) -> bytes:
    body: dict[str, Any] = {"c": event.channel, "o": origin, "e": event.epoch, "p": event.presence}
    if event.messages is not None:
        body["m"] = [m.to_tuple() for m in event.messages]
    if event.frame is not None:
        body["f"] = event.frame
    return msgpack.packb(body, use_bin_type=True)  # type: ignore[no-any-return]


def _unpack(data: bytes) -> tuple[str, BusEvent]:
    """The origin node and the event of a bus payload; raises on a malformed one."""
    body = msgpack.unpackb(data, raw=False)
    messages = None
    if "m" in body:
        messages = [Message.from_tuple(m) for m in body["m"]]
    event = BusEvent(
        body["c"],
        messages=messages,
        frame=body.get("f"),
        epoch=body.get("e", ""),
        presence=bool(body.get("p")),
    )
    return str(body["o"]), event
