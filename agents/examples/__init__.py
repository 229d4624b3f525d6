"""Example agents that need no network and no model: echo, a planner, a two-agent conversation, a
tool-using librarian (`tools`) and a pool of planners (`pool`)."""

from __future__ import annotations

import asyncio
import functools

from agentchat.bot import Bot
from agentchat.examples import echo, scripted
from agentchat.tokens import MintFunction


def demo_bots(channel: str = "room:lobby") -> list[Bot]:
    """The demo pair in `channel`: `echo` and `planner`, each answering only messages that mention it."""
    return [echo.make_bot([channel]), scripted.make_bot([channel])]


async def run_demo(
    url: str,
    mint: MintFunction,
    channel: str = "room:lobby",
    *,
    stop: asyncio.Event | None = None,
    api_key: str | None = None,
) -> None:
    """Run the demo bots in `channel` until cancelled, or until `stop` is set (then they shut down
    gracefully and this returns). `mint(client_id, kind)` returns a token; it is called again on
    every reconnect and renewal. `api_key` ("name:secret"), when given, keeps the bots' reply ids
    stable across restarts (`agentchat.replies`). The bots wait for the server as long as it takes."""
    bots = demo_bots(channel)
    if api_key is not None:
        for bot in bots:
            bot.derive_reply_secret(api_key)

    async def stop_all(event: asyncio.Event) -> None:
        await event.wait()
        for bot in bots:
            bot.stop()

    async with asyncio.TaskGroup() as group:
        runs = [
            group.create_task(bot.run(url, token_provider=functools.partial(mint, bot.client_id, "agent")))
            for bot in bots
        ]
        if stop is not None:
            stopper = group.create_task(stop_all(stop))
            await asyncio.wait(runs)
            stopper.cancel()
