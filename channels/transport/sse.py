"""`GET /v1/channels/{channel}/events`: Server-Sent Events, the read-only transport.

The SSE transport implements the broker's Transport port: durable messages carry `id: epoch:serial`
so a browser's EventSource resumes with `Last-Event-ID`; replies have no place here and are
dropped; a lost continuity becomes a `reset` event; heartbeats are comment lines. Limits are
checked before the response starts, so a refusal is a plain HTTP error.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from agentchat_server.auth import Authenticator
from agentchat_server.broker import Broker
from agentchat_server.broker.tick import Flusher
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Batch, Code, Encoded, Format, ProtocolError
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.transport.http import bearer_token, channel_of, check_origin, choice_param, serial_param
from agentchat_server.transport.outbox import Outbox

_DROPPED = frozenset({"connected", "ack", "nack", "auth_renew"})


class SseTransport:
    """Implements `agentchat_server.broker.ports.Transport` for one SSE response."""

    __slots__ = ("done", "metrics", "outbox")

    fmt: Format = "json"
    unidirectional = True

    def __init__(
        self, socket: asyncio.Transport | Any, limit: int, flusher: Flusher, metrics: Metrics
    ) -> None:
        self.metrics = metrics
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # aiohttp framed the response as chunked; the outbox writes each flush as one chunk.
        self.outbox = Outbox(socket, limit, self._overflow, flusher, chunked=True)

    @property
    def sent_bytes(self) -> int:
        """Bytes written to the client so far."""
        return self.outbox.sent_bytes

    def send(self, frame: dict[str, Any]) -> None:
        """Replies are dropped; `attached` without continuity becomes `reset`; heartbeats are comments."""
        kind = frame["type"]
        if kind in _DROPPED:
            return
        if kind == "heartbeat":
            self.outbox.push(b": hb\n\n")
            return
        if kind == "attached":
            if frame.get("resumed", True):
                return
            why = frame.get("reason") or {}
            frame = frames.reset(why.get("code"), why.get("message"), frame["position"])
        self.outbox.push(Encoded(frame).sse())

    def deliver(self, event: Encoded) -> None:
        """Queue one shared event."""
        self.outbox.push(event.sse())

    def deliver_batch(self, batch: Batch) -> None:
        """Write a whole batch now, behind what is queued."""
        self.outbox.send_now(batch.sse())

    def is_closing(self) -> bool:
        """True once closed, or the client went away."""
        return self.done.done() or self.outbox.closed or self.outbox.transport.is_closing()

    def buffered(self) -> int:
        """Bytes not yet taken by the network."""
        return self.outbox.buffered()

    async def drained(self, below: int, patience: float) -> bool:
        """Wait until fewer than `below` bytes are buffered; False if closed meanwhile. After
        `patience` seconds without draining, the connection is closed as a slow consumer (4008)."""
        return await self.outbox.drained(below, patience)

    def close(self, code: int, reason: str) -> None:
        """End the response (the handler returns)."""
        self.outbox.flush_now()
        if not self.done.done():
            self.done.set_result(None)

    def _overflow(self) -> None:
        self.metrics.slow_consumers.inc()
        self.metrics.outbox_drops.inc()
        self.close(0, "slow consumer")


class SseEndpoint:
    """The SSE handler of one app."""

    def __init__(
        self, broker: Broker, auth: Authenticator, settings: Settings, flusher: Flusher, metrics: Metrics
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.settings = settings
        self.flusher = flusher
        self.metrics = metrics

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events for one channel; `Last-Event-ID` (epoch:serial) resumes it."""
        check_origin(request, self.settings)
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        identity.require(channel, "subscribe")
        position: tuple[int, str | None] | None = None
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        if last_id:
            epoch, _, serial = last_id.rpartition(":")
            parsed = serial_param(serial or "x", "Last-Event-ID (epoch:serial)")
            assert parsed is not None
            position = (parsed, epoch or None)
        else:
            after = serial_param(request.query.get("after"), "after")
            if after is not None:
                position = (after, None)
        to_me = choice_param(request.query.get("filter"), "filter", ("all", "to_me")) == "to_me"
        socket = request.transport
        if socket is None:
            raise ProtocolError(Code.UNAVAILABLE, "connection closed")
        transport = SseTransport(socket, self.settings.max_outbox_bytes, self.flusher, self.metrics)
        conn = self.broker.open(identity, transport)  # limits refuse here, before the response starts
        try:
            # Attached before the client sees the response start, so everything committed after it
            # got its headers reaches it; what the attach sends waits until the headers are out.
            transport.outbox.hold()
            transport.outbox.push(b"retry: 1000\n\n")
            self.broker.connect(conn, None)
            await self.broker.attach(conn, channel, position, to_me)
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            transport.outbox.release()
            # The client never writes: the sweep notices its transport closing.
            await transport.done
        finally:
            self.broker.disconnect(conn, graceful=True)
        return response
