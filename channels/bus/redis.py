"""RedisBus: fan-out across server processes over Redis pub/sub (one Redis channel per watched channel).

Events from this node are handled locally at once and skipped when Redis echoes them back.
Redis pub/sub is at-most-once: a node that misses a durable message sees a serial gap and fills
it from the shared Store; after the subscription connection is lost and comes back, the node is
told (`on_lost`) so it checks every channel it serves against the Store at once.
Subscriptions are retried with backoff; `ready` says plainly when one cannot be made in time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
from typing import Any

import msgpack
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from agentchat_server.bus import BusEvent, Handler
from agentchat_server.core.records import Message
from agentchat_server.protocol import Code, ProtocolError

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # events waiting to be sent to Redis; beyond this the oldest are dropped
READY_TIMEOUT = 5.0  # seconds an attach waits for its channel's subscription
RETRY_MAX = 5.0  # longest pause between subscription retries


class RedisBus:
    """The Bus port on Redis; `prefix` separates deployments sharing a Redis."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.redis = redis
        self.prefix = prefix
        self.origin = secrets.token_hex(6)
        self._handler: Handler | None = None
        self._on_lost: Callable[[], None] = _nothing
        self._pubsub: PubSub | None = None
        self._outgoing: deque[tuple[str, bytes]] = deque(maxlen=MAX_QUEUED)
        self._wake = asyncio.Event()
        self._sent = asyncio.Event()
        self._sent.set()
        self._tasks: list[asyncio.Task[None]] = []
        self._watched: set[str] = set()
        self._subscribed: dict[str, asyncio.Event] = {}
        self._changes = asyncio.Event()
        self.dropped = 0

    def _key(self, channel: str) -> str:
        return f"{self.prefix}:ch:{channel}"

    async def start(self, handler: Handler, on_lost: Callable[[], None] = lambda: None) -> None:
        """Connect and deliver events to `handler`; `on_lost` is called when events may have been lost."""
        self._handler = handler
        self._on_lost = on_lost
        await self.redis.ping()
        self._pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
        # A subscription of our own, so the reader holds a connection from the start.
        await self._pubsub.subscribe(f"{self.prefix}:node:{self.origin}")
        self._tasks = [
            asyncio.create_task(self._read(), name="redisbus-read"),
            asyncio.create_task(self._write(), name="redisbus-write"),
            asyncio.create_task(self._subscriptions(), name="redisbus-subscribe"),
        ]

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Send what is queued (for at most `flush_timeout` seconds), then disconnect."""
        try:
            async with asyncio.timeout(flush_timeout):
                await self._sent.wait()
        except TimeoutError:
            log.warning("redis bus: %d events not sent at shutdown", len(self._outgoing))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._pubsub is not None:
            try:
                async with asyncio.timeout(flush_timeout):
                    await self._pubsub.aclose()  # type: ignore[no-untyped-call]
            except Exception as exc:
                log.debug("closing the redis subscription failed: %s", exc)
        self._handler = None

    def publish(self, event: BusEvent) -> None:
        """Handle the event here at once and queue it for the other nodes (oldest dropped when full)."""
        if self._handler is not None:
            self._handler(event)
        if len(self._outgoing) == self._outgoing.maxlen:
            self.dropped += 1  # receivers fill durable gaps from the Store
        self._outgoing.append((self._key(event.channel), _pack(event, self.origin)))
        self._sent.clear()
        self._wake.set()

    def watch(self, channel: str) -> None:
        """Subscribe to the channel (retried in the background until it holds; `ready` waits)."""
        if channel not in self._watched:
            self._watched.add(channel)
            self._subscribed.setdefault(channel, asyncio.Event())
            self._changes.set()

    def unwatch(self, channel: str) -> None:
        """Unsubscribe from the channel (in the background)."""
        if channel in self._watched:
            self._watched.discard(channel)
            self._changes.set()

    async def ready(self, channel: str) -> None:
        """Return once Redis confirmed the subscription; ProtocolError(50300) if it cannot in time."""
        if self._pubsub is None:
            return
        event = self._subscribed.setdefault(channel, asyncio.Event())
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await event.wait()
        except TimeoutError:
            raise ProtocolError(Code.UNAVAILABLE, "the bus is unavailable; retry") from None

    async def _subscriptions(self) -> None:
        """Make Redis's subscriptions follow the watched set, retrying with backoff on failure."""
        assert self._pubsub is not None
        pause = 0.05
        while True:
            await self._changes.wait()
            self._changes.clear()
            wanted = set(self._watched)
            have = {c for c, e in self._subscribed.items() if e.is_set()}
            try:
                add = sorted(wanted - have)
                drop = sorted(have - wanted)
                if add:
                    await self._pubsub.subscribe(*(self._key(c) for c in add))
                    for c in add:
                        self._subscribed[c].set()
                if drop:
                    await self._pubsub.unsubscribe(*(self._key(c) for c in drop))
                    for c in drop:
                        self._subscribed.pop(c, None)
                pause = 0.05
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("redis subscribe failed (%s); retrying in %.2f s", exc, pause)
                await asyncio.sleep(pause)
                pause = min(RETRY_MAX, pause * 2)
                self._changes.set()

    async def _write(self) -> None:
        while True:
            if not self._outgoing:
                self._sent.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._outgoing.popleft() for _ in range(min(500, len(self._outgoing)))]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, payload in batch:
                        pipe.publish(key, payload)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.dropped += len(batch)
                log.warning("redis publish failed (%s); %d events dropped", exc, len(batch))
                await asyncio.sleep(0.5)

    async def _read(self) -> None:
        assert self._pubsub is not None
        failed = False
        while True:
            try:
                message = await self._pubsub.get_message(timeout=1.0)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failed:
                    log.warning("redis subscription lost (%s); reconnecting", exc)
                failed = True
                await asyncio.sleep(0.5)
                continue
            if failed:
                # redis-py subscribed again on reconnect; what was published meanwhile is lost.
                failed = False
                log.info("redis subscription back; resyncing channels from the Store")
                self._on_lost()
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


def _nothing() -> None:
    pass


def _pack(event: BusEvent, origin: str) -> bytes:
    body: dict[str, Any] = {"c": event.channel, "o": origin, "e": event.epoch, "p": event.presence}
    if event.messages is not None:
        body["m"] = [m.to_tuple() for m in event.messages]
    if event.frame is not None:
        body["f"] = event.frame
    if event.control is not None:
        body["x"] = event.control
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
        control=body.get("x"),
    )
    return str(body["o"]), event
