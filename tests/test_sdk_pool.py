"""Pools of bots: instances of one bot claim each message before answering it, so every message is
answered exactly once, even when an instance is killed mid-answer (the others take its messages
over when its claims are released or lapse)."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

from agentchat import Client, Message
from agentchat.examples import scripted
from agentchat_server.testing import TestServer
from tests.bot_process import BotProcess
from tests.pool_worker import ROOM, make_bot
from tests.sdk_helpers import WAIT, running
from tests.wire import UNIT

# Short leases and a fast sweep, so a dead instance's claims lapse within a few seconds.
SETTINGS: dict[str, Any] = {
    "namespaces": {"team": {"claim_ttl": 2}},
    "room_sweep_interval": 0.05,
    "stream_grace": 0.2,
}


async def publish(room: Any, count: int, start: int = 0) -> list[int]:
    """Publish `count` numbered questions as a person, in batches; their serials."""
    serials: list[int] = []
    for first in range(start, start + count, 50):
        batch = [{"data": f"question {n}"} for n in range(first, min(first + 50, start + count))]
        serials.extend(s for s in await room.publish_many(batch) if s is not None)
    return serials


async def until_answered(subscription: Any, questions: set[int], timeout: float) -> list[Message]:
    """Messages of `subscription` until every question has a `complete` answer."""
    seen: list[Message] = []
    waiting = set(questions)
    async with asyncio.timeout(timeout):
        async for message in subscription:
            seen.append(message)
            if message.status == "complete" and message.reply_to is not None:
                waiting.discard(message.reply_to)
            if not waiting:
                return seen
    raise AssertionError("subscription ended early")


async def answers_in(room: Any, after: int) -> list[Message]:
    """Every answer stored after serial `after`, in serial order."""
    return [m async for m in room.messages(after=after, direction="forwards") if m.reply_to is not None]


async def test_two_instances_answer_each_message_once(server: TestServer) -> None:
    """Two instances of one pooled bot (same client id) answer 30 messages: each exactly once, and
    the claims of answered messages end `done`."""
    first, second = make_bot(), make_bot()
    async with running(first, server), running(second, server):
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel(ROOM)
            subscription = room.subscribe()
            await subscription.start()
            questions = await publish(room, 30)
            await until_answered(subscription, set(questions), WAIT)
            answers = await answers_in(room, questions[0])
            done = [c async for c in _claims_until_done(subscription.claims, set(questions))]
    complete = Counter(m.reply_to for m in answers if m.status == "complete")
    assert set(complete) == set(questions) and set(complete.values()) == {1}
    assert {c.state for c in done} == {"done"}


async def _claims_until_done(claims: Any, questions: set[int]) -> AsyncIterator[Any]:
    waiting = set(questions)
    async with asyncio.timeout(WAIT):
        async for change in claims:
            if change.state == "done":
                waiting.discard(change.serial)
                yield change
            if not waiting:
                return


class Worker(BotProcess):
    """One worker process; it puts (itself, serial) in `streaming` as it starts streaming an
    answer to message `serial` (it says so on stderr)."""

    def __init__(self, server: TestServer, streaming: asyncio.Queue[tuple[Worker, int]]) -> None:
        super().__init__("tests.pool_worker:make_bot", server, POOL_WORKER_PAUSE="0.1")
        self.streaming = streaming
        self._watcher: asyncio.Task[None] | None = None

    async def start(self) -> Worker:
        await super().start()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while True:
            line = await self.lines.get()
            if line.startswith("streaming "):
                self.streaming.put_nowait((self, int(line.split()[1])))

    async def stop(self) -> int | None:
        status = await super().stop()
        if self._watcher is not None:
            self._watcher.cancel()
        return status


async def streamer_of(streaming: asyncio.Queue[tuple[Worker, int]], serial: int) -> Worker:
    """The worker that starts streaming the answer to `serial` (within WAIT)."""
    async with asyncio.timeout(WAIT):
        while True:
            worker, started = await streaming.get()
            if started == serial:
                return worker


async def test_a_pool_of_three_processes_answers_200_messages_once_while_one_is_killed(
    make_server: Callable[..., Any],
) -> None:
    """Three worker processes share 200 messages (100 sent before they start, found by their
    catch-up scan, 100 after); the one answering a message its model hangs on is SIGKILLed
    mid-answer. Every message ends with exactly one `complete` answer; the killed instance's
    interrupted answer is `aborted`, and another instance answered that message."""
    server: TestServer = await make_server(**SETTINGS)
    streaming: asyncio.Queue[tuple[Worker, int]] = asyncio.Queue()
    workers = [Worker(server, streaming) for _ in range(3)]
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        questions = await publish(room, 100)
        try:
            for worker in workers:
                await worker.start()
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda ms: sum(m.client_id == "worker" for m in ms) == 3)
            questions += await publish(room, 50, start=100)
            killed_on = await room.publish("question 150: hang")
            questions += [killed_on, *await publish(room, 49, start=151)]
            victim = await streamer_of(streaming, killed_on)
            await victim.kill()
            await until_answered(subscription, set(questions), UNIT * 8)
        finally:
            statuses = [await worker.stop() for worker in workers]
        answers = await answers_in(room, questions[0] - 1)
    assert sorted(statuses, key=str) == sorted([-signal.SIGKILL, 0, 0], key=str), [
        w.log[-20:] for w in workers
    ]
    complete = Counter(m.reply_to for m in answers if m.status == "complete")
    assert set(complete) == set(questions)
    assert [q for q, n in complete.items() if n != 1] == []
    assert any(m.reply_to == killed_on and m.status == "aborted" for m in answers)
    assert all(m.client_id == "worker" for m in answers)
    assert not [line for w in workers for line in w.log if "Traceback" in line]


async def test_a_member_stopping_a_pooled_answer_is_not_undone_by_another_instance(
    server: TestServer,
) -> None:
    """A member cancels a pooled planner's answer: the claim is released, yet no instance answers
    that message again (a Stop stays a Stop); the pool answers the next question as usual."""
    planners = [scripted.make_bot(rate=40, pool=True) for _ in range(2)]
    for planner in planners:
        planner.derive_reply_secret("planner:secret")
    async with running(planners[0], server), running(planners[1], server):
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:lobby")
            feed = await room.events().start()
            subscription = room.subscribe()
            await subscription.start()
            stopped = await room.publish("@planner a long question")
            async with asyncio.timeout(WAIT):
                event = await anext(feed)
                while event.type != "stream_open":
                    event = await anext(feed)
            await room.cancel_stream(event.frame["stream_id"])
            next_one = await room.publish("@planner the next question")
            await until_answered(subscription, {next_one}, WAIT)
            answers = await answers_in(room, stopped)
    assert [(m.reply_to, m.status) for m in answers] == [(stopped, "cancelled"), (next_one, "complete")]
