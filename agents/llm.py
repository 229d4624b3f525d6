"""Stream tokens from any OpenAI-compatible `/v1/chat/completions` endpoint (SSE), and a bot built on it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any

import aiohttp

from agentchat.bot import Bot
from agentchat.context import Context
from agentchat.errors import AgentChatError
from agentchat.filters import Addressed
from agentchat.models import Message


@dataclass(frozen=True, slots=True)
class LLMSettings:
    """Where the model is and how to call it. `from_env` reads `AGENTCHAT_LLM_*` variables."""

    base_url: str = "https://api.openai.com/v1"
    api_key: str | None = None
    model: str = "gpt-4o-mini"
    temperature: float | None = None
    max_tokens: int | None = None
    timeout: float = 120.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LLMSettings:
        """Read AGENTCHAT_LLM_BASE_URL, _API_KEY (or OPENAI_API_KEY), _MODEL, _TEMPERATURE,
        _MAX_TOKENS and _TIMEOUT; unset ones keep their defaults; `overrides` win."""
        env = os.environ if environ is None else environ
        settings = cls()
        values: dict[str, Any] = {}
        if url := env.get("AGENTCHAT_LLM_BASE_URL"):
            values["base_url"] = url
        if key := env.get("AGENTCHAT_LLM_API_KEY") or env.get("OPENAI_API_KEY"):
            values["api_key"] = key
        if model := env.get("AGENTCHAT_LLM_MODEL"):
            values["model"] = model
        for name, convert in (("temperature", float), ("max_tokens", int), ("timeout", float)):
            if raw := env.get(f"AGENTCHAT_LLM_{name.upper()}"):
                values[name] = convert(raw)
        return replace(settings, **{**values, **overrides})

    @property
    def endpoint(self) -> str:
        """The chat completions URL (`base_url` may be the API root or the endpoint itself)."""
        base = self.base_url.rstrip("/")
        return base if base.endswith("/chat/completions") else f"{base}/chat/completions"


class LLMError(AgentChatError):
    """The endpoint refused the request or sent an error in the stream."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class ChatModel:
    """An OpenAI-compatible chat model; `stream(messages)` yields text deltas as they arrive."""

    def __init__(
        self, settings: LLMSettings | None = None, *, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.settings = settings or LLMSettings.from_env()
        self._session = session
        self._own_session = session is None

    async def __aenter__(self) -> ChatModel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session if this model made it."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    async def stream(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> AsyncIterator[str]:
        """POST the chat with `stream: true` and yield each `choices[0].delta.content` until `[DONE]`.

        Extra `params` go into the request body. Leaving the iteration early closes the request,
        which stops the generation server-side.
        """
        body: dict[str, Any] = {"model": self.settings.model, "messages": list(messages), "stream": True}
        if self.settings.temperature is not None:
            body["temperature"] = self.settings.temperature
        if self.settings.max_tokens is not None:
            body["max_tokens"] = self.settings.max_tokens
        body.update(params)
        headers = {"Accept": "text/event-stream"}
        if self.settings.api_key:
            headers["Authorization"] = f"Bearer {self.settings.api_key}"
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout)
        async with self._session.post(
            self.settings.endpoint, json=body, headers=headers, timeout=timeout
        ) as response:
            if response.status != 200:
                detail = (await response.text())[:500]
                raise LLMError(f"chat completions answered {response.status}: {detail}", response.status)
            async for data in _sse_data(response.content):
                if data == "[DONE]":
                    return
                delta = _delta(data)
                if delta:
                    yield delta

    async def complete(self, messages: Sequence[Mapping[str, Any]], **params: Any) -> str:
        """The whole answer as one string."""
        return "".join([piece async for piece in self.stream(messages, **params)])


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[str]:
    # One event is a group of lines ended by a blank line; its `data:` lines join with newlines.
    lines: list[str] = []
    async for raw in content:
        line = raw.decode("utf-8").rstrip("\r\n")
        if not line:
            if lines:
                yield "\n".join(lines)
                lines = []
            continue
        if line.startswith("data:"):
            value = line[5:]
            lines.append(value[1:] if value.startswith(" ") else value)
    if lines:
        yield "\n".join(lines)


def _delta(data: str) -> str:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise LLMError(f"undecodable stream chunk: {data[:200]!r}") from exc
    if not isinstance(chunk, dict):
        return ""
    if "error" in chunk:
        error = chunk["error"]
        raise LLMError(str(error.get("message", error) if isinstance(error, dict) else error))
    choices = chunk.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    content = (choices[0].get("delta") or {}).get("content")
    return content if isinstance(content, str) else ""


def chat_messages(history: Sequence[Message], me: str, system: str | None = None) -> list[dict[str, Any]]:
    """Channel messages (oldest first) as chat messages: mine are `assistant`, others `user` with a
    name. Events and messages without text (tombstones) are left out."""
    chat: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in history:
        if not message.text or message.is_event:
            continue
        if message.client_id == me:
            chat.append({"role": "assistant", "content": message.text})
        else:
            chat.append({"role": "user", "content": f"{message.client_id}: {message.text}"})
    return chat


def make_llm_bot(
    client_id: str,
    channels: Sequence[str] = ("room:lobby",),
    *,
    settings: LLMSettings | None = None,
    system: str | None = None,
    context_messages: int = 20,
    addressed: Addressed = "me",
) -> Bot:
    """A bot that answers by streaming the model's reply into the channel.

    `addressed` picks the messages it answers: `"me"` (they mention `@client_id`, the default),
    `"me_or_nobody"`, or `"any"` (every message but its own). The model sees the last
    `context_messages` messages of the question's conversation (`Context.conversation`: the main
    timeline, or its thread) up to the question. The settings are read once, here (from the
    environment when `settings` is None): change them by making a new bot. The HTTP session the
    model opens is closed when the bot's `run` ends.
    """
    model = ChatModel(settings)
    bot = Bot(client_id, channels, presence={"role": "assistant", "model": model.settings.model})
    bot.on_shutdown(model.close)
    prompt = system or f"You are {client_id}, a helpful participant in a group chat. Answer briefly."

    @bot.on_message(addressed=addressed)
    async def answer(context: Context) -> None:
        """Stream the model's answer to `context.message`, given the recent conversation."""
        recent = await context.conversation(context_messages)
        chat = chat_messages(recent, context.client.client_id or client_id, prompt)
        async with context.stream(name="answer", meta={"model": model.settings.model}) as stream:
            async for delta in model.stream(chat):
                await stream.append(delta)

    return bot
