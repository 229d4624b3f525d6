"""The SDK's first-hour edges, each against a real server: turn taking in replies, history paging,
subscribe guarantees, assembled streams, dev tokens, waiting for a server, reply ids."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentchat import (
    Backoff,
    Bot,
    Client,
    ConflictError,
    Context,
    DevModeOff,
    HistoryPage,
    Message,
    RequestError,
    ServerUnavailable,
    StreamUpdate,
    dev_token,
)
from agentchat.examples import echo
from agentchat.replies import SECRET_ENV, reply_id, secret_from_key
from agentchat.tokens import mint_token
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, next_message, running
from tests.wire import UNIT

FAST = Backoff(initial=0.02, maximum=0.2)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# --- ctx.reply(if_serial=...) ------------------------------------------------------------------


async def test_reply_with_if_serial_takes_turns(server: TestServer) -> None:
    """`ctx.reply(if_serial=...)` refuses a stale turn with ConflictError and keeps its id for the retry."""
    conflicts: list[int | None] = []
    bot = Bot("turns")

    @bot.on_message(when=lambda m: m.text == "question")
    async def answer(context: Context) -> None:
        assert context.message.serial is not None
        try:
            await context.reply("too early", if_serial=context.message.serial)
        except ConflictError as conflict:
            conflicts.append(conflict.last_serial)
            await context.reply("after the interruption", if_serial=conflict.last_serial)

    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = await room.subscribe()
        # One atomic batch: the interruption is committed before the bot can answer the question.
        question, interruption = await room.publish_many([{"data": "question"}, {"data": "interruption"}])
        got = await messages_until(subscription, lambda m: m.client_id == "turns")
    assert conflicts == [interruption]
    reply = got[-1]
    assert (reply.data, reply.reply_to, reply.serial) == (
        "after the interruption",
        question,
        interruption + 1,
    )
    assert question is not None and reply.id == bot.reply_id("room:lobby", question)


# --- history pages -----------------------------------------------------------------------------


async def test_history_pages_are_iterable_and_paging_follows_has_more(
    make_server: Callable[..., Any],
) -> None:
    """A page iterates and counts its messages; `messages()` pages on `has_more`, not on page size."""
    server = await make_server(history_max_page=3)
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:lobby")
        serials = [await room.publish(n) for n in range(10)]
        page = await room.history(limit=50)
        assert isinstance(page, HistoryPage) and len(page) == 3 and page.has_more
        assert [m.serial for m in page] == serials[:-4:-1] and page.last_serial == serials[-3]
        forwards = [m.serial async for m in room.messages(after=0, direction="forwards")]
        assert forwards == serials
        assert [m.serial async for m in room.messages(limit=4)] == serials[:-5:-1]
        assert [m.serial async for m in room.messages(before=serials[2])] == serials[1::-1]


async def test_bot_catch_up_reads_past_short_pages(make_server: Callable[..., Any]) -> None:
    """A bot started after five questions answers all five, though the server cuts pages at two."""
    server = await make_server(history_max_page=2)
    bot = Bot("late", catch_up=10)

    @bot.on_message(humans_only=True)
    async def answer(context: Context) -> str:
        return f"answer to {context.message.data}"

    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = await room.subscribe()
        questions = [await room.publish(f"q{n}") for n in range(5)]
        seen: list[Message] = []
        async with running(bot, server), asyncio.timeout(WAIT):
            while len([m for m in seen if m.client_id == "late"]) < 5:
                seen.append(await anext(subscription))
    answered = sorted(m.reply_to for m in seen if m.client_id == "late" and m.reply_to is not None)
    assert answered == questions


# --- subscribe ---------------------------------------------------------------------------------


async def test_awaited_subscribe_misses_nothing_published_after_it_returned(server: TestServer) -> None:
    """`await channel.subscribe()` returns attached: another member's next message is yielded."""
    async with (
        Client(server.url, token=server.token("reader")) as reader,
        Client(server.url, token=server.token("writer")) as writer,
    ):
        await writer.channel("room:lobby").publish("before")
        subscription = await reader.channel("room:lobby").subscribe()
        serial = await writer.channel("room:lobby").publish("after")
        message = await next_message(subscription)
        assert (message.serial, message.data) == (serial, "after")


async def test_subscribe_attaches_at_the_call(server: TestServer) -> None:
    """A subscription not awaited yet already yields what its client publishes after the call."""
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:lobby")
        subscription = room.subscribe()
        serial = await room.publish("right after subscribe()")
        message = await next_message(subscription)
        assert message.serial == serial and room.attached


# --- streams() ---------------------------------------------------------------------------------


async def test_streams_feed_assembles_streams_and_the_final_message_wins(server: TestServer) -> None:
    """`channel.streams()` shows a stream growing in order, for a reader who came late too, then its end."""
    words = [f"w{n} " for n in range(30)]
    async with (
        Client(server.url, token=server.token("planner", kind="agent")) as writer,
        Client(server.url, token=server.token("early")) as early,
        Client(server.url, token=server.token("late")) as late,
    ):
        from_start = await early.channel("room:lobby").streams()
        async with writer.channel("room:lobby").stream(coalesce=0, name="answer") as stream:
            for word in words[:10]:
                await stream.append(word)
            async with asyncio.timeout(WAIT):
                async for update in from_start:
                    if update.content == "".join(words[:10]):
                        break
            # A reader who arrives now gets the text so far in one piece, then the rest.
            midway = await late.channel("room:lobby").streams()
            for word in words[10:]:
                await stream.append(word)
        for feed in (from_start, midway):
            seen: list[StreamUpdate] = []
            async with asyncio.timeout(WAIT):
                async for update in feed:
                    seen.append(update)
                    if update.done:
                        break
            final = seen[-1]
            assert (final.status, final.content, final.name) == ("complete", "".join(words), "answer")
            assert final.message is not None and final.message.serial == stream.serial
            assert all("".join(words).startswith(u.text) for u in seen), "a preview was doubled or reordered"
            assert [u.next for u in seen[:-1]] == sorted(u.next for u in seen[:-1])
        assert seen[0].stream_id == stream.stream_id and seen[0].content.startswith("".join(words[:10]))


# --- dev tokens --------------------------------------------------------------------------------


async def test_dev_token_from_a_dev_server(make_server: Callable[..., Any]) -> None:
    """`agentchat.dev_token` gets a working token from a --dev server; bad input is a RequestError."""
    server = await make_server(dev=True)
    token = await dev_token(server.url, "helper", kind="agent")
    async with Client(server.url, token=token) as client:
        assert (client.client_id, client.kind) == ("helper", "agent")
    with pytest.raises(RequestError) as refused:
        await dev_token(server.url, "not a valid id!")
    assert refused.value.code == 40002


async def test_dev_token_says_clearly_when_dev_mode_is_off(server: TestServer) -> None:
    """A server without --dev gets a DevModeOff that says how to fix it, not a bare HTTP error."""
    with pytest.raises(DevModeOff, match="--dev"):
        await dev_token(server.url.replace("http://", "ws://") + "/v1/ws", "helper")


# --- waiting for the server --------------------------------------------------------------------


class Waiting(logging.Handler):
    """Counts the client's "waiting for the server" lines; `enough` is set at `needed`."""

    def __init__(self, needed: int) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.needed = needed
        self.enough = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("waiting for the server at "):
            self.lines.append(message)
            if len(self.lines) >= self.needed:
                self.enough.set()


async def test_a_bot_started_before_its_server_waits_for_it(tmp_path: Path) -> None:
    """A bot whose server is not up logs one line per attempt and joins once the server starts."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    waiting = Waiting(needed=2)
    logger = logging.getLogger("agentchat.client")
    logger.addHandler(waiting)
    server = TestServer(tmp_path, port=port)
    bot = echo.make_bot()
    key = server.settings.keys[0]
    task = asyncio.create_task(
        bot.run(url, token_provider=lambda: mint_token(key, "echo", kind="agent"), backoff=FAST)
    )
    try:
        async with asyncio.timeout(WAIT):
            await waiting.enough.wait()
        assert all(
            line.startswith(f"waiting for the server at {url} (echo, attempt ") for line in waiting.lines
        )
        await server.start()
        async with asyncio.timeout(WAIT):
            await bot.wait_ready()
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:lobby")
            subscription = await room.subscribe()
            await room.publish("@echo you made it")
            got = await messages_until(subscription, lambda m: m.client_id == "echo")
            assert got[-1].data == "echo: you made it"
    finally:
        logger.removeHandler(waiting)
        bot.stop()
        async with asyncio.timeout(WAIT):
            await task
        await server.stop()


async def test_a_bot_stops_waiting_when_told(tmp_path: Path) -> None:
    """`wait_for_server` bounds the wait with ServerUnavailable; `stop()` ends an endless wait quietly."""
    url = f"http://127.0.0.1:{free_port()}"
    bot = echo.make_bot()
    with pytest.raises(ServerUnavailable) as unavailable:
        await bot.run(url, token="unused", wait_for_server=UNIT / 10, backoff=FAST)
    assert unavailable.value.url == url and isinstance(unavailable.value, TimeoutError)
    forever = asyncio.create_task(bot.run(url, token="unused", backoff=FAST))
    await asyncio.sleep(0)
    bot.stop()
    async with asyncio.timeout(WAIT):
        await forever


async def test_bot_command_without_a_server_says_so_in_one_line(tmp_path: Path) -> None:
    """`agentchat bot --wait-for-server` logs each attempt, then exits 1 with one line, no traceback."""
    url = f"http://127.0.0.1:{free_port()}"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentchat",
        "bot",
        "agentchat.examples.echo:bot",
        "--url",
        url,
        "--keys",
        "test:" + "k" * 32,
        "--wait-for-server",
        str(UNIT / 5),
        cwd=tmp_path,
        env={**os.environ, "AGENTCHAT_LOG_LEVEL": "INFO"},
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(WAIT * 2):
        _, err = await process.communicate()
    text = err.decode()
    assert process.returncode == 1, text
    assert f"waiting for the server at {url} (echo, attempt 1:" in text
    assert f"agentchat: no agentchat server answered at {url} within" in text
    assert "Traceback" not in text


# --- reply ids ---------------------------------------------------------------------------------


def test_reply_ids_are_stable_for_the_bot_and_unguessable_for_others(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same secret, same id (a restart dedupes); another secret, another id; nothing in it to guess from."""
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first, again = Bot("planner", reply_secret="s3cret"), Bot("planner", reply_secret="s3cret")
    other = Bot("planner", reply_secret="another")
    answer = first.reply_id("room:lobby", 41)
    assert answer == again.reply_id("room:lobby", 41) != other.reply_id("room:lobby", 41)
    assert answer.startswith("r_") and len(answer) == 34
    assert "planner" not in answer and "lobby" not in answer
    assert (
        len({first.reply_id("room:lobby", 41, attempt, index) for attempt in range(3) for index in range(3)})
        == 9
    )
    assert answer == reply_id(b"s3cret", "room:lobby", 41)


def test_reply_secret_sources_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secret comes from the argument, else AGENTCHAT_REPLY_SECRET, else the API key, else chance."""
    monkeypatch.setenv(SECRET_ENV, "from-env")
    assert Bot("b", reply_secret="given").reply_id("c", 1) == reply_id(b"given", "c", 1)
    from_env = Bot("b")
    from_env.derive_reply_secret("main:" + "k" * 32)
    assert from_env.reply_id("c", 1) == reply_id(b"from-env", "c", 1)
    monkeypatch.delenv(SECRET_ENV)
    keyed = Bot("b")
    keyed.derive_reply_secret("main:" + "k" * 32)
    assert keyed.reply_id("c", 1) == reply_id(secret_from_key("main:" + "k" * 32, "b"), "c", 1)
    assert secret_from_key("main:" + "k" * 32, "b") != secret_from_key("main:" + "k" * 32, "other")
    assert Bot("b").reply_id("c", 1) != Bot("b").reply_id("c", 1)
