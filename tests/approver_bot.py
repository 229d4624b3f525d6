"""A bot that asks before it acts, inside a run: `agentchat bot tests.approver_bot:make_bot` in the
approval tests (restarted processes must find their parked run and its answer)."""

from __future__ import annotations

import asyncio
import os
import sys

from agentchat import Bot, Context

ROOM = "team:ops"


def make_bot() -> Bot:
    """ "deployer": answers a person's message with a run that asks for approval, then says what it
    did in the run's text. No shutdown grace: a stop leaves the run parked at once. With
    APPROVER_HANG=1 it says "running <serial>" on stderr once its run started, then hangs (a stuck
    process, for a test to kill mid-run)."""
    bot = Bot("deployer", [ROOM], shutdown_grace=0)
    hang = os.environ.get("APPROVER_HANG") == "1"

    @bot.on_message(humans_only=True)
    async def deploy(context: Context) -> None:
        version = context.message.text
        async with context.run() as run:
            await run.publish_text(f"asking to deploy {version}", lane="reasoning")
            if hang:
                print(f"running {context.message.serial}", file=sys.stderr, flush=True)
                await asyncio.Event().wait()
            answer = await context.ask(f"Deploy {version}?", data={"version": version})
            verdict = f"deployed {version}" if answer.approved else f"not deployed: {answer.outcome}"
            await run.publish_text(verdict)

    return bot
