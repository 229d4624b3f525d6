"""What every HTTP reply shares: the error shape, strict parsing of path and query values, CORS."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agentchat_server.protocol import CHANNEL_PATTERN, MAX_SERIAL, Code, ProtocolError, decode
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)
_CHANNEL = re.compile(CHANNEL_PATTERN.removeprefix("^").removesuffix("$"))
_DIGITS = re.compile(r"[0-9]{1,16}")


def http_status(code: int) -> int:
    """The HTTP status of a protocol error code."""
    if code >= 80000:
        return 400
    return code // 100


def error_response(code: int, message: str, **details: Any) -> web.Response:
    """`{"error": {"code", "message", ...}}` with the code's status; `Retry-After` when rate limited."""
    body = {"error": {"code": code, "message": message, **details}}
    response = web.json_response(body, status=http_status(code))
    retry_after = details.get("retry_after")
    if isinstance(retry_after, int | float):
        response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
    return response


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


def channel_of(request: web.Request) -> str:
    """The `{channel}` path segment, matched whole against the channel pattern."""
    name = request.match_info["channel"]
    if _CHANNEL.fullmatch(name) is None:
        raise ProtocolError(Code.INVALID_VALUE, "invalid channel name")
    return name


def serial_param(value: str | None, name: str) -> int | None:
    """A serial from a query string or header: ASCII digits only (no signs, spaces or other
    scripts' digits), at most 2**53 - 1; None when absent or empty."""
    if value is None or value == "":
        return None
    if _DIGITS.fullmatch(value) is None or int(value) > MAX_SERIAL:
        raise ProtocolError(Code.INVALID_VALUE, f"{name} must be a serial (ASCII digits)")
    return int(value)


def choice_param(value: str | None, name: str, choices: tuple[str, ...]) -> str:
    """A query value that is one of `choices` (the first when absent or empty)."""
    if value is None or value == "":
        return choices[0]
    if value not in choices:
        raise ProtocolError(Code.INVALID_VALUE, f"{name} is one of {', '.join(choices)}")
    return value


async def json_body(request: web.Request, limit: int, within: float) -> Any:
    """The request body as JSON: refused (41300) beyond `limit` bytes before it is read whole, and
    (40800) when it does not arrive within `within` seconds (a client trickling a body)."""
    if request.content_length is not None and request.content_length > limit:
        raise ProtocolError(Code.FRAME_TOO_LARGE, f"body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(within):
            while chunk := await request.content.read(limit + 1 - size):
                parts.append(chunk)
                size += len(chunk)
                if size > limit:
                    raise ProtocolError(Code.FRAME_TOO_LARGE, f"body exceeds {limit} bytes")
    except TimeoutError:
        raise ProtocolError(Code.REQUEST_TIMEOUT, f"the body did not arrive within {within:g} s") from None
    return decode(b"".join(parts), "json")


def bearer_token(request: web.Request) -> str:
    """The request's token: `Authorization: Bearer`, or `?token=` on GET (for EventSource)."""
    header = request.headers.get("Authorization", "")
    token = header[7:].strip() if header.startswith("Bearer ") else None
    if token is None and request.method == "GET":
        token = request.query.get("token")
    if not token:
        raise ProtocolError(Code.UNAUTHORIZED, "token required (Authorization: Bearer)")
    return token


def client_address(request: web.Request) -> str:
    """The peer's address, the key of per-source limits."""
    return request.remote or "unknown"


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
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
            response.headers["Access-Control-Expose-Headers"] = "Retry-After"

    return hook
