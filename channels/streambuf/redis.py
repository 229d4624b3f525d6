"""RedisStreamBuffer: open streams' headers and chunks in Redis, for every node to read.

Per channel a hash of open stream headers (stream id -> JSON); per stream a list of chunks (JSON).
Writes are queued and sent in order by one task, pipelined; every key expires after `ttl` seconds
unless written again, so a stream whose every node died leaves nothing behind for long.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import deque
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger(__name__)

MAX_QUEUED = 100_000  # writes waiting for Redis; beyond this the oldest are dropped (logged)


class RedisStreamBuffer:
    """The StreamBuffer port on Redis."""

    def __init__(self, redis: Redis, prefix: str, ttl: int) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl = ttl
        self._queue: deque[tuple[str, tuple[Any, ...]]] = deque(maxlen=MAX_QUEUED)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def _channel_key(self, channel: str) -> str:
        return f"{self.prefix}:streams:{channel}"

    def _chunks_key(self, stream_id: str) -> str:
        return f"{self.prefix}:chunks:{stream_id}"

    def _header_key(self, stream_id: str) -> str:
        return f"{self.prefix}:stream:{stream_id}"

    def start(self) -> None:
        """Start the writer task."""
        self._task = asyncio.create_task(self._write(), name="streambuf-write")

    async def stop(self) -> None:
        """Stop the writer (what is queued is dropped: call `flush` first)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _put(self, op: str, *args: Any) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append((op, args))
        self._idle.clear()
        self._wake.set()

    def opened(self, channel: str, stream_id: str, header: dict[str, Any]) -> None:
        """Queue: the stream is open in `channel`."""
        self._put("open", channel, stream_id, json.dumps(header, separators=(",", ":")))

    def appended(self, stream_id: str, index: int, chunk: Any) -> None:
        """Queue: chunk `index` (chunks arrive in index order, so it is the list's next item)."""
        self._put("append", stream_id, json.dumps(chunk, ensure_ascii=False, separators=(",", ":")))

    def ended(self, channel: str, stream_id: str) -> None:
        """Queue: forget the stream."""
        self._put("end", channel, stream_id)

    async def chunks(self, stream_id: str) -> list[Any] | None:
        """The stream's chunks so far, or None if Redis has none of it."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.exists(self._header_key(stream_id))
            pipe.lrange(self._chunks_key(stream_id), 0, -1)
            known, raws = await pipe.execute()
        if not known:
            return None
        return [json.loads(raw) for raw in raws]

    async def open_streams(self, channel: str) -> list[tuple[dict[str, Any], list[Any]]]:
        """Every stream open in the channel with its chunks."""
        headers = await self.redis.hgetall(self._channel_key(channel))
        out = []
        for raw in headers.values():
            header = json.loads(raw)
            chunks = await self.chunks(str(header["stream_id"]))
            out.append((header, chunks or []))
        return out

    async def flush(self) -> None:
        """Wait until what is queued now has been written (or dropped on a Redis failure)."""
        await self._idle.wait()

    async def _write(self) -> None:
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = [self._queue.popleft() for _ in range(min(500, len(self._queue)))]
            try:
                async with self.redis.pipeline(transaction=False) as pipe:
                    for op, args in batch:
                        if op == "open":
                            channel, stream_id, header = args
                            pipe.hset(self._channel_key(channel), stream_id, header)
                            pipe.expire(self._channel_key(channel), self.ttl)
                            pipe.set(self._header_key(stream_id), header, ex=self.ttl)
                        elif op == "append":
                            stream_id, chunk = args
                            pipe.rpush(self._chunks_key(stream_id), chunk)
                            pipe.expire(self._chunks_key(stream_id), self.ttl)
                            pipe.expire(self._header_key(stream_id), self.ttl)
                        else:
                            channel, stream_id = args
                            pipe.hdel(self._channel_key(channel), stream_id)
                            pipe.delete(self._chunks_key(stream_id), self._header_key(stream_id))
                    await pipe.execute()
            except Exception as exc:
                self.dropped += len(batch)
                log.warning("redis stream buffer write failed (%s); %d writes dropped", exc, len(batch))
                await asyncio.sleep(0.5)
