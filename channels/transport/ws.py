"""`GET /v1/ws`: the WebSocket endpoint. Decodes and validates frames once, hands them to the broker.

One task per connection reads frames in order. The first frame must be `connect`, within
`connect_timeout` (else close 4006).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from agentchat_server.auth import Authenticator
from agentchat_server.broker import Broker, Connection
from agentchat_server.broker.tick import Flusher
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import (
    CLIENT_FRAME_TYPES,
    CloseCode,
    Code,
    ConnectFrame,
    Format,
    PingFrame,
    ProtocolError,
    client_frame_adapter,
    decode,
    encode,
    validation_message,
)
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.transport.http import check_origin, error_response
from agentchat_server.transport.websocket import WebSocketTransport

log = logging.getLogger(__name__)


def frame_size(data: str | bytes, limit: int) -> int:
    """Size in bytes on the wire; text is only encoded when it could be over the limit."""
    if isinstance(data, str) and len(data) * 4 > limit:
        return len(data.encode("utf-8", "surrogatepass"))
    return len(data)


def parse_frame(raw: Any) -> Any:
    """Validate a decoded frame; raises ProtocolError with the right code."""
    if not isinstance(raw, dict):
        raise ProtocolError(Code.INVALID_FRAME, "a frame is an object with a 'type'")
    kind = raw.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(Code.INVALID_FRAME, "a frame is an object with a 'type'", ref=_ref_of(raw))
    if kind not in CLIENT_FRAME_TYPES:
        raise ProtocolError(Code.UNKNOWN_FRAME_TYPE, "unknown frame type", ref=_ref_of(raw))
    if kind == "ping" and len(raw) == 1:
        return _PING  # the idle client's keepalive, the most common frame of all: no validation to do
    try:
        return client_frame_adapter.validate_python(raw)
    except ValidationError as exc:
        raise ProtocolError(Code.INVALID_FRAME, validation_message(exc), ref=_ref_of(raw)) from None


_PING = PingFrame(type="ping")


def _ref_of(raw: dict[str, Any]) -> int | None:
    ref = raw.get("ref")
    return ref if type(ref) is int and 0 <= ref < 2**53 else None


class WebSocketEndpoint:
    """`GET /v1/ws`: one instance per app; `handle` serves one connection."""

    def __init__(
        self, broker: Broker, auth: Authenticator, settings: Settings, flusher: Flusher, metrics: Metrics
    ) -> None:
        self.broker = broker
        self.auth = auth
        self.settings = settings
        self.flusher = flusher
        self.metrics = metrics

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Serve one WebSocket connection until it ends."""
        fmt_param = request.query.get("format", "json")
        if fmt_param not in ("json", "msgpack"):
            return error_response(Code.INVALID_VALUE, "format must be json or msgpack")
        try:
            check_origin(request, self.settings)
        except ProtocolError as exc:
            return error_response(exc.code, exc.message)
        fmt: Format = "msgpack" if fmt_param == "msgpack" else "json"
        ws = web.WebSocketResponse(
            max_msg_size=self.settings.max_ws_message, autoping=True, compress=False, timeout=5.0
        )
        await ws.prepare(request)
        # Frames encoded once per fan-out go straight to the connection's asyncio transport (the
        # one aiohttp's own WebSocket writer uses), whole frames at a time.
        socket = request.transport
        assert socket is not None
        s = self.settings
        transport = WebSocketTransport(
            ws, socket, fmt, s.max_outbox_bytes, self.flusher, self.metrics, s.slow_consumer_timeout
        )
        conn: Connection | None = None
        started = time.monotonic()
        try:
            conn = await self._handshake(ws, transport, fmt)
            # The read loop is inline (not a helper coroutine) to keep one frame less alive per
            # idle connection; each frame is handled in its own call, so nothing of it lingers.
            while conn is not None and not conn.closed and not transport.is_closing():
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    await self._frame(conn, msg.data, msg.type is WSMsgType.TEXT)
                elif msg.type is WSMsgType.ERROR:
                    # Typically a frame over max_ws_message; aiohttp closes with 1009.
                    log.info("websocket error from %s: %s", conn.client_id, ws.exception())
                    break
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                del msg
        finally:
            if conn is not None:
                graceful = not conn.closed and transport.close_code == CloseCode.NORMAL
                graceful = graceful and ws.close_code == CloseCode.NORMAL
                self.broker.disconnect(conn, graceful)
                # The one log line of a connection (the access log is off by default).
                log.info(
                    "%s %s disconnected after %.0f s (%s)",
                    conn.identity.kind,
                    conn.client_id,
                    time.monotonic() - started,
                    ws.close_code if ws.close_code is not None else transport.close_code,
                )
            if not ws.closed:
                await ws.close(code=transport.close_code, message=transport.close_reason.encode()[:120])
        return ws

    async def _handshake(
        self, ws: web.WebSocketResponse, transport: WebSocketTransport, fmt: Format
    ) -> Connection | None:
        """Wait for `connect`, verify the token, bind the session; None if refused (and closed)."""
        try:
            msg = await ws.receive(timeout=self.settings.connect_timeout)
        except TimeoutError:
            await ws.close(code=CloseCode.CONNECT_TIMEOUT, message=b"no connect frame")
            return None
        if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        try:
            if frame_size(msg.data, self.settings.max_frame_bytes) > self.settings.max_frame_bytes:
                raise ProtocolError(Code.FRAME_TOO_LARGE, "frame too large")
            frame = parse_frame(decode(msg.data, fmt))
            if not isinstance(frame, ConnectFrame):
                raise ProtocolError(Code.UNAUTHORIZED, "the first frame must be connect")
            if frame.token is None:
                raise ProtocolError(Code.UNAUTHORIZED, "connect needs a token")
            identity = self.auth.verify(frame.token)
            conn = self.broker.open(identity, transport)
            transport.name = identity.client_id
        except ProtocolError as exc:
            refusal = encode(frames.nack(None, exc.code, exc.message), fmt)
            if fmt == "msgpack":
                await ws.send_bytes(refusal)
            else:
                await ws.send_str(refusal.decode())
            code = CloseCode.UNAUTHORIZED
            if exc.code == Code.TOO_MANY_CONNECTIONS:
                code = CloseCode.TOO_MANY_CONNECTIONS
            elif exc.code == Code.UNAVAILABLE:
                code = CloseCode.GOING_AWAY
            await ws.close(code=code, message=exc.message.encode()[:120])
            return None
        self.broker.connect(conn, frame.resume)
        return conn

    async def _frame(self, conn: Connection, data: str | bytes, text: bool) -> None:
        conn.last_recv = time.monotonic()
        max_frame = self.settings.max_frame_bytes
        try:
            if frame_size(data, max_frame) > max_frame:
                raise ProtocolError(Code.FRAME_TOO_LARGE, f"frame exceeds {max_frame} bytes")
            if text != (conn.transport.fmt == "json"):
                raise ProtocolError(Code.MALFORMED_FRAME, f"this connection speaks {conn.transport.fmt}")
            frame = parse_frame(decode(data, conn.transport.fmt))
        except ProtocolError as exc:
            self.broker.refuse(conn, exc.details.pop("ref", None), exc)
            return
        await self.broker.handle(conn, frame)


__all__ = ["WebSocketEndpoint", "parse_frame"]
