"""One WebSocket connection to the server: the connect handshake, ordered sends, reads and heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import aiohttp

from agentchat_server.protocol import (
    CloseCode,
    Format,
    ProtocolError,
    Reconnect,
    decode,
    encode,
    reconnect_policy,
)

log = logging.getLogger("agentchat.connection")

# Frames the server may send that exceed the default aiohttp bound (stream snapshots, history pages).
MAX_INCOMING_FRAME = 16 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnect delays: exponential from `initial` up to `maximum`, with equal jitter."""

    initial: float = 0.1
    maximum: float = 10.0
    factor: float = 2.0

    def delay(self, attempt: int) -> float:
        """The wait before reconnect attempt `attempt` (1-based)."""
        ceiling = min(self.maximum, self.initial * self.factor ** max(0, attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


def websocket_url(base: str, fmt: Format) -> str:
    """Turn an http(s):// or ws(s):// base URL into the `/v1/ws?format=…` endpoint URL."""
    parts = urlsplit(base)
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {base!r}")
    path = parts.path.rstrip("/")
    if not path.endswith("/v1/ws"):
        path += "/v1/ws"
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "format"] + [("format", fmt)]
    return urlunsplit((scheme, parts.netloc, path, urlencode(query), ""))


def http_url(base: str, path: str) -> str:
    """The http(s):// URL of `path` on the server at `base` (http(s):// or ws(s)://, any path ignored)."""
    parts = urlsplit(base)
    scheme = {"http": "http", "https": "https", "ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None or not parts.netloc:
        raise ValueError(f"expected an http(s):// or ws(s):// URL, got {base!r}")
    prefix = parts.path.rstrip("/")
    if prefix.endswith("/v1/ws"):
        prefix = prefix[: -len("/v1/ws")]
    return urlunsplit((scheme, parts.netloc, prefix + path, "", ""))


@dataclass(frozen=True, slots=True)
class Closed:
    """Why a connection ended: the WebSocket close code (None for a dropped socket) and a reason."""

    code: int | None
    reason: str

    @property
    def action(self) -> Reconnect:
        """What the client does next: `resume`, `renew` or `stop` (the protocol's `reconnect_policy`)."""
        return reconnect_policy(self.code)


class HandshakeFailed(Exception):
    """The server refused `connect` (or closed before `connected`)."""

    def __init__(self, closed: Closed) -> None:
        super().__init__(f"connect refused ({closed.code}): {closed.reason}")
        self.closed = closed


class Link:
    """An open, connected WebSocket: `send` queues frames in order, `run` reads until the socket ends.

    A link never reconnects; the Client makes a new one. Sends are queued (bounded by the Client's
    pending table) and written by one task so frames leave in the order they were queued.
    """

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, fmt: Format, connected: dict[str, Any]) -> None:
        self.ws = ws
        self.fmt = fmt
        self.connected = connected
        self.heartbeat = float(connected.get("heartbeat_interval") or 15.0)
        self._outgoing: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._last_sent = loop.time()

    @classmethod
    async def open(
        cls, session: aiohttp.ClientSession, url: str, fmt: Format, connect: dict[str, Any]
    ) -> Link:
        """Open the socket, send `connect`, and return once `connected` arrives."""
        ws = await session.ws_connect(
            url,
            max_msg_size=MAX_INCOMING_FRAME,
            autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
        )
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                await _send(ws, fmt, connect)
                while True:
                    msg = await ws.receive()
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        raise HandshakeFailed(Closed(ws.close_code, str(msg.extra or msg.type.name)))
                    frame = decode(msg.data, fmt)
                    if frame.get("type") == "connected":
                        return cls(ws, fmt, frame)
                    if frame.get("type") in ("error", "nack"):
                        # The server closes right after; its close code decides whether to retry.
                        log.warning("connect refused: %s %s", frame.get("code"), frame.get("message"))
        except BaseException:
            await _abort(ws)
            raise

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame; it is written after every frame queued before it."""
        self._outgoing.put_nowait(frame)

    async def run(self, on_frame: Callable[[dict[str, Any]], None]) -> Closed:
        """Read frames into `on_frame` until the socket ends; ping when idle, give up after 2 x heartbeat."""
        writer = asyncio.create_task(self._write_loop())
        pinger = asyncio.create_task(self._ping_loop())
        try:
            while True:
                try:
                    # Silence for twice the heartbeat interval means the peer or the path is gone.
                    async with asyncio.timeout(2 * self.heartbeat):
                        msg = await self.ws.receive()
                except TimeoutError:
                    return Closed(None, "no frame for 2 x heartbeat_interval")
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    try:
                        frame = decode(msg.data, self.fmt)
                    except ProtocolError:
                        log.error("undecodable frame from server; dropping the connection")
                        return Closed(None, "undecodable frame")
                    if isinstance(frame, dict):
                        try:
                            on_frame(frame)
                        except Exception:
                            # A frame we cannot handle leaves our state unknown: start over with a resume.
                            log.exception("cannot handle a %r frame; reconnecting", frame.get("type"))
                            return Closed(None, "client failed to handle a frame")
                    continue
                if msg.type == aiohttp.WSMsgType.CLOSE:
                    return Closed(int(msg.data), str(msg.extra or ""))
                return Closed(self.ws.close_code, str(self.ws.exception() or msg.type.name))
        finally:
            writer.cancel()
            pinger.cancel()
            await asyncio.gather(writer, pinger, return_exceptions=True)
            await _abort(self.ws)

    async def close(self) -> None:
        """Close with 1000 (normal): the server ends the session at once."""
        with contextlib.suppress(Exception):
            await self.ws.close(code=CloseCode.NORMAL)

    async def _write_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            frame = await self._outgoing.get()
            try:
                await _send(self.ws, self.fmt, frame)
            except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
                # The reader sees the closed socket and ends the link; nothing more to write.
                log.debug("send failed: %s", exc)
                await _abort(self.ws)
                return
            self._last_sent = loop.time()

    async def _ping_loop(self) -> None:
        loop = asyncio.get_running_loop()
        # Ping at half the interval so one late timer cannot let the server's 2x limit expire.
        while True:
            await asyncio.sleep(self.heartbeat / 4)
            if loop.time() - self._last_sent >= self.heartbeat / 2 and self._outgoing.empty():
                self.send({"type": "ping"})


async def _send(ws: aiohttp.ClientWebSocketResponse, fmt: Format, frame: dict[str, Any]) -> None:
    payload = encode(frame, fmt)
    if fmt == "json":
        await ws.send_str(payload.decode())
    else:
        await ws.send_bytes(payload)


async def _abort(ws: aiohttp.ClientWebSocketResponse) -> None:
    if ws.closed:
        return
    # A dead peer would make a polite close wait for its timeout; drop the socket instead.
    cut(ws)
    with contextlib.suppress(Exception):
        await ws.close()


def cut(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Shut the socket down under the WebSocket, with no close frame: the peer sees an abrupt drop."""
    sock = ws.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
