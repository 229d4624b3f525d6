"""A lean asyncio WebSocket client for the load generator: handshake, masked sends, three receive modes.

Receive modes, cheapest first:
- `count`: count the payload marker in the raw bytes (server frames are unmasked and uncompressed, so
  the marker appears verbatim); no per-frame Python work, so the client is not the bottleneck.
- `sample`: like `count`, and read the send timestamp that follows each marker to record latency.
- `frames`: full frame parsing; each complete payload goes to `on_payload` (setup, acks, stream chunks).
"""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

# Every measured payload carries MARK + a 16-digit monotonic timestamp (ns) right after it.
MARK = b"~bEnCh~"
TS_LEN = 16
MARK_FULL = len(MARK) + TS_LEN

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
# An Engine.IO ping ("2") as a whole text frame; socket.io clients must answer "3".
EIO_PING_FRAME = b"\x81\x012"
ZERO_KEY = b"\x00\x00\x00\x00"


def make_payload(size: int, seq: int = 0, stamp_ns: int | None = None) -> str:
    """A text payload of `size` bytes: marker, send time (or the scheduled one when given: open loop, so a
    late publisher counts against latency), sequence number, padding."""
    stamp = time.monotonic_ns() if stamp_ns is None else stamp_ns
    head = f"{MARK.decode()}{stamp:016d}{seq:010d}"
    return head + "x" * max(0, size - len(head))


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked client frame (RFC 6455 section 5.3), FIN set."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    # An all-zero masking key is valid (RFC 6455 asks browsers, not load generators, for unpredictable
    # keys): the server still unmasks every byte, and the load generator skips the XOR, so its one core
    # can offer the open-loop rates of the many-rooms sweep.
    return header + ZERO_KEY + payload


@dataclass
class Shared:
    """Counters shared by every connection of one load-generator process."""

    total: int = 0
    wake_at: int = 1 << 62
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    latencies_us: list[int] = field(default_factory=list)
    closed: int = 0
    close_codes: dict[int, int] = field(default_factory=dict)
    eio_pings: int = 0


class WsClient(asyncio.Protocol):
    """One client connection; `await open()` does the TCP connect and the HTTP upgrade."""

    def __init__(
        self, shared: Shared, on_payload: Callable[[WsClient, int, bytes], None] | None = None
    ) -> None:
        self.shared = shared
        self.on_payload = on_payload
        self.mode = "frames"
        self.transport: asyncio.Transport | None = None
        self.count = 0
        self.bytes_in = 0
        self.eio = False
        self._buf = bytearray()
        self._tail = b""
        self._upgraded: asyncio.Future[None] | None = None
        self._frag: bytearray | None = None
        self._frag_op = 0
        self.closed = False
        self.close_code: int | None = None

    async def open(
        self, host: str, port: int, path: str, wait_s: float = 30.0, source: str | None = None
    ) -> None:
        """Connect (from `source`, a loopback address to bind before connecting, when given) and upgrade."""
        loop = asyncio.get_running_loop()
        self._upgraded = loop.create_future()
        local = (source, 0) if source else None
        await asyncio.wait_for(loop.create_connection(lambda: self, host, port, local_addr=local), wait_s)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        assert self.transport is not None
        self.transport.write(request.encode())
        await asyncio.wait_for(self._upgraded, wait_s)

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed:
            self.closed = True
            self.shared.closed += 1
            code = self.close_code if self.close_code is not None else -1
            self.shared.close_codes[code] = self.shared.close_codes.get(code, 0) + 1
        if self._upgraded is not None and not self._upgraded.done():
            self._upgraded.set_exception(ConnectionError(f"closed during upgrade: {exc}"))

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        if self._upgraded is not None and not self._upgraded.done():
            self._buf += data
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(self._buf[: self._buf.find(b"\r\n")])
            if b" 101 " not in status:
                self._upgraded.set_exception(ConnectionError(f"upgrade refused: {status!r}"))
                return
            rest = bytes(self._buf[end + 4 :])
            self._buf.clear()
            self._upgraded.set_result(None)
            if not rest:
                return
            data = rest
        mode = self.mode
        if mode == "frames":
            self._buf += data
            self._parse()
            return
        chunk = self._tail + data
        if mode == "count":
            n = chunk.count(MARK)
            self._tail = chunk[-(len(MARK) - 1) :]
        else:
            n = self._sample(chunk)
        if self.eio:
            # Counted in this read only: the tail may hold the last ping already answered.
            pings = data.count(EIO_PING_FRAME)
            for _ in range(pings):
                self.shared.eio_pings += 1
                self.send_text("3")
        if n:
            self.count += n
            shared = self.shared
            shared.total += n
            if shared.total >= shared.wake_at:
                shared.wake.set()

    def _sample(self, chunk: bytes) -> int:
        """Count markers whose timestamp is complete; keep the bytes that may hold a partial one."""
        now = time.monotonic_ns()
        found = 0
        pos = 0
        size = len(chunk)
        lat = self.shared.latencies_us
        while True:
            p = chunk.find(MARK, pos)
            if p < 0:
                self._tail = chunk[max(pos, size - (len(MARK) - 1)) :]
                return found
            if p + MARK_FULL > size:
                self._tail = chunk[p:]
                return found
            ts = int(chunk[p + len(MARK) : p + MARK_FULL])
            lat.append((now - ts) // 1000)
            found += 1
            pos = p + MARK_FULL

    def switch(self, mode: str) -> None:
        """Change receive mode; bytes buffered by the frame parser are handed to the new mode."""
        leftover = bytes(self._buf)
        self._buf.clear()
        self._tail = b""
        self.mode = mode
        if mode == "count" and not self.eio and type(self) is WsClient:
            # The hot path: a subclass whose data_received does nothing but count. uvloop keeps the
            # bound data_received of the protocol it was given, so hand it the protocol again.
            self.__class__ = CountingClient
            if self.transport is not None:
                self.transport.set_protocol(self)
        if leftover and mode != "frames":
            self.bytes_in -= len(leftover)
            self.data_received(leftover)

    def _parse(self) -> None:
        buf = self._buf
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            hdr = 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                hdr = 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                hdr = 10
            if b1 & 0x80:
                hdr += 4
            if size - pos < hdr + length:
                break
            payload = bytes(buf[pos + hdr : pos + hdr + length])
            pos += hdr + length
            self._frame(b0 & 0x80 != 0, b0 & 0x0F, payload)
        if pos:
            del buf[:pos]

    def _frame(self, fin: bool, opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            self.send(OP_PONG, payload)
            return
        if opcode == OP_PONG:
            return
        if opcode == OP_CLOSE:
            self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.send(OP_CLOSE, payload[:2])
            if self.transport is not None:
                self.transport.close()
            return
        if opcode == OP_CONT:
            if self._frag is None:
                return
            self._frag += payload
            if not fin:
                return
            payload, opcode, self._frag = bytes(self._frag), self._frag_op, None
        elif not fin:
            self._frag, self._frag_op = bytearray(payload), opcode
            return
        if self.eio and payload == b"2":
            self.shared.eio_pings += 1
            self.send_text("3")
            return
        if self.on_payload is not None:
            self.on_payload(self, opcode, payload)

    # sending

    def send(self, opcode: int, payload: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(opcode, payload))

    def send_text(self, text: str) -> None:
        self.send(OP_TEXT, text.encode())

    def send_binary(self, data: bytes) -> None:
        self.send(OP_BINARY, data)

    def write_raw(self, frames: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(frames)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(mask_frame(OP_CLOSE, struct.pack("!H", 1000)))
            self.transport.close()


_EDGE = len(MARK) - 1


class CountingClient(WsClient):
    """`count` mode without any other work: one C-level count per read plus the read's edges."""

    def data_received(self, data: bytes) -> None:
        self.bytes_in += len(data)
        n = data.count(MARK)
        if self._tail:
            n += (self._tail + data[:_EDGE]).count(MARK)
        self._tail = data[-_EDGE:]
        if n:
            self.count += n
            shared = self.shared
            shared.total += n
            if shared.total >= shared.wake_at:
                shared.wake.set()
