"""Stream text and tool calls from an OpenAI-compatible `/v1/chat/completions` endpoint (SSE); a bot on it."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
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


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the answer's text."""

    text: str


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of tool call `index`: its first piece has `id` and `name`, every piece may carry a
    chunk of the arguments (JSON text, whole only once the call is finished)."""

    index: int
    id: str | None
    name: str | None
    arguments_chunk: str


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A whole tool call: its id, the tool's name and its arguments as JSON text."""

    index: int
    id: str
    name: str
    arguments: str

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON; LLMError if the model sent something else."""
        try:
            return json.loads(self.arguments or "{}")
        except ValueError as exc:
            raise LLMError(
                f"tool call {self.id} has arguments that are not JSON: {self.arguments[:200]!r}"
            ) from exc


@dataclass(frozen=True, slots=True)
class Finish:
    """The end of a completion: the finish reason (`stop`, `tool_calls`, `length`, ... or None if the
    endpoint gave none) and the tool calls the model made, in index order."""

    reason: str | None
    tool_calls: tuple[ToolCall, ...] = ()


ModelEvent = TextDelta | ToolCallDelta | Finish


class ToolCallAssembler:
    """Assembles OpenAI's streamed `delta.tool_calls` pieces into whole tool calls, per index."""

    def __init__(self) -> None:
        self._ids: dict[int, str] = {}
        self._names: dict[int, str] = {}
        self._arguments: dict[int, list[str]] = {}

    def feed(self, pieces: Any) -> list[ToolCallDelta]:
        """The typed deltas of one chunk's `tool_calls` (None: none); LLMError if malformed."""
        if pieces is None:
            return []
        if not isinstance(pieces, list):
            raise LLMError(f"delta.tool_calls is not a list: {pieces!r:.200}")
        return [self._piece(piece) for piece in pieces]

    def _piece(self, piece: Any) -> ToolCallDelta:
        if not isinstance(piece, dict):
            raise LLMError(f"a tool call delta is not an object: {piece!r:.200}")
        index = piece.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise LLMError(f"a tool call delta has no valid index: {piece!r:.200}")
        function = piece.get("function") or {}
        if not isinstance(function, dict):
            raise LLMError(f"tool call {index}: function is not an object")
        # Some compatible servers repeat empty ids and names after the first piece: they mean none.
        call_id, name = piece.get("id") or None, function.get("name") or None
        chunk = function.get("arguments") or ""
        if not isinstance(chunk, str):
            raise LLMError(f"tool call {index}: arguments are not text: {chunk!r:.200}")
        for label, value, known in (("id", call_id, self._ids), ("name", name, self._names)):
            if value is None:
                continue
            if not isinstance(value, str):
                raise LLMError(f"tool call {index}: {label} is not a string: {value!r:.200}")
            if known.get(index, value) != value:
                raise LLMError(f"tool call {index} changed its {label} from {known[index]!r} to {value!r}")
        if index not in self._arguments:
            if call_id is None or name is None:
                raise LLMError(f"tool call {index} starts without an id and a name")
            self._ids[index], self._names[index], self._arguments[index] = call_id, name, []
        self._arguments[index].append(chunk)
        return ToolCallDelta(index, call_id, name, chunk)

    def finish(self) -> tuple[ToolCall, ...]:
        """The whole tool calls seen so far, in index order."""
        return tuple(
            ToolCall(index, self._ids[index], self._names[index], "".join(self._arguments[index]))
            for index in sorted(self._arguments)
        )


class ChatModel:
    """An OpenAI-compatible chat model: `stream(messages)` yields text deltas as they arrive, `events`
    yields text and tool call deltas."""

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
        # aclosing: leaving this iteration early closes the HTTP request at once, not at collection.
        async with aclosing(self._chunks(messages, params)) as chunks:
            async for chunk in chunks:
                delta = _delta(chunk)
                if delta:
                    yield delta

    async def events(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        **params: Any,
    ) -> AsyncIterator[ModelEvent]:
        """Like `stream`, with tool calls: yield `TextDelta`s and `ToolCallDelta`s as they arrive, then
        one `Finish` (the finish reason and the whole tool calls). `tools` is OpenAI's tool list.

        A malformed tool call delta (no index, arguments not text, a call without id or name)
        raises LLMError.
        """
        if tools is not None:
            params = {**params, "tools": list(tools)}
        calls = ToolCallAssembler()
        reason: str | None = None
        async with aclosing(self._chunks(messages, params)) as chunks:
            async for chunk in chunks:
                choice = _choice(chunk)
                if choice is None:
                    continue
                delta = choice.get("delta") or {}
                if not isinstance(delta, dict):
                    raise LLMError(f"a stream chunk's delta is not an object: {delta!r:.200}")
                content = delta.get("content")
                if isinstance(content, str) and content:
                    yield TextDelta(content)
                for piece in calls.feed(delta.get("tool_calls")):
                    yield piece
                if isinstance(choice.get("finish_reason"), str):
                    reason = choice["finish_reason"]
        yield Finish(reason, calls.finish())

    async def _chunks(
        self, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]
    ) -> AsyncGenerator[Any, None]:
        # The decoded JSON chunks of one streamed completion, until [DONE]; error chunks raise.
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
                yield _decode(data)

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


def _decode(data: str) -> Any:
    try:
        chunk = json.loads(data)
    except ValueError as exc:
        raise LLMError(f"undecodable stream chunk: {data[:200]!r}") from exc
    if isinstance(chunk, dict) and "error" in chunk:
        error = chunk["error"]
        raise LLMError(str(error.get("message", error) if isinstance(error, dict) else error))
    return chunk


def _choice(chunk: Any) -> dict[str, Any] | None:
    # Chunks without a first choice (usage reports, keep-alives) carry nothing to yield.
    if not isinstance(chunk, dict):
        return None
    choices = chunk.get("choices") or []
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return None
    return choices[0]


def _delta(chunk: Any) -> str:
    choice = _choice(chunk)
    if choice is None:
        return ""
    content = (choice.get("delta") or {}).get("content")
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
