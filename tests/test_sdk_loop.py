"""The loop brake seen from bots: two echoing bots stop at the namespace's budget, the refused bot
logs it once and does not try that message again, and a person speaking lets them go on."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

from agentchat import Bot, Client, Context, Message
from agentchat.connection import Backoff
from agentchat.retry import Retry
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, running

ROOM = "team:alpha"
BUDGET = 4
SETTINGS = {"namespaces": {"team": {"loop_budget": BUDGET}}}
RETRY = Retry(attempts=3, backoff=Backoff(initial=0.01, maximum=0.02))


def echo_bot(me: str, hears: Callable[[Message], bool]) -> Bot:
    """A bot that answers every message `hears` accepts with an echo of it."""
    bot = Bot(me, [ROOM], retry=RETRY)

    @bot.on_message(when=hears)
    async def echo(context: Context) -> str:
        return f"{me}: {context.message.text}"

    return bot


class BrakeLog(logging.Handler):
    """Counts the bots' "loop brake" log lines per bot; `wait(me, n)` waits for the n-th of `me`."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.counts: dict[str, int] = {}
        self.changed = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        me, _, rest = record.getMessage().partition(": ")
        if rest.startswith("the loop brake stopped"):
            self.counts[me] = self.counts.get(me, 0) + 1
            self.changed.set()

    async def wait(self, me: str, count: int) -> None:
        async with asyncio.timeout(WAIT):
            while self.counts.get(me, 0) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_echoing_bots_stop_at_the_budget_and_answer_again_after_a_person(
    make_server: Callable[..., Any],
) -> None:
    """Ping answers people and pong, pong answers ping: after a person's message exactly `BUDGET`
    agent answers pass, ping's next is refused (one log line, one room notice, no retry); a new
    message from the person starts them again, up to the budget again."""
    logs = BrakeLog()
    logger = logging.getLogger("agentchat.bot")
    logger.addHandler(logs)
    server: TestServer = await make_server(**SETTINGS)
    ping = echo_bot("ping", lambda m: m.kind == "human" or m.client_id == "pong")
    pong = echo_bot("pong", lambda m: m.client_id == "ping")
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(logger.removeHandler, logs)
        await stack.enter_async_context(running(ping, server))
        await stack.enter_async_context(running(pong, server))
        human = await stack.enter_async_context(Client(server.url, token=server.token("ana")))
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        episodes: list[list[Message]] = []
        for text in ("hello bots", "carry on"):
            await room.publish(text)
            episodes.append(await messages_until(subscription, lambda m: m.name == "agentchat.loop_brake"))
            await logs.wait("ping", len(episodes))
    for heard in episodes:
        answers = [m for m in heard if m.kind == "agent"]
        assert [m.client_id for m in answers] == ["ping", "pong", "ping", "pong"]
        assert all(m.reply_to == before.serial for before, m in itertools.pairwise(heard[:-1]))
        assert (heard[-1].data["budget"], heard[-1].client_id) == (BUDGET, "agentchat")
    # Pong's last echo of the first episode was refused to ping, and ping never tried it again.
    refused = episodes[0][-2]
    assert refused.client_id == "pong"
    assert not [m for m in episodes[1] if m.reply_to == refused.serial]
    assert logs.counts == {"ping": 2}
