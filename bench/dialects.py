"""How the load generator speaks to each server: connect, subscribe, and the bytes of one publish."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import quote

import jwt
import msgpack

from bench.wsclient import OP_BINARY, OP_TEXT, Shared, WsClient, mask_frame

HOST = "127.0.0.1"


class Dialect:
    """Base: a server reached by WebSocket where subscribers join one channel."""

    name = "base"

    def __init__(self, port: int, options: dict[str, Any]) -> None:
        self.port = port
        self.options = options

    async def subscriber(self, shared: Shared, channel: str, index: int) -> WsClient:
        raise NotImplementedError

    async def publisher(self, shared: Shared, index: int) -> WsClient:
        raise NotImplementedError

    def publish_frame(self, channel: str, payload: str, ref: int | None = None) -> bytes:
        """One complete masked frame that publishes `payload` to `channel`."""
        raise NotImplementedError

    def ping_frame(self) -> bytes | None:
        """A frame idle clients send to stay alive, or None when the server needs none."""
        return None


class _Replies:
    """Setup helper: decoded frames of one connection, awaited in order."""

    def __init__(self, decode: Any) -> None:
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.decode = decode

    def __call__(self, conn: WsClient, opcode: int, payload: bytes) -> None:
        self.queue.put_nowait(self.decode(payload))

    async def until(self, predicate: Any, wait_s: float = 30.0) -> Any:
        async with asyncio.timeout(wait_s):
            while True:
                item = await self.queue.get()
                if predicate(item):
                    return item
                if isinstance(item, dict) and item.get("type") in ("error", "nack"):
                    raise RuntimeError(f"server refused setup: {item}")


class Floor(Dialect):
    """The bench's aiohttp floor servers: `/ws?role=sub` joins, every frame a publisher sends fans out."""

    name = "floor"

    async def subscriber(self, shared: Shared, channel: str, index: int) -> WsClient:
        conn = WsClient(shared)
        await conn.open(HOST, self.port, f"/ws?role=sub&room={quote(channel)}")
        return conn

    async def publisher(self, shared: Shared, index: int) -> WsClient:
        conn = WsClient(shared)
        await conn.open(HOST, self.port, "/ws?role=pub")
        return conn

    def publish_frame(self, channel: str, payload: str, ref: int | None = None) -> bytes:
        # The room travels as a first line the floor strips; subscribers get the payload alone.
        return mask_frame(OP_BINARY, f"@{channel}\n{payload}".encode())


class SocketIO(Dialect):
    """Engine.IO 4 over WebSocket only; `40{"role": "sub"}` makes the server join the room."""

    name = "socketio"

    async def _open(self, shared: Shared, role: str, room: str = "") -> WsClient:
        replies = _Replies(lambda p: p.decode())
        conn = WsClient(shared, replies)
        conn.eio = True
        await conn.open(HOST, self.port, "/socket.io/?EIO=4&transport=websocket")
        await replies.until(lambda m: m.startswith("0"))
        conn.send_text("40" + json.dumps({"role": role, "room": room}))
        await replies.until(lambda m: m.startswith("40"))
        return conn

    async def subscriber(self, shared: Shared, channel: str, index: int) -> WsClient:
        return await self._open(shared, "sub", channel)

    async def publisher(self, shared: Shared, index: int) -> WsClient:
        return await self._open(shared, "pub")

    def publish_frame(self, channel: str, payload: str, ref: int | None = None) -> bytes:
        return mask_frame(OP_TEXT, ("42" + json.dumps(["pub", payload, channel])).encode())


class Redis(Dialect):
    """Redis pub/sub over RESP: subscribers SUBSCRIBE to the channel, publishers send PUBLISH."""

    name = "redis"

    async def subscriber(self, shared: Shared, channel: str, index: int) -> WsClient:
        conn = RespClient(shared)
        await conn.open_resp(HOST, self.port, resp_command(b"SUBSCRIBE", channel.encode()))
        return conn

    async def publisher(self, shared: Shared, index: int) -> WsClient:
        conn = RespClient(shared)
        await conn.open_resp(HOST, self.port, resp_command(b"PING"))
        conn.discard = True
        return conn

    def publish_frame(self, channel: str, payload: str, ref: int | None = None) -> bytes:
        return resp_command(b"PUBLISH", channel.encode(), payload.encode())


def resp_command(*parts: bytes) -> bytes:
    """One RESP array command."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RespClient(WsClient):
    """A plain TCP connection to Redis: the first reply (to SUBSCRIBE or PING) completes `open_resp`;
    later bytes go to the counting modes (markers are found in raw bytes whatever the framing)."""

    def __init__(self, shared: Shared) -> None:
        super().__init__(shared)
        self.discard = False

    async def open_resp(self, host: str, port: int, first: bytes, wait_s: float = 30.0) -> None:
        """Connect (retrying while redis-server starts) and wait for the reply to `first`."""
        loop = asyncio.get_running_loop()
        self._confirmed: asyncio.Future[None] = loop.create_future()
        for attempt in range(50):
            try:
                await asyncio.wait_for(loop.create_connection(lambda: self, host, port), wait_s)
                break
            except ConnectionRefusedError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        assert self.transport is not None
        self.transport.write(first)
        await asyncio.wait_for(self._confirmed, wait_s)

    def data_received(self, data: bytes) -> None:
        if self.discard:
            return
        if not self._confirmed.done():
            self._buf += data
            # SUBSCRIBE's reply ends with the subscription count (`:1`), PING's is `+PONG`.
            if self._buf.endswith(b"\r\n") and (b"\r\n:" in self._buf or self._buf.startswith(b"+")):
                self._buf.clear()
                self._confirmed.set_result(None)
            return
        super().data_received(data)


def mint_token(key_name: str, secret: str, client_id: str, ttl: int = 3600) -> str:
    """An HS256 JWT with every capability, as `agentchat token` would make."""
    now = int(time.time())
    claims = {"sub": client_id, "kind": "agent", "iat": now, "exp": now + ttl, "cap": {"*": ["*"]}}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": key_name})


class Agentchat(Dialect):
    """agentchat's wire protocol v1 over msgpack WebSocket frames (docs/protocol.md)."""

    name = "agentchat"

    def __init__(self, port: int, options: dict[str, Any]) -> None:
        super().__init__(port, options)
        self.key_name, self.secret = options["key"].split(":", 1)
        self.ephemeral = bool(options.get("ephemeral", True))
        self.format = str(options.get("format", "msgpack"))
        self._tokens: dict[str, str] = {}

    def encode(self, frame: dict[str, Any]) -> bytes:
        """One complete masked client frame in this connection's wire format."""
        if self.format == "json":
            return mask_frame(OP_TEXT, json.dumps(frame, separators=(",", ":")).encode())
        return mask_frame(OP_BINARY, msgpack.packb(frame))

    def decode(self, payload: bytes) -> Any:
        if self.format == "json":
            return json.loads(payload)
        return msgpack.unpackb(payload)

    def token(self, client_id: str) -> str:
        tok = self._tokens.get(client_id)
        if tok is None:
            tok = self._tokens[client_id] = mint_token(self.key_name, self.secret, client_id)
        return tok

    async def connect(
        self, shared: Shared, client_id: str, source: str | None = None
    ) -> tuple[WsClient, _Replies]:
        replies = _Replies(self.decode)
        conn = WsClient(shared, replies)
        await conn.open(HOST, self.port, f"/v1/ws?format={self.format}", source=source)
        conn.write_raw(self.encode({"type": "connect", "token": self.token(client_id)}))
        await replies.until(lambda m: m.get("type") == "connected")
        return conn, replies

    async def attach(self, conn: WsClient, replies: _Replies, channel: str) -> None:
        conn.write_raw(self.encode({"type": "attach", "ref": 1, "channel": channel, "presence": False}))
        await replies.until(lambda m: m.get("type") == "attached")

    async def subscriber(self, shared: Shared, channel: str, index: int) -> WsClient:
        conn, replies = await self.connect(shared, f"sub-{index}")
        await self.attach(conn, replies, channel)
        return conn

    async def publisher(self, shared: Shared, index: int) -> WsClient:
        conn, _ = await self.connect(shared, f"pub-{index}")
        return conn

    def publish_frame(self, channel: str, payload: str, ref: int | None = None) -> bytes:
        frame: dict[str, Any] = {"type": "publish", "channel": channel, "data": payload}
        if self.ephemeral:
            frame["ephemeral"] = True
        if ref is not None:
            frame["ref"] = ref
        return self.encode(frame)

    def ping_frame(self) -> bytes | None:
        return self.encode({"type": "ping"})


DIALECTS: dict[str, type[Dialect]] = {
    "floor": Floor,
    "socketio": SocketIO,
    "agentchat": Agentchat,
    "redis": Redis,
}
