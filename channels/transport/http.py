"""REST and Server-Sent Events beside the socket, plus the error shape all HTTP replies share."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agentchat_server.auth import Identity
from agentchat_server.broker import Broker
from agentchat_server.broker.state import Connection
from agentchat_server.outbox import Outbox
from agentchat_server.protocol import (
    CHANNEL_PATTERN,
    Code,
    ProtocolError,
    RestPublish,
    TokenRequest,
    decode,
    validation_message,
)
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)
_CHANNEL = re.compile(CHANNEL_PATTERN)


def http_status(code: int) -> int:
    if code >= 80000:
        return 400
    return code // 100


def error_response(code: int, message: str, **details: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **details}}
    return web.json_response(body, status=http_status(code))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rest_errors(handler: Handler) -> Handler:
    """Map ProtocolError to its JSON body; never leak a traceback to the client.

    A decorator rather than a middleware: a middleware's frame would stay alive for the whole
    life of every WebSocket and SSE response, costing memory per connection."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ProtocolError as exc:
            return error_response(exc.code, exc.message, **exc.details)
        except (web.HTTPException, asyncio.CancelledError):
            raise
        except Exception:
            log.exception("internal error on %s %s", request.method, request.path)
            return error_response(Code.INTERNAL, "internal error")

    return wrapped


def check_origin(request: web.Request, settings: Settings) -> None:
    """Browsers send Origin: allow same-origin and the configured list (`*` allows any)."""
    origin = request.headers.get("Origin")
    if origin is None or cors_allowed(request, settings) is not None:
        return
    host = request.headers.get("Host", "")
    if origin in (f"http://{host}", f"https://{host}"):
        return
    raise ProtocolError(Code.ORIGIN_FORBIDDEN, "origin not allowed")


def cors_allowed(request: web.Request, settings: Settings) -> str | None:
    """The Origin to echo in CORS headers, if the settings allow it."""
    origin = request.headers.get("Origin")
    if origin is not None and ("*" in settings.allowed_origins or origin in settings.allowed_origins):
        return origin
    return None


def add_cors(settings: Settings) -> Callable[[web.Request, web.StreamResponse], Awaitable[None]]:
    """An on_response_prepare hook adding CORS headers for allowed origins."""

    async def hook(request: web.Request, response: web.StreamResponse) -> None:
        origin = cors_allowed(request, settings)
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Vary"] = "Origin"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Last-Event-ID"
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"

    return hook


class Rest:
    """The REST and SSE handlers of one app."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.settings = broker.settings

    def identity(self, request: web.Request) -> Identity:
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header.startswith("Bearer ") else None
        if token is None and request.method == "GET":
            token = request.query.get("token")
        if not token:
            raise ProtocolError(Code.UNAUTHORIZED, "token required (Authorization: Bearer)")
        return self.broker.auth.verify(token)

    @staticmethod
    def channel_of(request: web.Request) -> str:
        name = request.match_info["channel"]
        if not _CHANNEL.match(name):
            raise ProtocolError(Code.INVALID_VALUE, "invalid channel name")
        return name

    @staticmethod
    async def json_body(request: web.Request, limit: int) -> Any:
        if request.content_length is not None and request.content_length > limit:
            raise ProtocolError(Code.FRAME_TOO_LARGE, f"body exceeds {limit} bytes")
        raw = await request.content.read(limit + 1)
        if len(raw) > limit:
            raise ProtocolError(Code.FRAME_TOO_LARGE, f"body exceeds {limit} bytes")
        return decode(raw, "json")

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            await asyncio.wait_for(self.broker.store.ping(), 5)
        except Exception:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok", "node": self.broker.node_id})

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.broker.metrics.render(), content_type="text/plain")

    async def publish(self, request: web.Request) -> web.Response:
        identity = self.identity(request)
        channel = self.channel_of(request)
        body = await self.json_body(request, self.settings.max_frame_bytes)
        try:
            req = RestPublish.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None
        result = self.broker.publish(identity, channel, req.messages, req.if_serial)
        if isinstance(result, list):
            return web.json_response({"serials": result, "duplicates": []}, status=202)
        try:
            committed = await result
        except ProtocolError:
            raise
        except Exception:
            raise ProtocolError(Code.UNAVAILABLE, "store unavailable, retry") from None
        return web.json_response(self.broker.publish_reply(committed), status=201)

    async def history(self, request: web.Request) -> web.Response:
        identity = self.identity(request)
        channel = self.channel_of(request)
        q = request.query

        def serial(name: str) -> int | None:
            value = q.get(name)
            if value is None or value == "":
                return None
            if not value.isdigit() or len(value) > 16:
                raise ProtocolError(Code.INVALID_VALUE, f"{name} must be a serial")
            return int(value)

        limit = serial("limit") or 50
        direction = q.get("direction", "backwards")
        if direction not in ("backwards", "forwards"):
            raise ProtocolError(Code.INVALID_VALUE, "direction is backwards or forwards")
        page = await self.broker.history(
            identity,
            channel,
            before=serial("before"),
            after=serial("after"),
            limit=max(1, limit),
            forwards=direction == "forwards",
        )
        return web.json_response({"channel": channel, **page})

    async def presence(self, request: web.Request) -> web.Response:
        identity = self.identity(request)
        channel = self.channel_of(request)
        return web.json_response(
            {"channel": channel, "members": await self.broker.presence_members(identity, channel)}
        )

    async def occupancy(self, request: web.Request) -> web.Response:
        identity = self.identity(request)
        channel = self.channel_of(request)
        return web.json_response(
            {"channel": channel, "occupancy": await self.broker.occupancy(identity, channel)}
        )

    async def tokens(self, request: web.Request) -> web.Response:
        key_name = self.broker.auth.check_basic(request.headers.get("Authorization"))
        return await self._mint(request, key_name, dev=False)

    async def dev_token(self, request: web.Request) -> web.Response:
        return await self._mint(request, None, dev=True)

    async def _mint(self, request: web.Request, key_name: str | None, dev: bool) -> web.Response:
        body = await self.json_body(request, 16 * 1024)
        try:
            if dev and isinstance(body, dict):
                body = {
                    "client_id": body.get("client_id"),
                    "kind": body.get("kind", "human"),
                    "ttl": body.get("ttl", 3600),
                }
            req = TokenRequest.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None
        try:
            token, expires = self.broker.auth.mint(
                req.client_id, kind=req.kind, ttl=req.ttl, capabilities=req.capabilities, key_name=key_name
            )
        except ValueError as exc:
            raise ProtocolError(Code.INVALID_VALUE, str(exc)) from None
        return web.json_response({"token": token, "expires_at": expires, "client_id": req.client_id})

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-Sent Events for one channel; `Last-Event-ID` (epoch:serial) resumes it."""
        check_origin(request, self.settings)
        identity = self.identity(request)
        channel = self.channel_of(request)
        identity.require(channel, "subscribe")
        position: tuple[int, str | None] | None = None
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_event_id")
        if last_id:
            epoch, _, serial = last_id.rpartition(":")
            if not serial.isdigit() or len(serial) > 16:
                raise ProtocolError(Code.INVALID_VALUE, "Last-Event-ID is epoch:serial")
            position = (int(serial), epoch or None)
        elif request.query.get("after"):
            after = request.query["after"]
            if not after.isdigit() or len(after) > 16:
                raise ProtocolError(Code.INVALID_VALUE, "after must be a serial")
            position = (int(after), None)
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",
            }
        )
        await response.prepare(request)
        transport = request.transport
        assert transport is not None
        done = asyncio.get_running_loop().create_future()

        def closer(_code: int, _reason: str) -> None:
            if not done.done():
                done.set_result(None)

        # aiohttp framed the response as chunked; the outbox writes each flush as one chunk.
        outbox = Outbox(
            transport,
            self.settings.max_outbox_bytes,
            lambda: closer(0, "slow"),
            self.broker.flusher,
            chunked=True,
        )
        conn = self.broker.new_connection(identity, "json", outbox, closer, sse=True)
        self.broker.connect(conn, None)
        try:
            outbox.push(b"retry: 1000\n\n")
            await self._sse_attach(conn, channel, position)
            # The client never writes: the broker's sweep notices its transport closing.
            await done
        finally:
            self.broker.disconnect(conn, graceful=True)
        return response

    async def _sse_attach(
        self, conn: Connection, channel: str, position: tuple[int, str | None] | None
    ) -> None:
        await self.broker.attach(conn, channel, position, True, None)


def add_routes(app: web.Application, rest: Rest, settings: Settings) -> None:
    r = app.router
    r.add_get("/healthz", rest_errors(rest.healthz))
    r.add_get("/metrics", rest_errors(rest.metrics))
    r.add_post("/v1/tokens", rest_errors(rest.tokens))
    if settings.dev:
        r.add_post("/v1/dev/token", rest_errors(rest.dev_token))
    r.add_post("/v1/channels/{channel}/messages", rest_errors(rest.publish))
    r.add_get("/v1/channels/{channel}/messages", rest_errors(rest.history))
    r.add_get("/v1/channels/{channel}/presence", rest_errors(rest.presence))
    r.add_get("/v1/channels/{channel}/occupancy", rest_errors(rest.occupancy))
    r.add_get("/v1/channels/{channel}/events", rest_errors(rest.events))

    async def preflight(request: web.Request) -> web.StreamResponse:
        if cors_allowed(request, settings) is None:
            return error_response(Code.ORIGIN_FORBIDDEN, "origin not allowed")
        return web.Response(status=204)

    for path in (
        "/v1/tokens",
        "/v1/channels/{channel}/messages",
        "/v1/channels/{channel}/presence",
        "/v1/channels/{channel}/occupancy",
        "/v1/channels/{channel}/events",
    ):
        r.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(add_cors(settings))
