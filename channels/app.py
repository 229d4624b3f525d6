"""The composition root: builds the Store, Bus, broker and the aiohttp app from Settings."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from agentchat_server.auth import Authenticator
from agentchat_server.backends import make_backends
from agentchat_server.broker import Broker
from agentchat_server.broker.tick import Flusher
from agentchat_server.metrics import Metrics
from agentchat_server.settings import Settings
from agentchat_server.transport.chatrest import ChatRest, add_chat_routes
from agentchat_server.transport.rest import Rest, add_routes
from agentchat_server.transport.sse import SseEndpoint
from agentchat_server.transport.ws import WebSocketEndpoint

log = logging.getLogger(__name__)


class PublicUrl:
    """The URL the server listens on, known only once its socket is bound (port 0)."""

    def __init__(self) -> None:
        self.url = ""
        self.ready = asyncio.Event()

    def set(self, url: str) -> None:
        """Record the URL and wake whoever waits for it."""
        self.url = url
        self.ready.set()


BROKER = web.AppKey("broker", Broker)
SETTINGS = web.AppKey("settings", Settings)
AUTH = web.AppKey("auth", Authenticator)
PUBLIC_URL = web.AppKey("public_url", PublicUrl)
_STATIC = re.compile(r"^[A-Za-z0-9_\-]+\.(js|css|html|svg|png|ico|webmanifest)$")
_TYPES = {
    "js": "text/javascript",
    "css": "text/css",
    "html": "text/html",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
    "webmanifest": "application/manifest+json",
}


def web_root() -> Path:
    """The web app's directory: `web/` in the source tree, `agentchat_server/web` when installed."""
    import importlib.util

    spec = importlib.util.find_spec("agentchat_server.web")
    assert spec is not None and spec.submodule_search_locations, "agentchat_server.web is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def runner_options(settings: Settings) -> dict[str, Any]:
    """aiohttp runner options: `keepalive_timeout` also closes a connection that has not finished
    its request headers in time (a slow or idle HTTP client), so none can hold a socket forever."""
    return {"handle_signals": False, "keepalive_timeout": settings.http_header_timeout}


def build_app(settings: Settings) -> web.Application:
    """The composition root: one app per server, nothing global; every object is built here."""
    metrics = Metrics()
    auth = Authenticator(settings.keys)
    flusher = Flusher()
    broker = Broker(settings, make_backends(settings), auth, metrics, flusher)
    app = web.Application(client_max_size=settings.max_frame_bytes)
    app[SETTINGS] = settings
    app[BROKER] = broker
    app[AUTH] = auth
    app[PUBLIC_URL] = PublicUrl()
    ws = WebSocketEndpoint(broker, auth, settings, flusher, metrics)
    app.router.add_get("/v1/ws", ws.handle)
    sse = SseEndpoint(broker, auth, settings, flusher, metrics)
    add_routes(app, Rest(broker, auth, settings, metrics), sse, settings)
    add_chat_routes(app, ChatRest(broker, auth, settings), settings)
    root = web_root()

    async def index(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(root / "index.html", headers={"Cache-Control": "no-cache"})

    async def static(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = root / request.match_info.get("folder", "") / name
        if not _STATIC.match(name) or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(
            path, headers={"Content-Type": _TYPES[name.rsplit(".", 1)[1]], "Cache-Control": "no-cache"}
        )

    app.router.add_get("/", index)
    app.router.add_get("/{name}", static)
    app.router.add_get("/{folder:vendor}/{name}", static)  # vendored browser libraries (web/vendor/)
    app.cleanup_ctx.append(_lifecycle)
    app.on_shutdown.append(_shutdown)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    broker = app[BROKER]
    await broker.start()
    demo: asyncio.Task[Any] | None = None
    if broker.settings.demo:
        demo = asyncio.create_task(_run_demo(app), name="agentchat-demo")
    yield
    if demo is not None:
        demo.cancel()
        await asyncio.gather(demo, return_exceptions=True)
    if not broker.closing:
        await broker.close()


async def _shutdown(app: web.Application) -> None:
    await app[BROKER].close()


async def _run_demo(app: web.Application) -> None:
    """Run the demo agents (`python -m agentchat demo`, the SDK's own entry point) as a child
    process talking to this server over loopback; it mints their tokens with this server's key.
    The server never imports the SDK."""
    await app[PUBLIC_URL].ready.wait()
    settings = app[SETTINGS]
    name, secret = next(iter(app[AUTH].keys.items()))
    env = {**os.environ, "AGENTCHAT_KEYS": f"{name}:{secret}"}
    command = [sys.executable, "-m", "agentchat", "demo", "--url", app[PUBLIC_URL].url]
    child = await asyncio.create_subprocess_exec(*command, "--channel", settings.demo_channel, env=env)
    try:
        code = await child.wait()
        log.warning("the demo agents exited with code %s", code)
    finally:
        if child.returncode is None:
            child.terminate()
            try:
                async with asyncio.timeout(5):
                    await child.wait()
            except TimeoutError:
                child.kill()
                await child.wait()
