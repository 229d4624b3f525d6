"""A tool-using agent: answers `@librarian` with a run: its reasoning, a tool call with streamed
arguments, the tool's result, then the text answer.

The model is scripted by default (no network): it always calls the `lookup` tool on the question's
key words, and words its answer from the tool's result. When the OpenAI-compatible settings are in
the environment (AGENTCHAT_LLM_BASE_URL or AGENTCHAT_LLM_API_KEY, see `agentchat.llm`), that model
writes the text answer from the tool's result instead; the tool call stays scripted, as the
adapter streams text only.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence

from agentchat.bot import Bot
from agentchat.context import Context
from agentchat.examples.scripted import key_words, model_settings, tokenize
from agentchat.llm import ChatModel, LLMSettings

CLIENT_ID = "librarian"

CATALOGUE = {
    "streams": "Token streams end as one durable message: complete, failed, cancelled or aborted.",
    "claims": "A claim gives one member of a pool a message, under a lease with a fencing token.",
    "runs": "A run groups an agent's reasoning, tool calls, results and text for one request.",
    "presence": "Presence lists who is in a channel, one entry per connection.",
}
"""The `lookup` tool's knowledge: a few notes on agentchat, by key word."""


def lookup(words: Sequence[str]) -> dict[str, str]:
    """The tool: the catalogue's notes on `words` (singular or plural), by word."""
    found: dict[str, str] = {}
    for word in words:
        for name, note in CATALOGUE.items():
            if word in (name, name.rstrip("s")):
                found[name] = note
    return found


async def paced(pieces: Sequence[str], rate: float) -> AsyncIterator[str]:
    """`pieces` at `rate` per second, as a model would stream them."""
    for piece in pieces:
        await asyncio.sleep(1 / rate)
        yield piece


def answer_from(words: Sequence[str], found: dict[str, str]) -> str:
    """The scripted model's answer, worded from the tool's result."""
    if not found:
        return f"I found nothing on {', '.join(words) or 'that'} in the catalogue."
    return " ".join(found.values())


def make_bot(
    channels: Sequence[str] = ("room:lobby",), *, rate: float = 200.0, settings: LLMSettings | None = None
) -> Bot:
    """The librarian (client_id "librarian"): answers messages that mention `@librarian` with a run.

    `rate` paces the scripted model (pieces per second); `settings` (default: `model_settings()`)
    makes a real model write the text answer.
    """
    settings = settings or model_settings()
    model = ChatModel(settings) if settings is not None else None
    bot = Bot(CLIENT_ID, channels, presence={"role": "librarian", "tools": ["lookup"]})
    if model is not None:
        bot.on_shutdown(model.close)

    async def text(question: str, found: dict[str, str], words: Sequence[str]) -> AsyncIterator[str]:
        if model is None:
            async for piece in paced(tokenize(answer_from(words, found)), rate):
                yield piece
            return
        chat = [
            {"role": "system", "content": "Answer briefly, only from the tool result given."},
            {"role": "user", "content": question},
            {"role": "user", "content": f"lookup result: {json.dumps(found)}"},
        ]
        async for delta in model.stream(chat):
            yield delta

    @bot.on_message(mentions_me=True)
    async def answer(context: Context) -> None:
        question = context.message.text
        words = key_words(question)
        async with context.run() as run:
            async with run.reasoning() as thinking:
                thought = f"The question is about {', '.join(words) or 'nothing I know'}; I look it up."
                async for piece in paced(tokenize(thought), rate):
                    await thinking.append(piece)
            arguments = json.dumps({"words": words})
            async with run.tool_call("call_1", "lookup") as call:
                async for piece in paced([arguments[i : i + 8] for i in range(0, len(arguments), 8)], rate):
                    await call.append(piece)
            found = lookup(json.loads(arguments)["words"])
            await run.tool_result("call_1", found)
            async with run.text() as lane:
                async for piece in text(question, found, words):
                    await lane.append(piece)

    return bot


bot = make_bot()
