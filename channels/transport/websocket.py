"""The WebSocket transport: the broker's Transport port over one aiohttp WebSocket.

It owns the connection's framing (complete WebSocket frames are written straight to the socket's
asyncio transport, so a frame encoded once is shared by every reader) and its outbox.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from agentchat_server.broker.tick import Flusher
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Batch, CloseCode, Encoded, Format, encode, ws_frame
from agentchat_server.transport.outbox import Outbox

log = logging.getLogger(__name__)

_OPCODE = {"json": 0x1, "msgpack": 0x2}


class WebSocketTransport:
    """Implements `agentchat_server.broker.ports.Transport` for one WebSocket connection."""

    __slots__ = (
        "_closing",
        "close_code",
        "close_reason",
        "fmt",
        "metrics",
        "name",
        "outbox",
        "patience",
        "ws",
    )

    unidirectional = False

    def __init__(
        self,
        ws: web.WebSocketResponse,
        socket: asyncio.Transport | Any,
        fmt: Format,
        limit: int,
        flusher: Flusher,
        metrics: Metrics,
        patience: float,
    ) -> None:
        self.ws = ws
        self.patience = patience  # how long a closed connection may take to flush before it is cut
        self.fmt: Format = fmt
        self.metrics = metrics
        self.name = ""  # the client id, for logs
        self.outbox = Outbox(socket, limit, self._overflow, flusher)
        self.close_code = CloseCode.NORMAL
        self.close_reason = ""
        self._closing: asyncio.Task[Any] | None = None

    @property
    def sent_bytes(self) -> int:
        """Bytes written to the client so far."""
        return self.outbox.sent_bytes

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame for this connection alone."""
        self.outbox.push(ws_frame(encode(frame, self.fmt), _OPCODE[self.fmt]))

    def deliver(self, event: Encoded) -> None:
        """Queue one shared event."""
        self.outbox.push(event.ws(self.fmt))

    def deliver_batch(self, batch: Batch) -> None:
        """Write a whole batch now, behind what is queued."""
        self.outbox.send_now(batch.ws(self.fmt))

    def is_closing(self) -> bool:
        """True once closed or closing."""
        return self.outbox.closed or self.outbox.transport.is_closing()

    def buffered(self) -> int:
        """Bytes not yet taken by the network."""
        return self.outbox.buffered()

    async def drained(self, below: int, patience: float) -> bool:
        """Wait until fewer than `below` bytes are buffered; False if closed meanwhile. After
        `patience` seconds without draining, the connection is closed as a slow consumer (4008)."""
        return await self.outbox.drained(below, patience)

    def close(self, code: int, reason: str) -> None:
        """Write what is queued, then close with `code` (the handler's exit uses the same code)."""
        if self._closing is not None:
            return
        self.outbox.flush_now()
        self.outbox.closed = True
        self.close_code, self.close_reason = code, reason
        self._closing = asyncio.get_running_loop().create_task(self._close(code, reason), name="ws-close")
        self._closing.add_done_callback(_retrieve)

    async def _close(self, code: int, reason: str) -> None:
        # No drain: a client that reads nothing would hold the close (and this task) forever.
        # The close frame goes out behind what is buffered; a client that does not take it all
        # within `patience` is cut off (its reader resumes from its position anyway).
        socket = self.outbox.transport
        try:
            await self.ws.close(code=code, message=reason.encode()[:120], drain=False)
        finally:
            if not socket.is_closing() or socket.get_write_buffer_size():
                asyncio.get_running_loop().call_later(self.patience, socket.abort)

    def _overflow(self) -> None:
        self.metrics.slow_consumers.inc()
        self.metrics.outbox_drops.inc()
        log.info("closing slow consumer %s", self.name)
        self.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.debug("websocket close failed: %s", task.exception())
