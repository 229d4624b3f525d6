"""The REST API beside the socket: publish, history, presence, occupancy, input requests (list and
answer), tokens, health, metrics.

Every handler answers errors as `{"error": {...}}` with the code's HTTP status; rate limits answer
429 with `Retry-After`. Failed API-key attempts are counted per source address: after a burst
of failures the address is blocked, and the block doubles with each failure while blocked.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agentchat_server.auth import Authenticator
from agentchat_server.broker import Broker
from agentchat_server.core.ratelimit import FailureGuard, KeyedBuckets
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import (
    AnswerBody,
    Code,
    ProtocolError,
    RestPublish,
    TokenRequest,
    validation_message,
)
from agentchat_server.settings import Settings
from agentchat_server.transport.http import (
    add_cors,
    bearer_token,
    channel_of,
    choice_param,
    client_address,
    cors_allowed,
    error_response,
    json_body,
    rest_errors,
    serial_param,
)
from agentchat_server.transport.sse import SseEndpoint


class Rest:
    """The REST handlers of one app."""

    def __init__(self, broker: Broker, auth: Authenticator, settings: Settings, metrics: Metrics) -> None:
        self.broker = broker
        self.auth = auth
        self.settings = settings
        self.metrics = metrics
        self._key_failures = FailureGuard(settings.auth_failure_rate, settings.auth_failure_burst)
        self._mints = KeyedBuckets(settings.mint_rate, settings.mint_burst)

    async def healthz(self, request: web.Request) -> web.Response:
        """`{"status": "ok"}` when the Store answers within 5 s, else 503."""
        try:
            await asyncio.wait_for(self.broker.ping_store(), 5)
        except Exception:
            return web.json_response({"status": "unavailable"}, status=503)
        return web.json_response({"status": "ok", "node": self.broker.node_id})

    async def metrics_text(self, request: web.Request) -> web.Response:
        """Prometheus metrics."""
        return web.Response(body=self.metrics.render(), content_type="text/plain")

    async def publish(self, request: web.Request) -> web.Response:
        """`POST /v1/channels/{channel}/messages`: 201 once committed (202 for ephemeral)."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        body = await json_body(request, self.settings.max_frame_bytes, self.settings.http_header_timeout)
        try:
            req = RestPublish.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None
        ephemeral = req.messages[0].ephemeral
        try:
            reply = await self.broker.publish(identity, channel, req.messages, req.if_serial)
        except ProtocolError:
            raise
        except Exception:
            raise ProtocolError(Code.UNAVAILABLE, "store unavailable, retry") from None
        return web.json_response(reply, status=202 if ephemeral else 201)

    async def history(self, request: web.Request) -> web.Response:
        """`GET /v1/channels/{channel}/messages?before&after&limit&direction&thread&view`."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        q = request.query
        direction = q.get("direction", "backwards")
        if direction not in ("backwards", "forwards"):
            raise ProtocolError(Code.INVALID_VALUE, "direction is backwards or forwards")
        view = q.get("view", "all")
        if view not in ("all", "main"):
            raise ProtocolError(Code.INVALID_VALUE, "view is all or main")
        page = await self.broker.history_page(
            identity,
            channel,
            before=serial_param(q.get("before"), "before"),
            after=serial_param(q.get("after"), "after"),
            limit=max(1, serial_param(q.get("limit"), "limit") or 50),
            forwards=direction == "forwards",
            thread=serial_param(q.get("thread"), "thread"),
            main=view == "main",
            to_me=choice_param(q.get("filter"), "filter", ("all", "to_me")) == "to_me",
        )
        return web.json_response({"channel": channel, **page})

    async def requests(self, request: web.Request) -> web.Response:
        """`GET /v1/channels/{channel}/requests?status&mine&after&limit`: input requests, a page."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        q = request.query
        page = await self.broker.requests_page(
            identity,
            channel,
            status=choice_param(q.get("status"), "status", ("pending", "closed", "any")),
            mine=choice_param(q.get("mine"), "mine", ("false", "true")) == "true",
            after=serial_param(q.get("after"), "after"),
            limit=min(200, max(1, serial_param(q.get("limit"), "limit") or 50)),
        )
        return web.json_response({"channel": channel, **page})

    async def answer(self, request: web.Request) -> web.Response:
        """`POST /v1/channels/{channel}/requests/{request_id}/answer`: 201 once the answer is committed."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        request_id = request.match_info["request_id"]
        if not 1 <= len(request_id) <= 64:
            raise ProtocolError(Code.INVALID_VALUE, "invalid request id")
        body = await json_body(request, self.settings.max_frame_bytes, self.settings.http_header_timeout)
        try:
            answer = AnswerBody.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None
        reply = await self.broker.answer(identity, channel, request_id, answer)
        return web.json_response(reply, status=201)

    async def presence(self, request: web.Request) -> web.Response:
        """`GET /v1/channels/{channel}/presence?after=<connection_id>`: one page of entries."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        after = request.query.get("after") or None
        if after is not None and len(after) > 64:
            raise ProtocolError(Code.INVALID_VALUE, "after is a connection id")
        page = await self.broker.presence_page(identity, channel, after)
        return web.json_response({"channel": channel, **page})

    async def occupancy(self, request: web.Request) -> web.Response:
        """`GET /v1/channels/{channel}/occupancy`."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        occupancy = await self.broker.occupancy(identity, channel)
        return web.json_response({"channel": channel, "occupancy": occupancy})

    async def tokens(self, request: web.Request) -> web.Response:
        """`POST /v1/tokens` with an API key (Basic auth)."""
        address = client_address(request)
        now = time.monotonic()
        wait = self._key_failures.blocked(address, now)
        if wait:
            raise ProtocolError(
                Code.RATE_LIMITED, "too many failed API key attempts", retry_after=round(wait, 3)
            )
        try:
            key_name = self.auth.check_basic(request.headers.get("Authorization"))
        except ProtocolError:
            self._key_failures.failed(address, now)
            raise
        return await self._mint(request, key_name, f"key:{key_name}", dev=False)

    async def dev_token(self, request: web.Request) -> web.Response:
        """`POST /v1/dev/token` (development mode only): a token for anyone who asks."""
        return await self._mint(request, None, f"dev:{client_address(request)}", dev=True)

    async def _mint(self, request: web.Request, key_name: str | None, bucket: str, dev: bool) -> web.Response:
        wait = self._mints.take(bucket, time.monotonic())
        if wait:
            raise ProtocolError(Code.RATE_LIMITED, "token minting rate exceeded", retry_after=round(wait, 3))
        body = await json_body(request, 16 * 1024, self.settings.http_header_timeout)
        try:
            if dev and isinstance(body, dict):
                body = {k: v for k, v in body.items() if k in ("client_id", "kind", "ttl", "display_name")}
            req = TokenRequest.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None
        try:
            token, expires = self.auth.mint(
                req.client_id,
                kind=req.kind,
                ttl=req.ttl,
                capabilities=req.capabilities,
                key_name=key_name,
                display_name=req.display_name,
            )
        except ValueError as exc:
            raise ProtocolError(Code.INVALID_VALUE, str(exc)) from None
        reply: dict[str, Any] = {"token": token, "expires_at": expires, "client_id": req.client_id}
        if req.display_name is not None:
            reply["display_name"] = req.display_name
        return web.json_response(reply)


def add_routes(app: web.Application, rest: Rest, sse: SseEndpoint, settings: Settings) -> None:
    """Mount the REST and SSE routes, their CORS preflights and headers."""
    r = app.router
    r.add_get("/healthz", rest_errors(rest.healthz))
    r.add_get("/metrics", rest_errors(rest.metrics_text))
    r.add_post("/v1/tokens", rest_errors(rest.tokens))
    if settings.dev:
        r.add_post("/v1/dev/token", rest_errors(rest.dev_token))
    r.add_post("/v1/channels/{channel}/messages", rest_errors(rest.publish))
    r.add_get("/v1/channels/{channel}/messages", rest_errors(rest.history))
    r.add_get("/v1/channels/{channel}/presence", rest_errors(rest.presence))
    r.add_get("/v1/channels/{channel}/occupancy", rest_errors(rest.occupancy))
    r.add_get("/v1/channels/{channel}/requests", rest_errors(rest.requests))
    r.add_post("/v1/channels/{channel}/requests/{request_id}/answer", rest_errors(rest.answer))
    r.add_get("/v1/channels/{channel}/events", rest_errors(sse.handle))

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
        "/v1/channels/{channel}/requests",
        "/v1/channels/{channel}/requests/{request_id}/answer",
    ):
        r.add_route("OPTIONS", path, preflight)
    app.on_response_prepare.append(add_cors(settings))
