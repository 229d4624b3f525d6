"""Outboxes: bounded per-connection send buffers that write coalesced bytes once per loop tick.

Every subscriber of an event gets the same bytes (`Encoded`), built once per wire format.
Bytes queued with `push` are written in the tick's flush pass (`Flusher`); a caller holding a
whole batch for a reader writes it with `send_now` under the same bound.
Overflow policy: when queued bytes (ours plus the transport's) pass the limit, the outbox
closes its connection as a slow consumer; it never blocks the publisher or the channel.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from typing import Any

from agentchat_server.protocol import Format, encode

log = logging.getLogger(__name__)

_OP_TEXT = 0x1
_OP_BINARY = 0x2


def ws_frame(payload: bytes, opcode: int) -> bytes:
    """A complete, unmasked (server-to-client) WebSocket frame with FIN set."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Encoded:
    """One outgoing event, encoded lazily at most once per wire shape and shared by all receivers."""

    __slots__ = ("_json", "_msgpack", "_sse", "frame")

    def __init__(self, frame: dict[str, Any]) -> None:
        self.frame = frame
        self._json: bytes | None = None
        self._msgpack: bytes | None = None
        self._sse: bytes | None = None

    def ws(self, fmt: Format) -> bytes:
        if fmt == "json":
            if self._json is None:
                self._json = ws_frame(encode(self.frame, "json"), _OP_TEXT)
            return self._json
        if self._msgpack is None:
            self._msgpack = ws_frame(encode(self.frame, "msgpack"), _OP_BINARY)
        return self._msgpack

    def sse(self, event_id: str | None) -> bytes:
        if self._sse is None:
            self._sse = encode(self.frame, "json")
        head = f"event: {self.frame['type']}\n"
        if event_id is not None:
            head += f"id: {event_id}\n"
        return head.encode() + b"data: " + self._sse + b"\n\n"


class Flusher:
    """Flushes every outbox that got bytes this loop tick, in one scheduled callback.

    One callback per tick instead of one per outbox: a message to 1,000 subscribers schedules
    one flush pass, not 1,000 callbacks. Work given to `defer` runs at the start of that pass,
    so whatever it pushes is written in the same pass (the broker batches a channel's live
    frames of one tick this way)."""

    __slots__ = ("_deferred", "_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Outbox] = []
        self._deferred: list[tuple[Callable[[Any], None], Any]] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _schedule(self) -> None:
        self._scheduled = True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._run)

    def mark(self, outbox: Outbox) -> None:
        self._dirty.append(outbox)
        if not self._scheduled:
            self._schedule()

    def defer(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Call `fn(arg)` at the start of this tick's flush pass, before outboxes are written."""
        self._deferred.append((fn, arg))
        if not self._scheduled:
            self._schedule()

    def _run(self) -> None:
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for fn, arg in deferred:
                try:
                    fn(arg)
                except Exception:
                    log.exception("deferred fan-out failed")
        # Still marked scheduled while deferred work pushes, so its outboxes join this pass.
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush_now()


class Outbox:
    """Queue of bytes for one transport; `push` is synchronous and never waits.

    The bound covers our queue and the transport's buffer: it is checked on every push against
    our queue (cheap) and on every flush against both."""

    __slots__ = (
        "_flusher",
        "_on_overflow",
        "_pending",
        "_queued",
        "chunked",
        "closed",
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
        self.chunked = chunked  # HTTP/1.1 chunked framing (SSE responses), one chunk per flush
        self._on_overflow = on_overflow
        self._flusher = flusher
        self._pending: list[bytes] = []
        self._queued = 0
        self.closed = False
        self.sent_bytes = 0

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
        if self._pending:
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
        if not self._pending:
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
        return self._queued + self.transport.get_write_buffer_size()
