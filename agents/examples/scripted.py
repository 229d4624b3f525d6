"""A "scripted model" bot: streams a long canned answer token by token, no network and no model."""

from __future__ import annotations

import asyncio
import os
import re
import zlib
from collections.abc import AsyncIterator, Sequence

from agentchat.bot import Bot
from agentchat.context import Context

CLIENT_ID = "planner"

ANSWERS = (
    "Here is how I would approach it. First, let us pin down what done looks like: a short list of "
    "outcomes we can check, not a list of activities. Second, we split the work into steps small enough "
    "to finish in a day, and we put the riskiest step first, because what we learn there changes the "
    "rest of the plan. Third, each step gets an owner and a way to tell that it worked. Finally, we "
    "meet again after the first step, compare what happened with what we expected, and adjust. If you "
    "tell me the deadline and who is available, I can turn this into a concrete schedule.",
    "Good question. The short answer is that it depends on how often the data changes and who reads "
    "it. If readers need the latest value within a second, push updates to them over a channel and "
    "keep a durable copy for anyone who joins late. If a few minutes of delay is fine, a periodic job "
    "that writes a summary is simpler to run and easier to debug. In both cases, measure before you "
    "optimize: log how long each stage takes, find the slowest one, and fix that first. I would start "
    "with the simple version and keep a note of the numbers that would make us switch.",
    "Let me think about this step by step. We have three options on the table. The first is cheap and "
    "quick but leaves the hard problem for later. The second solves the hard problem but needs two "
    "people for a month. The third is a middle path: build the small core now, in a way that the "
    "bigger design can grow from, and learn from real use before committing further. I recommend the "
    "third option, with a clear checkpoint in two weeks where we decide whether to continue, change "
    "course, or stop. Does that match what you had in mind?",
)

_TOKEN = re.compile(r"\s*\S+")


def tokenize(text: str) -> list[str]:
    """Split text into model-like tokens: words with their leading space, long words in pieces."""
    tokens: list[str] = []
    for word in _TOKEN.findall(text):
        while len(word) > 6:
            tokens.append(word[:4])
            word = word[4:]
        tokens.append(word)
    return tokens


class ScriptedModel:
    """A stand-in language model: streams one of its canned answers at `rate` tokens per second."""

    def __init__(self, rate: float = 40.0, answers: Sequence[str] = ANSWERS, think: float = 0.3) -> None:
        self.rate = rate
        self.answers = tuple(answers)
        self.think = think

    async def tokens(self, prompt: str) -> AsyncIterator[str]:
        """The answer to `prompt` (the same prompt always gets the same answer), paced like a model."""
        answer = self.answers[zlib.crc32(prompt.encode()) % len(self.answers)]
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.think)
        due = loop.time()
        for token in tokenize(answer):
            # Pace against a deadline so the rate holds even when the event loop is busy.
            due += 1 / self.rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield token


def make_bot(channels: Sequence[str] = ("room:lobby",), *, rate: float | None = None) -> Bot:
    """The planner (client_id "planner"): answers human messages that mention it or nobody.

    `rate` is tokens per second (default: AGENTCHAT_SCRIPTED_RATE or 40).
    """
    model = ScriptedModel(rate or float(os.environ.get("AGENTCHAT_SCRIPTED_RATE", "40")))
    bot = Bot(CLIENT_ID, channels, presence={"role": "planner", "model": "scripted"})

    @bot.on_message(addressed="me_or_nobody", humans_only=True)
    async def answer(context: Context) -> None:
        async with context.stream(name="answer") as stream:
            async for token in model.tokens(context.message.text):
                await stream.append(token)

    return bot


bot = make_bot()
