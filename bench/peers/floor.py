"""Minimal aiohttp fan-out servers that set the floor agentchat is compared with.

`--mode write`: the payload is encoded once and sent with one `ws.send_bytes` per subscriber (aiohttp
builds the frame header and writes per subscriber). `--mode coalesce`: the complete WebSocket frame
(server frames are unmasked, so identical for everyone) is built once, queued per subscriber, and each
subscriber's queue is written to its transport in one `write` per loop tick. `--mode tick`: batches the
way agentchat does: a room's frames of one loop tick are joined once, and the joined bytes go to each
subscriber in one `write`; `--pad-to` pads each frame to agentchat's bytes per delivery, so both move
the same bytes. All run on uvloop.

A `/ws?role=sub&room=R` connection joins room R (default `bench`). A publisher's frame fans out to the
room named by its first line when it starts with `@` (`@R\\n` + payload), else to its own `room`.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import struct

from aiohttp import WSMsgType, web

# Bounded per-subscriber buffer: past it the subscriber is dropped, as a real server must.
MAX_PENDING_BYTES = 1 << 20


def frame_bytes(opcode: int, payload: bytes) -> bytes:
    """A complete unmasked server frame, FIN set."""
    n = len(payload)
    if n < 126:
        return struct.pack("!BB", 0x80 | opcode, n) + payload
    if n < 65536:
        return struct.pack("!BBH", 0x80 | opcode, 126, n) + payload
    return struct.pack("!BBQ", 0x80 | opcode, 127, n) + payload


def padded_frame(opcode: int, payload: bytes, pad_to: int) -> bytes:
    """A frame whose total size is at least `pad_to` bytes (spaces appended to the payload)."""
    frame = frame_bytes(opcode, payload)
    if len(frame) >= pad_to:
        return frame
    extra = pad_to - len(frame)
    # Crossing 126 bytes of payload adds two header bytes; pad a little less to land on the target.
    longer = frame_bytes(opcode, payload + b" " * extra)
    if len(longer) > pad_to:
        longer = frame_bytes(opcode, payload + b" " * (extra - (len(longer) - pad_to)))
    return longer


def _write(transport: asyncio.Transport, data: bytes) -> None:
    if transport.is_closing():
        return
    if transport.get_write_buffer_size() + len(data) > MAX_PENDING_BYTES:
        transport.abort()
        return
    transport.write(data)


class Coalescer:
    """Per-subscriber pending frames, flushed once per loop tick with one write each."""

    def __init__(self) -> None:
        self.pending: dict[asyncio.Transport, list[bytes]] = {}
        self.scheduled = False

    def push(self, transport: asyncio.Transport, frame: bytes) -> None:
        queue = self.pending.get(transport)
        if queue is None:
            self.pending[transport] = [frame]
        else:
            queue.append(frame)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for transport, frames in pending.items():
            _write(transport, frames[0] if len(frames) == 1 else b"".join(frames))


class TickJoiner:
    """Per-room pending frames, joined once per loop tick and written to each subscriber at once."""

    def __init__(self, rooms: dict[str, dict[web.WebSocketResponse, asyncio.Transport]]) -> None:
        self.rooms = rooms
        self.pending: dict[str, list[bytes]] = {}
        self.scheduled = False

    def push(self, room: str, frame: bytes) -> None:
        queue = self.pending.get(room)
        if queue is None:
            self.pending[room] = [frame]
        else:
            queue.append(frame)
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        pending, self.pending = self.pending, {}
        for room, frames in pending.items():
            joined = frames[0] if len(frames) == 1 else b"".join(frames)
            for transport in self.rooms.get(room, {}).values():
                _write(transport, joined)


def build_app(mode: str, pad_to: int = 0) -> web.Application:
    """The floor server: `/ws` joins rooms and fans publishes out in the chosen `mode`."""
    rooms: dict[str, dict[web.WebSocketResponse, asyncio.Transport]] = {}
    coalescer = Coalescer()
    joiner = TickJoiner(rooms)

    async def fan_out(room: str, data: bytes, binary: bool) -> None:
        members = rooms.get(room)
        if not members:
            return
        if mode == "write":
            for ws in list(members):
                if binary:
                    await ws.send_bytes(data)
                else:
                    await ws.send_str(data.decode())
            return
        if mode == "tick":
            joiner.push(room, padded_frame(2 if binary else 1, data, pad_to))
            return
        frame = frame_bytes(2 if binary else 1, data)
        for transport in members.values():
            coalescer.push(transport, frame)

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=1 << 20)
        await ws.prepare(request)
        transport = request.transport
        own = request.query.get("room", "bench")
        if request.query.get("role") == "sub" and transport is not None:
            rooms.setdefault(own, {})[ws] = transport
        try:
            async for msg in ws:
                if msg.type not in (WSMsgType.BINARY, WSMsgType.TEXT):
                    continue
                binary = msg.type == WSMsgType.BINARY
                data: bytes = msg.data if binary else msg.data.encode()
                room = own
                if data[:1] == b"@":
                    head, _, data = data.partition(b"\n")
                    room = head[1:].decode()
                await fan_out(room, data, binary)
        finally:
            members = rooms.get(own)
            if members is not None:
                members.pop(ws, None)
        return ws

    app = web.Application()
    app.router.add_get("/ws", handler)
    return app


async def serve(mode: str, port: int, pad_to: int) -> None:
    runner = web.AppRunner(build_app(mode, pad_to), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"floor-{mode} listening on http://127.0.0.1:{bound}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["write", "coalesce", "tick"], required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pad-to", type=int, default=0, help="tick mode: pad frames to this many bytes")
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    import uvloop

    uvloop.run(serve(args.mode, args.port, args.pad_to))


if __name__ == "__main__":
    main()
