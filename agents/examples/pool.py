"""A pool of planners: two instances of the scripted planner share the questions, each answered once.

Each instance claims a question before answering it; if one dies mid-answer, the other takes the
question over once the claim is released or lapses. Run it in one process (`run_pool`), or as
separate processes, each `agentchat bot agentchat.examples.pool:bot` with the same API key.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
from collections.abc import Sequence

from agentchat.bot import Bot
from agentchat.examples import scripted
from agentchat.tokens import MintFunction

POOL = "planners"


def make_bot(channels: Sequence[str] = ("room:lobby",), *, rate: float | None = None) -> Bot:
    """One planner of the pool (client_id "planner", presence `pool: "planners"`)."""
    return scripted.make_bot(channels, rate=rate, pool=POOL)


async def run_pool(
    url: str,
    mint: MintFunction,
    channel: str = "room:lobby",
    *,
    size: int = 2,
    rate: float | None = None,
    api_key: str | None = None,
    ready: asyncio.Event | None = None,
) -> None:
    """Run `size` planner instances in `channel` until cancelled; `ready` is set once all are
    attached and caught up. `api_key` ("name:secret") gives them the same stable reply ids, as
    separate processes started with that key would have."""
    bots = [make_bot([channel], rate=rate) for _ in range(size)]
    secret = api_key or f"pool:{secrets.token_hex(16)}"  # one for all: the instances share answer ids
    for bot in bots:
        bot.derive_reply_secret(secret)
    async with asyncio.TaskGroup() as group:
        for bot in bots:
            group.create_task(bot.run(url, token_provider=functools.partial(mint, bot.client_id, "agent")))
        await asyncio.gather(*(bot.wait_ready() for bot in bots))
        if ready is not None:
            ready.set()


bot = make_bot()
