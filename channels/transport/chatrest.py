"""The REST side of group chat: the room directory, read marks and unread counts, and edits,
deletes and reactions for backends (history of a thread is `GET .../messages?thread=N`).

Same tokens, rights, limits and error bodies as the rest of the REST API.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from agentchat_server.auth import Authenticator
from agentchat_server.broker import Broker
from agentchat_server.protocol import (
    CHANNEL_PATTERN,
    Code,
    ProtocolError,
    RestEdit,
    RestRead,
    RestRoom,
    validation_message,
)
from agentchat_server.settings import Settings
from agentchat_server.transport.http import (
    bearer_token,
    channel_of,
    cors_allowed,
    error_response,
    json_body,
    rest_errors,
    serial_param,
)

Body = TypeVar("Body", bound=BaseModel)
_CHANNEL = re.compile(CHANNEL_PATTERN.removeprefix("^").removesuffix("$"))


class ChatRest:
    """The group chat REST handlers of one app."""

    def __init__(self, broker: Broker, auth: Authenticator, settings: Settings) -> None:
        self.chat = broker.chat
        self.auth = auth
        self.settings = settings

    async def _body(self, request: web.Request, model: type[Body]) -> Body:
        body = await json_body(request, self.settings.max_frame_bytes, self.settings.http_header_timeout)
        try:
            return model.model_validate(body)
        except ValidationError as exc:
            raise ProtocolError(Code.INVALID_FRAME, validation_message(exc)) from None

    async def rooms(self, request: web.Request) -> web.Response:
        """`GET /v1/rooms?after&prefix&limit`: one page of the directory."""
        identity = self.auth.verify(bearer_token(request))
        q = request.query
        after = _name(q.get("after"), "after")
        prefix = q.get("prefix") or None
        if prefix is not None and len(prefix) > 200:
            raise ProtocolError(Code.INVALID_VALUE, "prefix is at most 200 characters")
        limit = max(1, serial_param(q.get("limit"), "limit") or 50)
        return web.json_response(await self.chat.rooms(identity, after, prefix, limit))

    async def room(self, request: web.Request) -> web.Response:
        """`GET /v1/channels/{channel}/room`: one channel's directory entry."""
        identity = self.auth.verify(bearer_token(request))
        return web.json_response(await self.chat.room(identity, channel_of(request)))

    async def set_room(self, request: web.Request) -> web.Response:
        """`PUT /v1/channels/{channel}/room`: create or update its title and topic (`manage`)."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        body = await self._body(request, RestRoom)
        reply = await self.chat.set_room(identity, channel, body.title, body.topic, body.create)
        return web.json_response(reply, status=201 if body.create else 200)

    async def read(self, request: web.Request) -> web.Response:
        """`PUT /v1/channels/{channel}/read`: move the caller's read mark forward."""
        identity = self.auth.verify(bearer_token(request))
        channel = channel_of(request)
        body = await self._body(request, RestRead)
        return web.json_response(await self.chat.mark_read(identity, channel, body.serial))

    async def unread(self, request: web.Request) -> web.Response:
        """`GET /v1/unread?channels=a,b` or `?after=`: the caller's unread and mention counts."""
        identity = self.auth.verify(bearer_token(request))
        q = request.query
        listed = q.get("channels")
        channels = None
        if listed is not None:
            channels = [_name(name, "channels") or "" for name in listed.split(",")]
            if not 1 <= len(channels) <= 100:
                raise ProtocolError(Code.INVALID_VALUE, "channels lists 1 to 100 names")
        return web.json_response(await self.chat.unread(identity, channels, _name(q.get("after"), "after")))

    async def edit(self, request: web.Request) -> web.Response:
        """`PATCH /v1/channels/{channel}/messages/{serial}`: edit one's own message."""
        identity = self.auth.verify(bearer_token(request))
        channel, serial = channel_of(request), _serial(request)
        body = await self._body(request, RestEdit)
        return await _committed(self.chat.edit(identity, channel, serial, body.data, body.id))

    async def delete(self, request: web.Request) -> web.Response:
        """`DELETE /v1/channels/{channel}/messages/{serial}`: delete (own, or any with `moderate`)."""
        identity = self.auth.verify(bearer_token(request))
        channel, serial = channel_of(request), _serial(request)
        return await _committed(self.chat.delete(identity, channel, serial, None))

    async def react(self, request: web.Request) -> web.Response:
        """`PUT` (add) or `DELETE` (remove) `.../messages/{serial}/reactions/{reaction}`."""
        identity = self.auth.verify(bearer_token(request))
        channel, serial = channel_of(request), _serial(request)
        reaction = request.match_info["reaction"]
        remove = request.method == "DELETE"
        return await _committed(self.chat.react(identity, channel, serial, reaction, remove))


async def _committed(future: Any) -> web.Response:
    try:
        reply = await future
    except ProtocolError:
        raise
    except Exception:
        raise ProtocolError(Code.UNAVAILABLE, "store unavailable, retry") from None
    return web.json_response(reply)


def _serial(request: web.Request) -> int:
    serial = serial_param(request.match_info["serial"], "serial")
    assert serial is not None  # the route needs a non-empty segment
    return serial


def _name(value: str | None, what: str) -> str | None:
    """A channel name from a query string, matched whole; None when absent or empty."""
    if not value:
        return None
    if _CHANNEL.fullmatch(value) is None:
        raise ProtocolError(Code.INVALID_VALUE, f"{what}: invalid channel name")
    return value


def add_chat_routes(app: web.Application, rest: ChatRest, settings: Settings) -> None:
    """Mount the group chat routes and their CORS preflights."""
    r = app.router
    message = "/v1/channels/{channel}/messages/{serial}"
    reaction = message + "/reactions/{reaction}"
    r.add_get("/v1/rooms", rest_errors(rest.rooms))
    r.add_get("/v1/unread", rest_errors(rest.unread))
    r.add_get("/v1/channels/{channel}/room", rest_errors(rest.room))
    r.add_put("/v1/channels/{channel}/room", rest_errors(rest.set_room))
    r.add_put("/v1/channels/{channel}/read", rest_errors(rest.read))
    r.add_patch(message, rest_errors(rest.edit))
    r.add_delete(message, rest_errors(rest.delete))
    r.add_put(reaction, rest_errors(rest.react))
    r.add_delete(reaction, rest_errors(rest.react))

    async def preflight(request: web.Request) -> web.StreamResponse:
        if cors_allowed(request, settings) is None:
            return error_response(Code.ORIGIN_FORBIDDEN, "origin not allowed")
        return web.Response(status=204)

    for path in (
        "/v1/rooms",
        "/v1/unread",
        "/v1/channels/{channel}/room",
        "/v1/channels/{channel}/read",
        message,
        reaction,
    ):
        r.add_route("OPTIONS", path, preflight)
