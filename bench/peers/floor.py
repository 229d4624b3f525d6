"""Minimal aiohttp fan-out servers that set the floor agentchat is compared with.

`--mode write`: the payload is encoded once and sent with one `ws.send_bytes` per subscriber (aiohttp
builds the frame header and writes per subscriber). `--mode coalesce`: the complete WebSocket frame
(server frames are unmasked, so identical for everyone) is built once, queued per subscriber, and each
subscriber's queue is written to its transport in one `write` per loop tick. Both run on uvloop.
A `/ws?role=sub` connection joins the one channel; every frame from a `role=pub` connection fans out.
"""

from __future__ import annotations

import argparse
import asyncio
import struct

from aiohttp import WSMsgType, web

# Bounded per-subscriber queue for the coalescing floor: past it the subscriber is dropped.
MAX_PENDING_BYTES = 1 << 20


def frame_bytes(opcode: int, payload: bytes) -> bytes:
    """A complete unmasked server frame, FIN set."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


class Coalescer:
    """Per-subscriber pending frames, flushed once per loop tick with one write each."""

    def __init__(self) -> None:
        self.pending: dict[asyncio.Transport, list[bytes]] = {}
        self.sizes: dict[asyncio.Transport, int] = {}
        self.scheduled = False

    def push(self, transport: asyncio.Transport, frame: bytes) -> None:
        queue = self.pending.get(transport)
        if queue is None:
            self.pending[transport] = [frame]
            self.sizes[transport] = len(frame)
        else:
            queue.append(frame)
            self.sizes[transport] += len(frame)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        sizes, self.sizes = self.sizes, {}
        for transport, frames in pending.items():
            if transport.is_closing():
                continue
            if transport.get_write_buffer_size() + sizes[transport] > MAX_PENDING_BYTES:
                transport.abort()
                continue
            transport.write(frames[0] if len(frames) == 1 else b"".join(frames))


def build_app(mode: str) -> web.Application:
    subscribers: dict[web.WebSocketResponse, asyncio.Transport] = {}
    coalescer = Coalescer()

    async def fan_out(data: bytes, binary: bool) -> None:
        if mode == "write":
            for ws in list(subscribers):
                if binary:
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data.decode())
            return
        frame = frame_bytes(2 if binary else 1, data)
        for transport in subscribers.values():
            coalescer.push(transport, frame)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        if request.query.get("role") == "sub" and transport is not None:
            subscribers[ws] = transport
        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    await fan_out(msg.data, True)
                elif msg.type == WSMsgType.TEXT:
                    await fan_out(msg.data.encode(), False)
        finally:
            subscribers.pop(ws, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


async def serve(mode: str, port: int) -> None:
    runner = web.AppRunner(build_app(mode), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"floor-{mode} listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["write", "coalesce"], required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    import uvloop

    uvloop.run(serve(args.mode, args.port))


if __name__ == "__main__":
    main()
