"""The WebSocket transport: decodes and validates frames once, dispatches them to the broker.

One task per connection reads frames in order. Replies that wait for a commit (publish,
stream end) are sent from the commit's callback, so the reader never waits on the Store.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import WSMsgType, web
from pydantic import ValidationError

from agentchat_server.broker import Broker
from agentchat_server.broker.state import Connection
from agentchat_server.outbox import Encoded, Outbox
from agentchat_server.protocol import (
    CLIENT_FRAME_TYPES,
    AttachFrame,
    AuthFrame,
    CloseCode,
    Code,
    ConnectFrame,
    DetachFrame,
    Format,
    HistoryFrame,
    OccupancyFrame,
    PingFrame,
    PresenceFrame,
    PresenceGetFrame,
    ProtocolError,
    PublishFrame,
    StreamAppendFrame,
    StreamCancelFrame,
    StreamEndFrame,
    StreamOpenFrame,
    client_frame_adapter,
    decode,
    encode,
    validation_message,
)
from agentchat_server.transport.http import check_origin, error_response

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

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.settings = broker.settings
        self._close_codes: dict[int, tuple[int, str]] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
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
        writer = ws._writer
        assert writer is not None
        transport: Any = writer.transport
        conn: Connection | None = None
        try:
            conn = await self._handshake(ws, transport, fmt)
            # The read loop is inline (not a helper coroutine) to keep one frame less alive per
            # idle connection; each frame is handled in its own call, so nothing of it lingers.
            while conn is not None and not conn.closed:
                msg = await ws.receive()
                if msg.type is WSMsgType.TEXT or msg.type is WSMsgType.BINARY:
                    await self._frame(conn, msg.data, msg.type is WSMsgType.TEXT)
                elif msg.type is WSMsgType.ERROR:
                    # Typically a frame over max_ws_message; aiohttp closes with 1009.
                    log.info("websocket error from %s: %s", conn.identity.client_id, ws.exception())
                    break
                elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                del msg
        finally:
            if conn is not None:
                graceful = not conn.closed and ws.close_code == CloseCode.NORMAL
                self.broker.disconnect(conn, graceful)
            code, reason = self._close_codes.pop(id(ws), (CloseCode.NORMAL, ""))
            if not ws.closed:
                await ws.close(code=code, message=reason.encode()[:120])
        return ws

    async def _handshake(self, ws: web.WebSocketResponse, transport: Any, fmt: Format) -> Connection | None:
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
            identity = self.broker.auth.verify(frame.token)
            closer = _Closer(self, ws)
            outbox = Outbox(transport, self.settings.max_outbox_bytes, closer.overflow, self.broker.flusher)
            closer.outbox = outbox
            conn = self.broker.new_connection(identity, fmt, outbox, closer)
            closer.conn = conn
        except ProtocolError as exc:
            refusal = encode({"type": "error", "code": exc.code, "message": exc.message}, fmt)
            if fmt == "msgpack":
                await ws.send_bytes(refusal)
            else:
                await ws.send_str(refusal.decode())
            code = (
                CloseCode.TOO_MANY_CONNECTIONS
                if exc.code == Code.TOO_MANY_CONNECTIONS
                else CloseCode.UNAUTHORIZED
            )
            if exc.code == Code.UNAVAILABLE:
                code = CloseCode.GOING_AWAY
            await ws.close(code=code, message=exc.message.encode()[:120])
            return None
        conn.send(self.broker.connect(conn, frame.resume))
        return conn

    async def _frame(self, conn: Connection, data: str | bytes, text: bool) -> None:
        conn.last_recv = time.monotonic()
        max_frame = self.settings.max_frame_bytes
        ref: int | None = None
        try:
            if frame_size(data, max_frame) > max_frame:
                raise ProtocolError(Code.FRAME_TOO_LARGE, f"frame exceeds {max_frame} bytes")
            if text != (conn.fmt == "json"):
                raise ProtocolError(Code.MALFORMED_FRAME, f"this connection speaks {conn.fmt}")
            frame = parse_frame(decode(data, conn.fmt))
            ref = getattr(frame, "ref", None)
            await self._dispatch(conn, frame)
        except ProtocolError as exc:
            self._refuse(conn, exc.details.pop("ref", ref), exc)
        except Exception:
            log.exception("internal error handling a frame from %s", conn.identity.client_id)
            self._refuse(conn, ref, ProtocolError(Code.INTERNAL, "internal error"))

    def _refuse(self, conn: Connection, ref: int | None, exc: ProtocolError) -> None:
        self.broker.metrics.errors.labels(str(exc.code)).inc()
        frame: dict[str, Any] = {
            "type": "nack" if ref is not None else "error",
            "code": exc.code,
            "message": exc.message,
        }
        if ref is not None:
            frame["ref"] = ref
        frame.update(exc.details)
        conn.send(frame)
        if exc.code < 40100 or exc.code in (Code.FRAME_TOO_LARGE,):
            # Malformed or invalid frames spend the connection's bad-frame budget.
            if not self.broker.spend_bad_frame(conn):
                conn.close(CloseCode.PROTOCOL_ABUSE, "too many bad frames")

    async def _dispatch(self, conn: Connection, frame: Any) -> None:
        broker = self.broker
        if isinstance(frame, PublishFrame):
            result = broker.publish(conn.identity, frame.channel, frame.messages, frame.if_serial, conn)
            if isinstance(result, list):
                if frame.ref is not None:
                    conn.send({"type": "ack", "ref": frame.ref, "serials": result, "duplicates": []})
            else:
                self._reply_later(conn, frame.ref, result, broker.publish_reply)
        elif isinstance(frame, StreamAppendFrame):
            broker.streams.append(conn, frame.stream_id, frame.i, frame.d)
            if frame.ref is not None:
                conn.send({"type": "ack", "ref": frame.ref})
        elif isinstance(frame, AttachFrame):
            position = None if frame.position is None else (frame.position.serial, frame.position.epoch)
            await broker.attach(conn, frame.channel, position, frame.presence, frame.ref)
        elif isinstance(frame, DetachFrame):
            broker.detach(conn, frame.channel)
            reply: dict[str, Any] = {"type": "detached", "channel": frame.channel}
            if frame.ref is not None:
                reply["ref"] = frame.ref
            conn.send(reply)
        elif isinstance(frame, HistoryFrame):
            broker.spawn(self._history(conn, frame), "history")
        elif isinstance(frame, PresenceFrame):
            broker.presence(conn, frame.channel, frame.action, frame.data)
            self._ack(conn, frame.ref)
        elif isinstance(frame, PresenceGetFrame):
            members = await broker.presence_members(conn.identity, frame.channel)
            conn.send({"type": "ack", "ref": frame.ref, "members": members})
        elif isinstance(frame, OccupancyFrame):
            occupancy = await broker.occupancy(conn.identity, frame.channel)
            conn.send({"type": "ack", "ref": frame.ref, "occupancy": occupancy})
        elif isinstance(frame, StreamOpenFrame):
            stream_id = await broker.streams.open(
                conn,
                frame.channel,
                event_name=frame.name,
                message_id=frame.id,
                reply_to=frame.reply_to,
                meta=frame.meta,
                fmt=frame.format,
            )
            conn.send({"type": "ack", "ref": frame.ref, "stream_id": stream_id})
        elif isinstance(frame, StreamEndFrame):
            future = broker.streams.end(conn, frame.stream_id, frame.status, frame.data, frame.chunks)
            self._reply_later(conn, frame.ref, future, lambda serial: {"serial": serial})
        elif isinstance(frame, StreamCancelFrame):
            future = broker.streams.cancel(conn, frame.stream_id)
            self._reply_later(conn, frame.ref, future, lambda serial: {"serial": serial})
        elif isinstance(frame, AuthFrame):
            expires = broker.renew(conn, frame.token)
            conn.send({"type": "ack", "ref": frame.ref, "expires_at": expires})
        elif isinstance(frame, PingFrame):
            self._ack(conn, frame.ref)
        elif isinstance(frame, ConnectFrame):
            raise ProtocolError(Code.INVALID_VALUE, "already connected")

    @staticmethod
    def _ack(conn: Connection, ref: int | None) -> None:
        if ref is not None:
            conn.send({"type": "ack", "ref": ref})

    async def _history(self, conn: Connection, frame: HistoryFrame) -> None:
        try:
            page = await self.broker.history(
                conn.identity,
                frame.channel,
                before=frame.before,
                after=frame.after,
                limit=frame.limit,
                forwards=frame.direction == "forwards",
            )
            conn.send({"type": "ack", "ref": frame.ref, **page})
        except ProtocolError as exc:
            self._refuse(conn, frame.ref, exc)
        except Exception:
            log.exception("history failed")
            self._refuse(conn, frame.ref, ProtocolError(Code.UNAVAILABLE, "history unavailable"))

    def _reply_later(
        self,
        conn: Connection,
        ref: int | None,
        future: asyncio.Future[Any],
        fields: Callable[[Any], dict[str, Any]],
    ) -> None:
        def done(fut: asyncio.Future[Any]) -> None:
            if conn.closed:
                if not fut.cancelled():
                    fut.exception()
                return
            try:
                reply = fields(fut.result())
            except ProtocolError as exc:
                self._refuse(conn, ref, exc)
                return
            except Exception as exc:
                log.error("request failed: %s", exc)
                self._refuse(conn, ref, ProtocolError(Code.UNAVAILABLE, "store unavailable, retry"))
                return
            if ref is not None:
                conn.send({"type": "ack", "ref": ref, **reply})

        future.add_done_callback(done)


class _Closer:
    """Closes one WebSocket with a code; also the outbox's overflow hook (slow consumer).

    One small object per connection instead of closures."""

    __slots__ = ("conn", "endpoint", "outbox", "ws")

    def __init__(self, endpoint: WebSocketEndpoint, ws: web.WebSocketResponse) -> None:
        self.endpoint = endpoint
        self.ws = ws
        self.outbox: Outbox | None = None
        self.conn: Connection | None = None

    def __call__(self, code: int, reason: str) -> None:
        if self.outbox is not None:
            self.outbox.flush_now()
            self.outbox.closed = True
        # Whichever close runs first (this task or the handler's exit) must carry our code.
        self.endpoint._close_codes[id(self.ws)] = (code, reason)
        self.endpoint.broker.spawn(self.ws.close(code=code, message=reason.encode()[:120]), "ws-close")

    def overflow(self) -> None:
        conn = self.conn
        if conn is not None:
            metrics = self.endpoint.broker.metrics
            metrics.slow_consumers.inc()
            metrics.outbox_drops.inc()
            log.info("closing slow consumer %s", conn.identity.client_id)
            conn.close(CloseCode.SLOW_CONSUMER, "slow consumer: outbox full")


__all__ = ["Encoded", "WebSocketEndpoint", "parse_frame"]
