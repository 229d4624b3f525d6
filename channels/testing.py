"""An in-process server on a loopback port, for tests of bots, clients and the server itself."""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from agentchat_server.app import BROKER, PUBLIC_URL, build_app
from agentchat_server.broker import Broker
from agentchat_server.settings import Settings


class TestServer:
    """`async with TestServer(tmp_path, **settings) as server:` serves on 127.0.0.1:<free port>.

    `server.url`, `server.ws_url`, `server.token(client_id, ...)`; `server.broker` for inspection.
    The database defaults to an SQLite file in `directory`."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: str | os.PathLike[str] | None = None, **overrides: Any) -> None:
        if directory is None:
            directory = tempfile.mkdtemp(prefix="agentchat-")
        self.directory = Path(directory)
        overrides.setdefault("db", f"sqlite+aiosqlite:///{self.directory / 'agentchat.db'}")
        overrides.setdefault("keys", [f"test:{secrets.token_urlsafe(24)}"])
        overrides.setdefault("host", "127.0.0.1")
        overrides.setdefault("port", 0)
        self.settings = Settings(**overrides)
        self._runner: web.AppRunner | None = None
        self.app: web.Application | None = None
        self.url = ""
        self.ws_url = ""

    @property
    def broker(self) -> Broker:
        assert self.app is not None, "server not started"
        return self.app[BROKER]

    async def start(self) -> None:
        self.app = build_app(self.settings)
        self._runner = web.AppRunner(self.app, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://{self.settings.host}:{port}"
        self.ws_url = f"ws://{self.settings.host}:{port}/v1/ws"
        self.app[PUBLIC_URL].set(self.url)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def token(
        self,
        client_id: str,
        *,
        kind: str = "human",
        capabilities: dict[str, list[str]] | None = None,
        ttl: int = 3600,
    ) -> str:
        """A token signed with the server's first key."""
        return self.broker.auth.mint(client_id, kind=kind, capabilities=capabilities, ttl=ttl)[0]

    async def __aenter__(self) -> TestServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()
