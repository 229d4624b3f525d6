"""Shared pieces of the SDK tests: the time unit, socket cutting, a freezable loopback relay."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentchat import Bot, Client, Message, Subscription
from agentchat.connection import cut
from agentchat_server.testing import TestServer
from tests.wire import UNIT

# Every bound in these tests is a multiple of UNIT, so a slow machine can scale them all at once.
WAIT = 2 * UNIT


def cut_connection(client: Client) -> None:
    """Shut the client's socket down with no close frame: both ends see an abrupt drop."""
    link = client._link
    assert link is not None, "client is not connected"
    cut(link.ws)


async def next_message(subscription: Subscription) -> Message:
    """The next durable message of `subscription`, within WAIT."""
    async with asyncio.timeout(WAIT):
        return await anext(subscription)


async def messages_until(subscription: Subscription, done: Callable[[Message], bool]) -> list[Message]:
    """Messages from `subscription` up to and including the first for which `done` is true (within WAIT)."""
    seen: list[Message] = []
    async with asyncio.timeout(WAIT):
        async for message in subscription:
            seen.append(message)
            if done(message):
                return seen
    raise AssertionError("subscription ended early")


class Relay:
    """A loopback TCP relay in front of the server: `freeze()` silences live connections without
    closing them (a dead path), `hold_replies()` silences only the server's side (replies are lost,
    requests still arrive), `cut()` drops them; new connections relay normally."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.url = ""
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._pipes: list[tuple[asyncio.Task[None], asyncio.Task[None], list[asyncio.StreamWriter]]] = []

    async def __aenter__(self) -> Relay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    def freeze(self) -> None:
        for up, down, _ in self._pipes:
            up.cancel()
            down.cancel()

    def hold_replies(self) -> None:
        """Stop passing what the server sends on live connections; what clients send still arrives."""
        for _, down, _ in self._pipes:
            down.cancel()

    def cut(self) -> None:
        self.freeze()
        for _, _, writers in self._pipes:
            for writer in writers:
                writer.transport.abort()
        self._pipes.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        up = asyncio.create_task(_pump(reader, upstream_writer))
        down = asyncio.create_task(_pump(upstream_reader, writer))
        self._pipes.append((up, down, [writer, upstream_writer]))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()


async def aiter_list(items: list[str]) -> AsyncIterator[str]:
    """An async iterator over `items` (a stand-in model that answers at once)."""
    for item in items:
        yield item


class StreamView:
    """What a reader shows for one stream: the snapshot then chunks in index order, no repeats."""

    def __init__(self) -> None:
        self.text = ""
        self.next = 0
        self.repeats = 0

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "stream_snapshot":
            self.text, self.next = frame["content"], frame["next"]
        elif frame["type"] == "stream_open":
            self.text, self.next = "", 0
        elif frame["type"] == "stream_chunk":
            if frame["i"] < self.next:
                self.repeats += 1
                return
            assert frame["i"] == self.next, f"chunk {frame['i']} arrived, expected {self.next}"
            self.text += frame["d"]
            self.next += 1


@contextlib.asynccontextmanager
async def running(bot: Bot, server: TestServer, **options: Any) -> AsyncIterator[asyncio.Task[None]]:
    """Run `bot` in a task until the block ends, then stop it gracefully."""

    def provider() -> str:
        return server.token(bot.client_id, kind="agent")

    task = asyncio.create_task(bot.run(server.url, token_provider=provider, **options))
    try:
        async with asyncio.timeout(WAIT):
            ready = asyncio.create_task(bot.wait_ready())
            await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                task.result()
        yield task
    finally:
        bot.stop()
        async with asyncio.timeout(WAIT):
            await task
