"""Bots against a real server: filters, presence status, cancel, shutdown, exactly-once across restarts."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from agentchat import Backoff, Bot, Client, Context, Message
from agentchat.examples import echo, scripted
from agentchat.replies import reply_id
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, cut_connection, messages_until, running

ROOT = Path(__file__).resolve().parent.parent
SECRET = "a reply secret shared by both runs of the bot"


def replies_to(messages: list[Message], serial: int, client_id: str) -> list[Message]:
    return [m for m in messages if m.reply_to == serial and m.client_id == client_id]


async def test_echo_bot_answers_mentions_only(server: TestServer) -> None:
    """The echo bot answers `@echo` messages with a reply id derived from the trigger, and nothing else."""
    bot = echo.make_bot()
    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        ignored = await room.publish("hello everyone")
        asked = await room.publish("@echo hi there")
        assert asked is not None and ignored is not None
        got = await messages_until(subscription, lambda m: m.client_id == "echo")
        answer = got[-1]
        assert answer.data == "echo: hi there" and answer.reply_to == asked
        assert answer.id == bot.reply_id("room:lobby", asked)
        history = (await room.history()).messages
        assert replies_to(history, ignored, "echo") == []


async def test_planner_answers_mentions_and_keeps_presence_status(server: TestServer) -> None:
    """The planner streams a plan from the question to a message that mentions it, nothing else;
    its presence goes thinking, streaming, idle."""
    planner = scripted.make_bot(rate=500)
    async with (
        running(planner, server),
        Client(server.url, token=server.token("ana")) as human,
        Client(server.url, token=server.token("other-bot", kind="agent")) as agent,
    ):
        room = human.channel("room:lobby")
        feed = await room.events().start()
        subscription = room.subscribe()
        await subscription.start()
        await agent.channel("room:lobby").publish("an agent says something")
        await room.publish("@echo not for the planner")
        await room.publish("what should we do? (addressed to nobody)")
        question = await room.publish("@planner what should we do about the release notes?")
        got = await messages_until(subscription, lambda m: m.client_id == "planner")
        answer = got[-1]
        assert answer.reply_to == question and answer.status == "complete" and answer.name == "answer"
        assert answer.data == scripted.plan_for("what should we do about the release notes")
        assert len([m for m in got if m.client_id == "planner"]) == 1
        statuses: list[str] = []
        async with asyncio.timeout(WAIT):
            async for event in feed:
                member = event.frame.get("member") or {}
                if event.type == "presence" and member.get("client_id") == "planner":
                    statuses.append(member["data"]["status"])
                    if statuses[-3:] == ["thinking", "streaming", "idle"]:
                        break
        assert (await room.presence.get())[0].data == {
            "kind": "agent",
            "role": "planner",
            "model": "scripted",
            "status": "idle",
        }


async def test_member_cancel_stops_the_handler(server: TestServer) -> None:
    """A cancel from a member stops the bot's model at once; the bot then answers the next message."""
    planner = scripted.make_bot(rate=5)
    async with running(planner, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        feed = await room.events().start()
        subscription = room.subscribe()
        await subscription.start()
        await room.publish("@planner a long question")
        async with asyncio.timeout(WAIT):
            event = await anext(feed)
            while event.type != "stream_open":
                event = await anext(feed)
        await room.cancel_stream(event.frame["stream_id"])
        cancelled = await messages_until(subscription, lambda m: m.client_id == "planner")
        assert cancelled[-1].status == "cancelled"
        async with asyncio.timeout(WAIT):
            await room.presence.wait_for(
                lambda members: any(m.client_id == "planner" and m.data["status"] == "idle" for m in members)
            )


async def test_graceful_shutdown_ends_streams_and_leaves_presence(server: TestServer) -> None:
    """Stopping a bot mid-answer ends its stream `cancelled` and removes it from presence."""
    planner = scripted.make_bot(rate=5)
    planner.shutdown_grace = 0.05
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        feed = await room.events().start()
        subscription = room.subscribe()
        await subscription.start()
        async with running(planner, server):
            await room.publish("@planner tell me everything")
            async with asyncio.timeout(WAIT):
                event = await anext(feed)
                while event.type != "stream_chunk":
                    event = await anext(feed)
        final = await messages_until(subscription, lambda m: m.client_id == "planner")
        assert final[-1].status == "cancelled" and final[-1].data
        assert [m.client_id for m in await room.presence.get()] == []


async def test_restarted_bot_answers_what_it_missed_exactly_once(server: TestServer) -> None:
    """Messages sent while a bot was down are answered on start; a second restart answers nothing again."""
    calls: list[int] = []

    def make() -> Bot:
        bot = Bot("counter", concurrency=1)

        @bot.on_message(humans_only=True)
        async def answer(context: Context) -> str:
            assert context.message.serial is not None
            calls.append(context.message.serial)
            return f"answer to {context.message.serial}"

        return bot

    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        missed = await room.publish("asked while the bot was down")
        assert missed is not None
        async with running(make(), server):
            await messages_until(subscription, lambda m: m.client_id == "counter")
        async with running(make(), server):
            fresh = await room.publish("asked after the restart")
            got = await messages_until(subscription, lambda m: m.client_id == "counter")
        assert [m.reply_to for m in got if m.client_id == "counter"] == [fresh]
        assert calls == [missed, fresh]


async def _start_bot_process(server: TestServer, rate: float) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "AGENTCHAT_SCRIPTED_RATE": str(rate),
        "AGENTCHAT_TOKEN": server.token("planner", kind="agent"),
        "AGENTCHAT_LOG_LEVEL": "WARNING",
        "AGENTCHAT_REPLY_SECRET": SECRET,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentchat",
        "bot",
        "agentchat.examples.scripted:bot",
        "--url",
        server.url,
        env=env,
        cwd=ROOT,
    )


async def test_bot_killed_mid_answer_answers_exactly_once_after_restart(
    make_server: Callable[..., Any],
) -> None:
    """SIGKILL mid-stream: the dead stream ends aborted, the restarted bot answers once, completely."""
    server = await make_server(stream_grace=0.3, presence_grace=0.3)
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        feed = await room.events().start()
        subscription = room.subscribe()
        await subscription.start()
        process = await _start_bot_process(server, rate=10)
        try:
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda members: any(m.client_id == "planner" for m in members))
            question = await room.publish("@planner how do we start?")
            assert question is not None
            async with asyncio.timeout(WAIT):
                event = await anext(feed)
                while event.type != "stream_chunk":
                    event = await anext(feed)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            process = await _start_bot_process(server, rate=1000)
            got = await messages_until(
                subscription, lambda m: m.client_id == "planner" and m.status == "complete"
            )
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGKILL)
                await process.wait()
        answers = replies_to(got, question, "planner")
        assert [m.status for m in answers] == ["aborted", "complete"]
        # Both processes read the same AGENTCHAT_REPLY_SECRET: the restarted bot knows its ids.
        assert answers[0].id == reply_id(SECRET.encode(), "room:lobby", question)
        assert answers[1].id == reply_id(SECRET.encode(), "room:lobby", question, attempt=1)
        history = (await room.history(after=question, direction="forwards")).messages
        assert [m.status for m in replies_to(history, question, "planner")] == ["aborted", "complete"]


@pytest.mark.parametrize("handler_kind", ["generator", "returns"])
async def test_handler_styles(server: TestServer, handler_kind: str) -> None:
    """A handler may yield text pieces (streamed) or return a string (published)."""
    bot = Bot("styles")
    if handler_kind == "generator":

        @bot.on_message(channel="room:*", names={"message"}, when=lambda m: "go" in m.text)
        async def pieces(context: Context) -> AsyncIterator[str]:
            for piece in ("one ", "two"):
                yield piece

    else:

        @bot.on_message
        async def whole(context: Context) -> str:
            return "one two"

    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("go")
        got = await messages_until(subscription, lambda m: m.client_id == "styles")
        assert got[-1].data == "one two" and got[-1].reply_to == question
        assert (got[-1].stream_id is not None) == (handler_kind == "generator")


async def test_context_reply_publishes_with_derived_ids(server: TestServer) -> None:
    """`context.reply` can answer more than once; each reply has its own derived id."""
    bot = Bot("twice")

    @bot.on_message(humans_only=True)
    async def answer(context: Context) -> None:
        assert context.next_reply_id() == bot.reply_id(context.channel.name, context.message.serial or 0)
        await context.reply("first")
        await context.reply("second")

    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = await room.subscribe().start()
        question = await room.publish("hi")
        got = await messages_until(subscription, lambda m: m.data == "second")
        ids = [m.id for m in got if m.client_id == "twice"]
        expected = [bot.reply_id("room:lobby", question, index=n) for n in (0, 1)]
        assert ids == expected


async def test_bot_whose_session_is_lost_mid_answer_answers_again(make_server: Callable[..., Any]) -> None:
    """A bot cut off for longer than the resume window loses its stream (aborted) and answers anew."""
    server = await make_server(resume_window=0, stream_grace=0.2, presence_grace=0)
    planner = scripted.make_bot(rate=50)
    async with (
        running(planner, server, backoff=Backoff(0.02, 0.2)),
        Client(server.url, token=server.token("ana")) as human,
    ):
        room = human.channel("room:lobby")
        feed = await room.events().start()
        subscription = await room.subscribe().start()
        question = await room.publish("@planner plan the week")
        async with asyncio.timeout(WAIT):
            event = await anext(feed)
            while event.type != "stream_chunk":
                event = await anext(feed)
        assert planner.client is not None
        cut_connection(planner.client)
        got = await messages_until(subscription, lambda m: m.client_id == "planner" and m.status != "aborted")
    answers = replies_to(got, question, "planner")
    assert [m.status for m in answers] == ["aborted", "complete"]
    assert answers[1].id == planner.reply_id("room:lobby", question, attempt=1)
