"""A raw protocol client for tests: frames in, frames out, over a real loopback WebSocket."""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import aiohttp

from agentchat_server.protocol import Format, decode, encode
from agentchat_server.testing import mask_frame

# One unit of waiting; slow machines scale it with AGENTCHAT_TEST_UNIT.
UNIT = float(os.environ.get("AGENTCHAT_TEST_UNIT", "5"))


class Wire:
    """One connection. Replies (by ref) resolve `request`; everything else lands in `inbox`."""

    def __init__(self, http: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, fmt: Format) -> None:
        self.http = http
        self.ws = ws
        self.fmt: Format = fmt
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.refs = itertools.count(1)
        self.connected: dict[str, Any] = {}
        self.close_code: int | None = None
        self.closed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        url: str,
        token: str | None,
        *,
        fmt: Format = "json",
        resume: dict[str, str] | None = None,
        connect: bool = True,
    ) -> Wire:
        http = aiohttp.ClientSession()
        ws = await http.ws_connect(f"{url}?format={fmt}", max_msg_size=0, autoping=True)
        wire = cls(http, ws, fmt)
        wire._reader = asyncio.create_task(wire._read())
        if connect:
            frame: dict[str, Any] = {"type": "connect", "token": token}
            if resume is not None:
                frame["resume"] = resume
            await wire.send(frame)
            wire.connected = await wire.expect("connected")
        return wire

    async def _read(self) -> None:
        try:
            async for msg in self.ws:
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    frame = decode(msg.data, self.fmt)
                    ref = frame.get("ref")
                    if (
                        ref is not None
                        and ref in self.pending
                        and frame["type"] in ("ack", "nack", "attached", "detached")
                    ):
                        future = self.pending.pop(ref)
                        if not future.done():
                            future.set_result(frame)
                        if frame["type"] != "attached":
                            continue
                    self.inbox.put_nowait(frame)
        except (aiohttp.ClientError, ConnectionError):
            pass
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(ConnectionError("connection closed"))

    @property
    def resume_token(self) -> dict[str, str]:
        return {"session_id": self.connected["session_id"], "key": self.connected["key"]}

    async def send(self, frame: dict[str, Any]) -> None:
        data = encode(frame, self.fmt)
        if self.fmt == "json":
            await self.ws.send_str(data.decode())
        else:
            await self.ws.send_bytes(data)

    async def send_raw(self, data: bytes | str) -> None:
        if isinstance(data, str):
            await self.ws.send_str(data)
        else:
            await self.ws.send_bytes(data)

    def send_together(self, frames: list[dict[str, Any]]) -> None:
        """Write several frames in one TCP write, so the server reads them in one loop tick."""
        opcode = 0x1 if self.fmt == "json" else 0x2
        self.ws._writer.transport.write(b"".join(mask_frame(opcode, encode(f, self.fmt)) for f in frames))

    async def request(self, frame: dict[str, Any], timeout: float = UNIT) -> dict[str, Any]:
        """Send a frame with a fresh ref; return its ack/nack/attached/detached reply."""
        ref = next(self.refs)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[ref] = future
        await self.send({**frame, "ref": ref})
        async with asyncio.timeout(timeout):
            return await future

    async def expect(self, kind: str, timeout: float = UNIT, **match: Any) -> dict[str, Any]:
        """The next inbox frame of this type (and fields); frames skipped on the way are dropped."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.inbox.get()
                if frame["type"] == kind and all(frame.get(k) == v for k, v in match.items()):
                    return frame

    async def messages(
        self, count: int, channel: str | None = None, timeout: float = UNIT * 6
    ) -> list[dict[str, Any]]:
        """The next `count` durable messages (of one channel, if given)."""
        found: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout):
            while len(found) < count:
                frame = await self.inbox.get()
                if frame["type"] == "message" and frame.get("serial") is not None:
                    if channel is None or frame["channel"] == channel:
                        found.append(frame)
        return found

    def cut(self) -> None:
        """Drop the connection abruptly, as a network failure would (no close frame)."""
        transport = self.ws._writer.transport
        transport.abort()

    async def close(self, code: int = 1000) -> None:
        if not self.ws.closed:
            await self.ws.close(code=code)
        if self._reader is not None:
            try:
                async with asyncio.timeout(UNIT):
                    await self._reader
            except TimeoutError:
                self._reader.cancel()
        await self.http.close()
