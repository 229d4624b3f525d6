"""An in-process server on a loopback port, for tests of bots, clients and the server itself."""

from __future__ import annotations

import os
import secrets
import struct
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from agentchat_server.app import AUTH, BROKER, PUBLIC_URL, build_app, runner_options
from agentchat_server.auth import Authenticator
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
        """The server's broker (for inspection in tests)."""
        assert self.app is not None, "server not started"
        return self.app[BROKER]

    @property
    def auth(self) -> Authenticator:
        """The server's token authority."""
        assert self.app is not None, "server not started"
        return self.app[AUTH]

    async def start(self) -> None:
        """Build the app and listen on a free loopback port."""
        self.app = build_app(self.settings)
        self._runner = web.AppRunner(self.app, shutdown_timeout=2.0, **runner_options(self.settings))
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
        await site.start()
        port = self._runner.addresses[0][1]  # the bound port (settings.port is 0)
        self.url = f"http://{self.settings.host}:{port}"
        self.ws_url = f"ws://{self.settings.host}:{port}/v1/ws"
        self.app[PUBLIC_URL].set(self.url)

    async def stop(self) -> None:
        """Shut the server down (streams end aborted, connections close 1001)."""
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
        display_name: str | None = None,
    ) -> str:
        """A token signed with the server's first key."""
        return self.auth.mint(
            client_id, kind=kind, capabilities=capabilities, ttl=ttl, display_name=display_name
        )[0]

    async def __aenter__(self) -> TestServer:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


def mask_frame(opcode: int, payload: bytes) -> bytes:
    """A complete masked client WebSocket frame (RFC 6455 section 5.3), FIN set: what raw test and
    load clients write when they bypass a WebSocket library."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    key = os.urandom(4)
    if n:
        repeated = (key * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(n, "big")
    else:
        masked = b""
    return header + key + masked
