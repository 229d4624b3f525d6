"""Approvals in bots: `context.ask` returns the room's answer, and a bot that restarted while it
waited gets the answer given meanwhile (or later), from the same request, asked once."""

from __future__ import annotations

from collections.abc import Callable

from agentchat import Bot, Client, Context, Message
from agentchat_server.testing import TestServer
from tests.sdk_helpers import messages_until, running

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
