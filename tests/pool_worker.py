"""A pooled worker bot for the pool tests, run as `agentchat bot tests.pool_worker:make_bot`.

It answers every person's message in `team:pool` with a short stream, and says on stderr when it
starts streaming an answer ("streaming <serial>"), so a test can kill it mid-answer. The pause
between the two halves of an answer is the worker's "model" thinking; a message saying "hang"
makes the first attempt at it hang (a stuck model), so the instance answering it is surely
killed mid-answer, and the instance taking it over (attempt 1 and on) answers it normally.
"""

from __future__ import annotations

import asyncio
import os
import sys

from agentchat import Bot, Context

ROOM = "team:pool"
HANG = 3600.0  # seconds: longer than any test, the instance is killed first


def make_bot() -> Bot:
    """The worker: client_id "worker", pooled, catching up on up to 500 messages."""
    pause = float(os.environ.get("POOL_WORKER_PAUSE", "0.2"))
    bot = Bot("worker", [ROOM], pool=True, catch_up=500, concurrency=8)

    @bot.on_message(humans_only=True)
    async def answer(context: Context) -> None:
        async with context.stream() as stream:
            await stream.append(f"working on {context.message.serial}")
            print(f"streaming {context.message.serial}", file=sys.stderr, flush=True)
            stuck = "hang" in context.message.text and context.attempt == 0
            await asyncio.sleep(HANG if stuck else pause)
            await stream.append(" - done")

    return bot
