"""The echo bot: answers every message that mentions @echo with the text it was sent."""

from __future__ import annotations

import re
from collections.abc import Sequence

from agentchat.bot import Bot
from agentchat.context import Context

CLIENT_ID = "echo"


def make_bot(channels: Sequence[str] = ("room:lobby",)) -> Bot:
    """An echo bot in `channels` (client_id "echo")."""
    bot = Bot(CLIENT_ID, channels, presence={"role": "echo"})

    @bot.on_message(mentions_me=True)
    async def echo(context: Context) -> str:
        text = re.sub(rf"@{CLIENT_ID}\b", "", context.message.text).strip()
        return f"echo: {text}" if text else "echo: (nothing to echo)"

    return bot


bot = make_bot()
