"""Parts for tests with several real nodes: a redis-server of the test's own, on a free port it can
kill and restart, and a TCP proxy it can cut (never the machine's Redis or PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import shutil
import socket
from collections.abc import AsyncIterator
from typing import Any

from tests.conftest import need
from tests.server_process import ServerProcess
from tests.wire import UNIT


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A redis-server process of this test alone: `kill()` it, `start()` it again on the same port."""

    def __init__(self) -> None:
        need(shutil.which("redis-server") is not None, "redis-server is not installed")
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    def url(self, prefix: str = "") -> str:
        """The bus URL for nodes, with a key prefix of its own."""
        return f"redis://127.0.0.1:{self.port}/0?prefix={prefix or 'c' + secrets.token_hex(4)}"

    async def start(self) -> None:
        """Start (or restart) the server and wait until it answers."""
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(UNIT * 2):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.close()
                    return
                await asyncio.sleep(0.02)  # the process gives no readiness event

    async def kill(self) -> None:
        """SIGKILL the server (an outage)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


class TcpProxy:
    """Forwards a local port to a target; `cut()` drops every connection and refuses new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.server: asyncio.Server | None = None
        self.pipes: set[asyncio.Task[None]] = set()
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        """Listen (again)."""
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def cut(self) -> None:
        """Stop listening and close every connection through the proxy."""
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None
        for writer in list(self.writers):
            writer.transport.abort()
        for task in list(self.pipes):
            task.cancel()
        await asyncio.gather(*self.pipes, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers.update((writer, up_writer))
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(src, dst))
            self.pipes.add(task)
            task.add_done_callback(self.pipes.discard)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    try:
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()
    except (OSError, asyncio.CancelledError):
        pass
    finally:
        dst.transport.abort()


@contextlib.asynccontextmanager
async def cluster(db: str, bus: str, count: int, **env: Any) -> AsyncIterator[list[ServerProcess]]:
    """`count` node processes sharing one Store and one Redis, with one API key; all stopped after."""
    key = f"cluster:{secrets.token_urlsafe(24)}"
    nodes = [ServerProcess(db, key=key, bus=bus, **env) for _ in range(count)]
    try:
        for node in nodes:
            await node.start()
        yield nodes
    finally:
        for node in nodes:
            await node.stop()
