"""Run `agentchat bot module:attr` as a real subprocess against a test server (kill, stop, stderr)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from agentchat_server.testing import TestServer
from tests.wire import UNIT

REPO = Path(__file__).resolve().parent.parent


class BotProcess:
    """One `python -m agentchat bot SPEC --url ...` with tokens minted from the server's key (so
    every start of the same bot has the same reply secret). `lines` gets its stderr lines."""

    def __init__(self, spec: str, server: TestServer, **env: str) -> None:
        self.spec = spec
        self.server = server
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.log: list[str] = []
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> BotProcess:
        env = {
            **os.environ,
            "AGENTCHAT_KEYS": self.server.settings.keys[0],
            "AGENTCHAT_LOG_LEVEL": "WARNING",
            **self.env,
        }
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "agentchat",
            "bot",
            self.spec,
            "--url",
            self.server.url,
            cwd=REPO,
            env=env,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        async for raw in self.process.stderr:
            line = raw.decode().rstrip()
            self.log.append(line)
            self.lines.put_nowait(line)

    async def kill(self) -> None:
        """SIGKILL: the bot dies at once, mid-whatever."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self) -> int | None:
        """SIGTERM (a graceful stop) unless it is gone already; its exit status."""
        assert self.process is not None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(UNIT * 2):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        return self.process.returncode
