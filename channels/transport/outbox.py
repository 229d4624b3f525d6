"""Outboxes: bounded per-connection send buffers that write coalesced bytes once per loop tick.

Bytes queued with `push` are written in the tick's flush pass (`Flusher`); a caller holding a
whole batch for a reader writes it with `send_now` under the same bound.
Overflow policy: when queued bytes (ours plus the transport's) pass the limit, the outbox
closes its connection as a slow consumer; it never blocks the publisher or the channel.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agentchat_server.broker.tick import Flusher

log = logging.getLogger(__name__)

DRAIN_POLL = 0.005  # first wait between checks of a reader's buffer; doubles up to DRAIN_POLL_MAX
DRAIN_POLL_MAX = 0.1


class Outbox:
    """Queue of bytes for one asyncio transport; `push` is synchronous and never waits.

    The bound covers our queue and the transport's buffer: it is checked on every push against
    our queue (cheap) and on every write against both."""

    __slots__ = (
        "_flusher",
        "_on_overflow",
        "_pending",
        "_queued",
        "chunked",
        "closed",
        "held",
        "limit",
        "sent_bytes",
        "transport",
    )

    def __init__(
        self,
        transport: asyncio.Transport | Any,
        limit: int,
        on_overflow: Callable[[], None],
        flusher: Flusher,
        chunked: bool = False,
    ) -> None:
        self.transport = transport
        self.limit = limit
        self.chunked = chunked  # HTTP/1.1 chunked framing (SSE responses), one chunk per write
        self._on_overflow = on_overflow
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._queued = 0
        self.closed = False
        self.held = False  # queue but do not write yet (the response has not started)
        self.sent_bytes = 0

    def hold(self) -> None:
        """Queue everything, write nothing, until `release` (bounded as always)."""
        self.held = True

    def release(self) -> None:
        """Start writing: what was queued goes out first, in order."""
        self.held = False
        self.flush_now()

    def push(self, data: bytes) -> bool:
        """Queue bytes for this tick's flush; False (and the connection closes) on overflow."""
        if self.closed:
            return False
        if not self._pending:
            self._flusher.mark(self)
        self._pending.append(data)
        self._queued += len(data)
        if self._queued > self.limit:
            self._overflow()
            return False
        return True

    def send_now(self, data: bytes) -> bool:
        """`push` then `flush_now` in one step, for a caller that has a whole batch for this
        reader (the flush pass, a commit's fan-out): the same bound, the same order behind
        anything queued, and no second pass over outboxes."""
        if self._pending or self.held:
            if not self.push(data):
                return False
            self.flush_now()
            return not self.closed
        return self._write(data)

    def _overflow(self) -> None:
        self.closed = True
        self._pending.clear()
        self._queued = 0
        self._on_overflow()

    def flush_now(self) -> None:
        """Write what is queued at once (also before a close frame, so nothing is reordered)."""
        if not self._pending or self.held:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._queued = 0
        self._write(data)

    def _write(self, data: bytes) -> bool:
        """Hand bytes to the transport; overflow when they and what it still holds pass the bound."""
        transport = self.transport
        if self.closed or transport.is_closing():
            return False
        if len(data) + transport.get_write_buffer_size() > self.limit:
            self._overflow()
            return False
        self.sent_bytes += len(data)
        if self.chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        transport.write(data)
        return True

    def buffered(self) -> int:
        """Bytes queued here or in the transport, not yet taken by the network."""
        return self._queued + self.transport.get_write_buffer_size()

    async def drained(self, below: int, patience: float) -> bool:
        """Wait until fewer than `below` bytes are buffered; False if closed meanwhile, and after
        `patience` seconds without draining the connection is closed as a slow consumer.

        asyncio transports signal drain only to their protocol (aiohttp's, not ours), so this
        checks the buffer at growing intervals; only paced catch-ups wait here, never fan-out."""
        pause = DRAIN_POLL
        deadline = asyncio.get_running_loop().time() + patience
        while self.buffered() >= below:
            if self.closed or self.transport.is_closing():
                return False
            if asyncio.get_running_loop().time() >= deadline:
                self._overflow()
                return False
            await asyncio.sleep(pause)
            pause = min(DRAIN_POLL_MAX, pause * 2)
        return not (self.closed or self.transport.is_closing())
