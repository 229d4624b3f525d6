"""The demo planner: answers `@planner` with a short plan built from the question, streamed token by token.

With no model configured it needs no network: the plan is made from the question's own words. When
the OpenAI-compatible settings are in the environment (AGENTCHAT_LLM_BASE_URL or
AGENTCHAT_LLM_API_KEY, see `agentchat.llm`) the answer comes from that model instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping, Sequence

from agentchat.bot import Bot
from agentchat.context import Context
from agentchat.llm import ChatModel, LLMError, LLMSettings, chat_messages

CLIENT_ID = "planner"

log = logging.getLogger("agentchat.examples.planner")

PROMPT = "You are planner, a helpful planner in a group chat. Answer with a short, concrete plan."

_TOKEN = re.compile(r"\s*\S+")
_MENTION = re.compile(r"(?<![\w@])@[A-Za-z0-9][A-Za-z0-9_\-.@]*")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]+")
_FILLER = frozenset(
    "a about after again all also an and any are as at be because been before being but by can could "
    "did do does doing done for from get got had has have how i if in into is it its just let like make "
    "me more most my need now of on or our out please plan should sketch so some than that the their them "
    "then there these they thing things this those to up us very want was we were what when where which "
    "who why will with would you your".split()
)


def tokenize(text: str) -> list[str]:
    """Split text into model-like tokens: words with their leading space, long words in pieces."""
    tokens: list[str] = []
    for word in _TOKEN.findall(text):
        while len(word) > 6:
            tokens.append(word[:4])
            word = word[4:]
        tokens.append(word)
    return tokens


def topic_of(question: str) -> str:
    """The question without mentions, extra spaces or closing punctuation (at most 120 characters)."""
    text = " ".join(_MENTION.sub(" ", question).split()).strip(" ?!.,;:")
    return text[:120] or "this"


def key_words(question: str, limit: int = 3) -> list[str]:
    """The question's first `limit` distinct words that are not fillers or mentions, lowercased."""
    words: list[str] = []
    for word in _WORD.findall(topic_of(question)):
        if word.lower() not in _FILLER and word.lower() not in words:
            words.append(word.lower())
    return words[:limit]


def plan_for(question: str) -> str:
    """A short, deterministic plan that quotes the question's topic and its key words."""
    topic = topic_of(question)
    key = key_words(question)
    if len(key) > 1:
        parts = f"{', '.join(key[:-1])} and {key[-1]}"
    else:
        parts = key[0] if key else "the work"
    return (
        f'A short plan for "{topic}": '
        f"1. Agree what done looks like for {topic}. "
        f"2. Split {parts} into steps of a day or less, riskiest first. "
        "3. Give each step an owner and a way to check it worked. "
        "4. Look at the result after the first step and adjust the rest."
    )


class ScriptedModel:
    """A stand-in language model: streams `plan_for(prompt)` at `rate` tokens per second."""

    def __init__(self, rate: float = 40.0, think: float = 0.3) -> None:
        self.rate = rate
        self.think = think

    async def tokens(self, prompt: str) -> AsyncIterator[str]:
        """The plan for `prompt` (the same prompt always gets the same answer), paced like a model."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(self.think)
        due = loop.time()
        for token in tokenize(plan_for(prompt)):
            # Pace against a deadline so the rate holds even when the event loop is busy.
            due += 1 / self.rate
            await asyncio.sleep(max(0.0, due - loop.time()))
            yield token


def model_settings(environ: Mapping[str, str] | None = None) -> LLMSettings | None:
    """The model settings when AGENTCHAT_LLM_BASE_URL or AGENTCHAT_LLM_API_KEY is set, else None.

    OPENAI_API_KEY alone does not switch the demo to a paid model; it is still used as the key.
    """
    env = os.environ if environ is None else environ
    if not (env.get("AGENTCHAT_LLM_BASE_URL") or env.get("AGENTCHAT_LLM_API_KEY")):
        return None
    return LLMSettings.from_env(env)


def make_bot(
    channels: Sequence[str] = ("room:lobby",),
    *,
    rate: float | None = None,
    settings: LLMSettings | None = None,
    pool: bool | str = False,
) -> Bot:
    """The planner (client_id "planner"): answers messages that mention `@planner`, and nothing else.

    `rate` is tokens per second of the scripted answer (default: AGENTCHAT_SCRIPTED_RATE or 40).
    `settings` (default: `model_settings()`, read once here) makes it answer from a real model;
    if the model fails before its first token, the scripted plan answers instead. `pool` makes it
    one instance of a pool (`Bot(pool=...)`, see `agentchat.examples.pool`).
    """
    scripted = ScriptedModel(rate or float(os.environ.get("AGENTCHAT_SCRIPTED_RATE", "40")))
    settings = settings or model_settings()
    model = ChatModel(settings) if settings is not None else None
    presence = {"role": "planner", "model": settings.model if settings is not None else "scripted"}
    bot = Bot(CLIENT_ID, channels, presence=presence, pool=pool)
    if model is not None:
        bot.on_shutdown(model.close)

    async def tokens(context: Context) -> AsyncIterator[str]:
        if model is not None:
            started = False
            try:
                me = context.client.client_id or CLIENT_ID
                chat = chat_messages(await context.conversation(20), me, PROMPT)
                async for delta in model.stream(chat):
                    started = True
                    yield delta
                return
            except LLMError as exc:
                if started:
                    raise
                log.warning("model unavailable (%s); answering with the scripted plan", exc)
        async for token in scripted.tokens(context.message.text):
            yield token

    @bot.on_message(mentions_me=True)
    async def answer(context: Context) -> None:
        async with context.stream(name="answer") as stream:
            async for token in tokens(context):
                await stream.append(token)

    return bot


bot = make_bot()
