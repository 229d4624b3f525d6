"""Run `agentchat serve` as a real subprocess (for crash and restart tests)."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import sys
from typing import Any

from agentchat_server.auth import Authenticator
from tests.wire import UNIT


class ServerProcess:
    """A server subprocess on a free loopback port; `kill()` is SIGKILL, `stop()` is SIGTERM."""

    def __init__(self, db: str, *, key: str | None = None, **env: Any) -> None:
        self.db = db
        self.key = key or f"test:{secrets.token_urlsafe(24)}"
        self.env = {f"AGENTCHAT_{k.upper()}": str(v) for k, v in env.items()}
        self.proc: asyncio.subprocess.Process | None = None
        self.url = ""
        self.port = 0  # a restart listens on the same port, so clients reconnect to the same URL
        self.auth = Authenticator([self.key])

    @property
    def ws_url(self) -> str:
        """The WebSocket endpoint."""
        return self.url.replace("http://", "ws://") + "/v1/ws"

    @property
    def pid(self) -> int:
        """The server's process id."""
        assert self.proc is not None
        return self.proc.pid

    def token(self, client_id: str, **kw: Any) -> str:
        """A token signed with the server's key."""
        return self.auth.mint(client_id, **kw)[0]

    async def metric(self, name: str, **labels: str) -> float | None:
        """One value of the server's /metrics (None when the server has no such metric)."""
        import aiohttp

        async with aiohttp.ClientSession() as http, http.get(self.url + "/metrics") as resp:
            text = await resp.text()
        wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.split()[-1])
        return None

    async def start(self) -> None:
        env = {**os.environ, **self.env, "AGENTCHAT_KEYS": self.key}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agentchat_server",
            "serve",
            "--port",
            str(self.port),
            "--db",
            self.db,
            "--log-level",
            "WARNING",
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert self.proc.stdout is not None
        async with asyncio.timeout(UNIT * 6):
            while True:
                line = (await self.proc.stdout.readline()).decode()
                if not line:
                    raise RuntimeError("server exited before listening")
                if line.startswith("agentchat listening on "):
                    self.url = line.split()[-1]
                    self.port = int(self.url.rsplit(":", 1)[1])
                    return

    async def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        await self.proc.wait()

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(UNIT * 2):
                    await self.proc.wait()
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
