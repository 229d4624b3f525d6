"""Example agents that need no network and no model: echo, a scripted planner, a two-agent conversation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentchat.examples import echo, scripted


async def run_demo(url: str, mint: Callable[[str, str], str], channel: str = "room:lobby") -> None:
    """Run the echo and planner bots in `channel` until cancelled (the server's `--demo` mode).

    `mint(client_id, kind)` returns a token; it is called again on every reconnect and renewal.
    """
    bots = [echo.make_bot([channel]), scripted.make_bot([channel])]
    async with asyncio.TaskGroup() as group:
        for bot in bots:

            def provider(client_id: str = bot.client_id) -> str:
                return mint(client_id, "agent")

            group.create_task(bot.run(url, token_provider=provider))
