"""Approvals in bots: `context.ask` returns the room's answer, and a bot that restarted while it
waited gets the answer given meanwhile (or later), from the same request, asked once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentchat import Bot, Client, Context, Message, Subscription
from agentchat.roommodels import RunUpdate
from agentchat_server.testing import TestServer
from tests import approver_bot
from tests.bot_process import BotProcess
from tests.sdk_helpers import WAIT, messages_until, running
from tests.wire import UNIT

ROOM = "team:ops"


def deployer() -> Bot:
    """A bot that asks the room before it "deploys" what a person names; the same reply secret on
    every start, as a restarted process has."""
    bot = Bot("deployer", [ROOM], reply_secret="deployer-secret", shutdown_grace=0)

    @bot.on_message(humans_only=True)
    async def deploy(context: Context) -> str:
        answer = await context.ask(f"Deploy {context.message.text}?", data={"version": context.message.text})
        return f"deployed {context.message.text}" if answer.approved else f"not deployed: {answer.outcome}"

    return bot


def is_request(message: Message) -> bool:
    return message.name == "agentchat.input_request" and message.client_id == "deployer"


def answer_to(serial: int) -> Callable[[Message], bool]:
    return lambda m: m.client_id == "deployer" and m.reply_to == serial


async def test_ask_returns_the_answer(server: TestServer) -> None:
    """The handler waits on `context.ask`; a person's `deny` reaches it and it answers accordingly;
    the person's answer record is not taken for a new question."""
    async with running(deployer(), server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        asked = await room.publish("v1")
        request = (await messages_until(subscription, is_request))[-1]
        assert request.data["prompt"] == "Deploy v1?" and request.data["data"] == {"version": "v1"}
        assert request.request_id is not None
        await room.answer(request.request_id, "deny")
        done = (await messages_until(subscription, answer_to(asked)))[-1]
        assert done.data == "not deployed: deny"
        marker = await room.publish("v1.1")
        got = await messages_until(subscription, is_request)
    assert [m.serial for m in got if m.client_id == "deployer" and m.reply_to is not None] == []
    assert got[-1].serial is not None and got[-1].serial > marker


async def test_an_answer_given_while_the_bot_was_down_reaches_it_after_a_restart(server: TestServer) -> None:
    """The bot asks, stops; a person approves meanwhile; the restarted bot asks the same request
    again (no second request in the room), finds the approval and answers once."""
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        async with running(deployer(), server):
            asked = await room.publish("v2")
            request = (await messages_until(subscription, is_request))[-1]
        assert request.request_id is not None
        await room.answer(request.request_id, "approve")
        async with running(deployer(), server):
            done = (await messages_until(subscription, answer_to(asked)))[-1]
        requests = await room.requests(status="any")
    assert done.data == "deployed v2"
    assert [(r.request_id, r.status) for r in requests] == [(request.request_id, "answered")]


async def test_an_answer_given_after_the_restart_reaches_the_restarted_bot(server: TestServer) -> None:
    """The bot asks and stops; once the restarted bot is up (caught up), a person approves: the
    new bot gets the approval and answers once, from the one request."""
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        async with running(deployer(), server):
            asked = await room.publish("v3")
            request = (await messages_until(subscription, is_request))[-1]
        async with running(deployer(), server):
            assert request.request_id is not None
            await room.answer(request.request_id, "approve")
            done = (await messages_until(subscription, answer_to(asked)))[-1]
        requests = await room.requests(status="any")
    assert done.data == "deployed v3"
    assert len(requests) == 1


async def run_update(subscription: Subscription, run_id: str, done: Callable[[RunUpdate], bool]) -> RunUpdate:
    """The first update of run `run_id` for which `done` holds (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for update in subscription.run_updates:
            if update.run_id == run_id and done(update):
                return update
    raise AssertionError("the run updates ended")


def run_end(message: Message) -> bool:
    return message.name == "agentchat.run" and (message.data or {}).get("status") != "running"


async def test_a_run_waiting_for_approval_is_parked_on_shutdown_and_resumed_after_a_restart(
    server: TestServer,
) -> None:
    """A bot stopped while its run waits for approval leaves the run parked (`input_required`, no
    writer), not cancelled; the restarted bot takes the same run back and, once a person approves,
    finishes it `completed` with its text: one run, one request."""
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        bot = approver_bot.make_bot()
        bot.derive_reply_secret("deployer:secret")
        async with running(bot, server):
            asked = await room.publish("v4")
            request = (await messages_until(subscription, is_request))[-1]
        assert request.request_id is not None and request.run_id is not None
        parked = await run_update(subscription, request.run_id, lambda r: r.writer is None)
        assert (parked.status, parked.pending) == ("input_required", 1)
        restarted = approver_bot.make_bot()
        restarted.derive_reply_secret("deployer:secret")
        async with running(restarted, server):
            await room.answer(request.request_id, "approve")
            got = await messages_until(subscription, run_end)
        requests = await room.requests(status="any")
    runs = {m.run_id for m in got if m.name == "agentchat.run"}
    assert runs == {request.run_id} and got[-1].data["status"] == "completed"
    assert [m.data for m in got if m.lane == "text"] == ["deployed v4"]
    assert not [m for m in got if m.name == "agentchat.run" and m.data.get("status") == "cancelled"]
    assert len(requests) == 1 and asked < (request.serial or 0)


async def test_an_approval_reaches_the_bot_process_restarted_after_a_kill(
    make_server: Callable[..., Any],
) -> None:
    """`agentchat bot` asks inside a run and is SIGKILLed: the run is parked (no writer) once the
    server gives up on the dead session; a person approves; a new process of the same bot takes the
    run back and finishes it with the approval."""
    server: TestServer = await make_server(stream_grace=0.2)
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        first = await BotProcess("tests.approver_bot:make_bot", server).start()
        try:
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda ms: any(m.client_id == "deployer" for m in ms))
            await room.publish("v5")
            request = (await messages_until(subscription, is_request))[-1]
            await first.kill()
            assert request.request_id is not None and request.run_id is not None
            parked = await run_update(subscription, request.run_id, lambda r: r.writer is None)
            assert parked.status == "input_required"
            await room.answer(request.request_id, "approve")
            second = await BotProcess("tests.approver_bot:make_bot", server).start()
            try:
                got = await messages_until(subscription, run_end)
            finally:
                assert await second.stop() == 0, second.log[-20:]
        finally:
            await first.stop()
    assert {m.run_id for m in got if m.name == "agentchat.run"} == {request.run_id}
    assert got[-1].data["status"] == "completed"
    assert [m.data for m in got if m.lane == "text"] == ["deployed v5"]


async def test_a_bot_process_killed_mid_run_carries_the_same_run_on_after_a_restart(
    make_server: Callable[..., Any],
) -> None:
    """`agentchat bot` is SIGKILLed while its run is running (not waiting): restarted before the
    server gives the dead session up, the bot takes the same run back (not a second run, not an
    aborted one), asks, and finishes it once approved."""
    server: TestServer = await make_server(stream_grace=UNIT * 4)
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        first = await BotProcess("tests.approver_bot:make_bot", server, APPROVER_HANG="1").start()
        try:
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda ms: any(m.client_id == "deployer" for m in ms))
                asked = await room.publish("v6")
                while await first.lines.get() != f"running {asked}":
                    pass
            await first.kill()
            second = await BotProcess("tests.approver_bot:make_bot", server).start()
            try:
                request = (await messages_until(subscription, is_request))[-1]
                assert request.request_id is not None
                await room.answer(request.request_id, "approve")
                await messages_until(subscription, run_end)
            finally:
                assert await second.stop() == 0, second.log[-20:]
        finally:
            await first.stop()
        got = [m async for m in room.messages(after=asked, direction="forwards")]
    starts = [m for m in got if m.name == "agentchat.run" and m.data.get("status") == "running"]
    assert len(starts) == 1 and got[-1].data["status"] == "completed"
    assert {m.run_id for m in got if m.run_id} == {starts[0].run_id}
    assert [m.data for m in got if m.lane == "text"] == ["deployed v6"]


async def test_a_bot_process_restarted_after_its_run_aborted_answers_with_a_new_run(
    make_server: Callable[..., Any],
) -> None:
    """Restarted only after the server aborted its dead run, the bot answers with a new run; the
    room holds the aborted run and the completed one."""
    server: TestServer = await make_server(stream_grace=0.2)
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        first = await BotProcess("tests.approver_bot:make_bot", server, APPROVER_HANG="1").start()
        try:
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda ms: any(m.client_id == "deployer" for m in ms))
                asked = await room.publish("v7")
                while await first.lines.get() != f"running {asked}":
                    pass
            await first.kill()
            aborted = (await messages_until(subscription, run_end))[-1]
            assert aborted.data["status"] == "aborted"
            second = await BotProcess("tests.approver_bot:make_bot", server).start()
            try:
                request = (await messages_until(subscription, is_request))[-1]
                assert request.request_id is not None
                await room.answer(request.request_id, "approve")
                await messages_until(subscription, run_end)
            finally:
                assert await second.stop() == 0, second.log[-20:]
        finally:
            await first.stop()
        got = [m async for m in room.messages(after=asked, direction="forwards")]
    ends = [(m.run_id, m.data["status"]) for m in got if m.name == "agentchat.run" and m.reply_to is None]
    assert [status for _, status in ends] == ["aborted", "completed"] and ends[0][0] != ends[1][0]
    assert [m.data for m in got if m.lane == "text"] == ["deployed v7"]
