"""Double texting against a real server: a person writes again while the bot still answers them,
and the bot queues, interrupts or rejects as its policy says."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentchat import Bot, Channel, Client, Context, Message, Subscription
from agentchat.double_texting import REJECT_NOTICE
from agentchat.pool import Deferrals
from agentchat.roommodels import ClaimEvent
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, running

ROOM = "team:alpha"


class SlowBot:
    """A bot (or `instances` of it, a pool) whose answer to each text streams "answering <text>",
    then waits for its gate.

    `heard[text]` is set when the bot considers a message (its filter ran), `started[text]` once
    its answer's stream is open; `events` records "start <text>" and "end <text>" as handlers
    begin and finish.
    """

    def __init__(self, instances: int = 1, **options: Any) -> None:
        self.bots = [Bot("slow", [ROOM], **options) for _ in range(instances)]
        for bot in self.bots:
            bot.derive_reply_secret("slow:secret")  # instances of one bot compute the same ids
        self.gates: dict[str, asyncio.Event] = {}
        self.heard: dict[str, asyncio.Event] = {}
        self.started: dict[str, asyncio.Event] = {}
        self.events: list[str] = []

        def hears(message: Message) -> bool:
            self.event(self.heard, message.text).set()
            return True

        async def answer(context: Context) -> None:
            text = context.message.text
            self.events.append(f"start {text}")
            try:
                async with context.stream() as stream:
                    await stream.append(f"answering {text}")
                    self.event(self.started, text).set()
                    await self.event(self.gates, text).wait()
            finally:
                self.events.append(f"end {text}")

        for bot in self.bots:
            bot.on_message(humans_only=True, when=hears)(answer)

    @staticmethod
    def event(events: dict[str, asyncio.Event], text: str) -> asyncio.Event:
        return events.setdefault(text, asyncio.Event())

    async def wait_heard(self, text: str) -> None:
        async with asyncio.timeout(WAIT):
            await self.event(self.heard, text).wait()


@contextlib.asynccontextmanager
async def room_with(slow: SlowBot, server: TestServer) -> AsyncIterator[tuple[Channel, Subscription]]:
    """The running bot, and a person's view of the room."""
    async with contextlib.AsyncExitStack() as stack:
        for bot in slow.bots:
            await stack.enter_async_context(running(bot, server))
        human = await stack.enter_async_context(Client(server.url, token=server.token("ana")))
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        yield room, subscription


async def double_text(slow: SlowBot, room: Channel, subscription: Subscription) -> tuple[int, int]:
    """Send "first", wait until the bot streams its answer, then send "second" (heard by the bot)."""
    first = await room.publish("first")
    async with asyncio.timeout(WAIT):
        await slow.event(slow.started, "first").wait()
    second = await room.publish("second")
    await slow.wait_heard("second")
    return first, second


def answer_to(serial: int) -> Callable[[Message], bool]:
    return lambda m: m.client_id == "slow" and m.reply_to == serial and m.status != "open"


async def test_queue_answers_the_newer_message_after_the_current_answer(server: TestServer) -> None:
    """Under `queue` the second message is answered only once the first answer finished, in order."""
    slow = SlowBot(double_texting="queue")
    async with room_with(slow, server) as (room, subscription):
        first, second = await double_text(slow, room, subscription)
        slow.event(slow.gates, "second").set()
        assert slow.events == ["start first"]
        slow.event(slow.gates, "first").set()
        got = await messages_until(subscription, answer_to(second))
    answers = [m for m in got if m.client_id == "slow"]
    assert [(m.reply_to, m.status) for m in answers] == [(first, "complete"), (second, "complete")]
    assert slow.events == ["start first", "end first", "start second", "end second"]


async def test_interrupt_cancels_the_current_answer_and_answers_the_newer(server: TestServer) -> None:
    """Under `interrupt` the first answer ends `cancelled` with its text so far, then the second
    message is answered."""
    slow = SlowBot(double_texting="interrupt")
    async with room_with(slow, server) as (room, subscription):
        slow.event(slow.gates, "second").set()
        first, second = await double_text(slow, room, subscription)
        got = await messages_until(subscription, answer_to(second))
    answers = [m for m in got if m.client_id == "slow"]
    assert [(m.reply_to, m.status, m.data) for m in answers] == [
        (first, "cancelled", "answering first"),
        (second, "complete", "answering second"),
    ]
    assert slow.events == ["start first", "end first", "start second", "end second"]


async def test_reject_answers_the_newer_message_with_a_notice(server: TestServer) -> None:
    """Under `reject` the second message gets a short notice at once while the first answer goes on;
    the handler never runs for the second."""
    slow = SlowBot(double_texting="reject")
    async with room_with(slow, server) as (room, subscription):
        first, second = await double_text(slow, room, subscription)
        notice = (await messages_until(subscription, answer_to(second)))[-1]
        assert notice.data == REJECT_NOTICE
        slow.event(slow.gates, "first").set()
        done = (await messages_until(subscription, answer_to(first)))[-1]
    assert done.status == "complete" and done.data == "answering first"
    assert slow.events == ["start first", "end first"]


async def test_the_channel_policy_applies_when_the_bot_sets_none(make_server: Callable[..., Any]) -> None:
    """A bot without its own `double_texting` follows the namespace's (`interrupt` here)."""
    server: TestServer = await make_server(namespaces={"team": {"double_texting": "interrupt"}})
    slow = SlowBot()
    async with room_with(slow, server) as (room, subscription):
        assert room.policy.double_texting == "interrupt"
        slow.event(slow.gates, "second").set()
        first, second = await double_text(slow, room, subscription)
        got = await messages_until(subscription, answer_to(second))
    answers = [(m.reply_to, m.status) for m in got if m.client_id == "slow"]
    assert answers == [(first, "cancelled"), (second, "complete")]


async def test_a_pool_queues_a_double_text_behind_the_instance_answering_the_person(
    server: TestServer,
) -> None:
    """In a pool of two under `queue`, the person's second message is answered after the first,
    once, by the pool."""
    slow = SlowBot(instances=2, pool=True, double_texting="queue")
    async with room_with(slow, server) as (room, subscription):
        first, second = await double_text(slow, room, subscription)
        slow.event(slow.gates, "second").set()
        slow.event(slow.gates, "first").set()
        got = await messages_until(subscription, answer_to(second))
    answers = [(m.reply_to, m.status) for m in got if m.client_id == "slow"]
    assert answers == [(first, "complete"), (second, "complete")]
    assert slow.events == ["start first", "end first", "start second", "end second"]


async def test_a_pool_rejects_a_double_text_once(server: TestServer) -> None:
    """In a pool of two under `reject`, the person's second message gets one notice and no answer."""
    slow = SlowBot(instances=2, pool=True, double_texting="reject")
    async with room_with(slow, server) as (room, subscription):
        first, second = await double_text(slow, room, subscription)
        notice = (await messages_until(subscription, answer_to(second)))[-1]
        slow.event(slow.gates, "first").set()
        got = await messages_until(subscription, answer_to(first))
    assert notice.data == REJECT_NOTICE
    assert [m for m in got if m.reply_to == second] == []
    assert slow.events == ["start first", "end first"]


def test_deferrals_hold_a_persons_newer_message_while_their_earlier_claim_is_held() -> None:
    """A pool instance defers a person's message while another holds the claim of that person's
    earlier message in the channel, and gets it back when that claim changes; other people's
    messages, other channels and older messages pass."""

    def said(serial: int, who: str = "ana", channel: str = ROOM) -> Message:
        return Message(channel, serial, f"m{serial}", "message", "hi", who, "human", 0)

    def claim(serial: int, state: str) -> ClaimEvent:
        return ClaimEvent(ROOM, serial, "slow", 1, state)

    deferrals = Deferrals()
    assert not deferrals.defer(said(1))
    assert deferrals.claim_changed(claim(1, "held")) == []
    second = said(2)
    assert deferrals.defer(second)
    assert not deferrals.defer(said(3, who="bob"))
    assert not deferrals.defer(said(4, channel="team:beta"))
    assert deferrals.claim_changed(claim(1, "done")) == [second]
    assert not deferrals.defer(said(5))
