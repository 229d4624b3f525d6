"""Bots in group chat: events never reach message handlers (the rule, then a real server), event
handlers get them, answers go to the trigger's thread, and `Context.conversation` reads what a
message follows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentchat import Bot, Client, Context, Message
from agentchat.filters import DELETES, EDITS, REACTIONS, Filter
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, running

ROOM = "room:chat"


def msg(serial: int, data: Any = "x", **fields: Any) -> Message:
    """A durable message of ROOM as the server would send it."""
    frame = {"channel": ROOM, "serial": serial, "id": f"m{serial}", "data": data, "client_id": "ana"}
    return Message.from_wire({**frame, **fields})


def event(serial: int, action: str, target: int, data: Any = None, **fields: Any) -> Message:
    """An event on `target`."""
    return msg(serial, data, action=action, name=action, target=target, **fields)


def answer_to(serial: int, bot: str) -> Callable[[Message], bool]:
    """A predicate: the message is `bot`'s answer to `serial`."""
    return lambda m: m.client_id == bot and m.reply_to == serial


def test_message_filters_never_take_events_and_event_filters_only_theirs() -> None:
    """A catch-all message filter skips every event; event filters take only their actions."""
    catch_all = Filter()
    events = {
        a: event(9, a, 1, "👍" if "react" in a else None) for a in ("edit", "delete", "react", "unreact")
    }
    assert catch_all.matches(msg(1, "@bot hi"), "bot")
    assert not any(catch_all.matches(e, "bot") for e in events.values())
    for actions, taken in ((EDITS, {"edit"}), (DELETES, {"delete"}), (REACTIONS, {"react", "unreact"})):
        rule = Filter(actions=actions)
        assert {a for a, e in events.items() if rule.matches(e, "bot")} == taken
        assert not rule.matches(msg(1), "bot")
    assert not Filter(actions=EDITS).matches(event(9, "edit", 1, "x", client_id="bot"), "bot")


async def test_a_catch_all_bot_answers_neither_edits_nor_reactions(server: TestServer) -> None:
    """A bot whose message handler takes everything gets an edit, reactions and a delete, and answers
    none of them: only the messages."""
    bot = Bot("parrot", [ROOM], concurrency=1)
    seen: list[Message] = []

    @bot.on_message
    async def everything(context: Context) -> str:
        seen.append(context.message)
        return f"seen {context.message.serial}"

    async with (
        running(bot, server),
        Client(server.url, token=server.token("ana")) as ana,
        Client(server.url, token=server.token("bob")) as bob,
    ):
        room = ana.channel(ROOM)
        subscription = await room.subscribe()
        first = await room.publish("hello")
        await messages_until(subscription, answer_to(first, "parrot"))
        await room.edit(first, "hello, edited")
        await bob.channel(ROOM).react(first, "👍")
        await room.react(first, "eyes")
        await bob.channel(ROOM).unreact(first, "👍")
        await room.delete(first)
        # One handler at a time, in serial order: once this is answered, any event would have been.
        last = await room.publish("still there?")
        await messages_until(subscription, answer_to(last, "parrot"))
        assert [m.serial for m in seen] == [first, last]
        answers = [m.reply_to async for m in room.messages(direction="forwards") if m.client_id == "parrot"]
        assert answers == [first, last]


async def test_event_handlers_get_edits_deletes_and_reactions(server: TestServer) -> None:
    """`on_edit`, `on_reaction` and `on_delete` handlers get their events, in order, with filters; a
    string an event handler returns is published as its reply."""
    bot = Bot("watcher", [ROOM], concurrency=1)
    got: asyncio.Queue[tuple[str, Message]] = asyncio.Queue()

    @bot.on_edit
    async def edited(context: Context) -> str:
        got.put_nowait(("edit", context.message))
        return f"noticed the edit of {context.message.target}"

    @bot.on_reaction(humans_only=True)
    async def reacted(context: Context) -> None:
        got.put_nowait(("reaction", context.message))

    @bot.on_delete(when=lambda event: event.client_id == "ana")
    async def deleted(context: Context) -> None:
        got.put_nowait(("delete", context.message))

    async with (
        running(bot, server),
        Client(server.url, token=server.token("ana")) as ana,
        Client(server.url, token=server.token("agent", kind="agent")) as agent,
    ):
        room = ana.channel(ROOM)
        subscription = await room.subscribe()
        first = await room.publish("hello")
        edit = await room.edit(first, "hello, edited")
        await agent.channel(ROOM).react(first, "eyes")  # an agent's: the filter takes humans only
        await room.react(first, "👍")
        await room.unreact(first, "👍")
        await room.delete(first)
        seen = []
        async with asyncio.timeout(WAIT):
            while len(seen) < 4:
                seen.append(await got.get())
        assert [(kind, m.action, m.target) for kind, m in seen] == [
            ("edit", "edit", first),
            ("reaction", "react", first),
            ("reaction", "unreact", first),
            ("delete", "delete", first),
        ]
        assert seen[0][1].data == "hello, edited" and seen[1][1].data == "👍"
        (reply,) = (await messages_until(subscription, answer_to(edit, "watcher")))[-1:]
        assert reply.data == f"noticed the edit of {first}"


async def test_answers_go_to_the_triggers_thread_with_its_conversation(server: TestServer) -> None:
    """A reply in a thread is answered in that thread (published or streamed), seeing the root and the
    thread; a main-timeline message sees top-level messages only, in their current version."""
    bot = Bot("helper", [ROOM], concurrency=1)

    @bot.on_message(mentions_me=True, when=lambda m: "stream" in m.text)
    async def streamed(context: Context) -> AsyncIterator[str]:
        yield " | ".join(m.text for m in await context.conversation(limit=3))

    @bot.on_message(mentions_me=True)
    async def answered(context: Context) -> str:
        return " | ".join(m.text for m in await context.conversation(limit=3))

    async with running(bot, server), Client(server.url, token=server.token("ana")) as ana:
        room = ana.channel(ROOM)
        subscription = await room.subscribe()
        opening = await room.publish("first words")
        root = await room.publish("the question")
        await room.publish("r1", thread=root)
        asked = await room.publish("r2 @helper", thread=root)
        (answer,) = (await messages_until(subscription, answer_to(asked, "helper")))[-1:]
        assert (answer.thread, answer.data) == (root, "the question | r1 | r2 @helper")
        again = await room.publish("r3 @helper stream", thread=root)
        (streamed_answer,) = (await messages_until(subscription, answer_to(again, "helper")))[-1:]
        assert streamed_answer.thread == root and streamed_answer.stream_id is not None
        assert streamed_answer.data == f"the question | {answer.data} | r3 @helper stream"
        await room.edit(opening, "first words, edited")
        await room.react(root, "eyes")
        main = await room.publish("@helper on main")
        (on_main,) = (await messages_until(subscription, answer_to(main, "helper")))[-1:]
        assert on_main.thread is None
        assert on_main.data == "first words, edited | the question | @helper on main"
