"""The OpenAI-compatible adapter against a fake chat completions endpoint on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
import os
from ast import PyCF_ALLOW_TOP_LEVEL_AWAIT
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web

from agentchat import Client
from agentchat.llm import (
    ChatModel,
    Finish,
    LLMError,
    LLMSettings,
    ModelEvent,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    chat_messages,
    make_llm_bot,
)
from agentchat.models import Message
from agentchat_server.testing import TestServer
from tests.sdk_helpers import messages_until, running
from tests.snippets import block

TOKENS = ["Hel", "lo", ", ", "wor", "ld", "!"]


class FakeEndpoint:
    """A real HTTP server speaking the streaming chat completions format (SSE `data:` chunks, [DONE])."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""
        self.scripts: dict[str, list[Any]] = {}  # model name -> the chunks to send, then [DONE]

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if body["model"] == "broken":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keep-alive\n\n")
        if body["model"] in self.scripts:
            for chunk in self.scripts[body["model"]]:
                data = chunk if isinstance(chunk, str) else json.dumps(chunk)
                await response.write(f"data: {data}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            return response
        first = {
            "id": "c1",
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": {"role": "assistant"}}],
        }
        await response.write(f"data: {json.dumps(first)}\n\n".encode())
        for token in TOKENS:
            chunk = {
                "id": "c1",
                "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
            }
            await response.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
        last = {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
        return response


@pytest.fixture
async def endpoint() -> AsyncIterator[FakeEndpoint]:
    fake = FakeEndpoint()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"http://127.0.0.1:{port}/v1"
    yield fake
    await runner.cleanup()


def test_settings_come_from_the_environment() -> None:
    """AGENTCHAT_LLM_* variables configure the endpoint, key and model."""
    settings = LLMSettings.from_env(
        {"AGENTCHAT_LLM_BASE_URL": "http://h/v1/", "AGENTCHAT_LLM_API_KEY": "k", "AGENTCHAT_LLM_MODEL": "m"}
    )
    assert (settings.endpoint, settings.api_key, settings.model) == ("http://h/v1/chat/completions", "k", "m")
    assert LLMSettings(base_url="http://h/v1/chat/completions").endpoint == "http://h/v1/chat/completions"


async def test_model_streams_deltas(endpoint: FakeEndpoint) -> None:
    """The adapter yields each delta's content in order and sends model, messages, stream and key."""
    async with ChatModel(LLMSettings(base_url=endpoint.url, api_key="sk-test", model="fake-1")) as model:
        pieces = [piece async for piece in model.stream([{"role": "user", "content": "hi"}])]
    assert pieces == TOKENS
    assert endpoint.requests[0] == {
        "model": "fake-1",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
    }
    assert endpoint.headers[0]["Authorization"] == "Bearer sk-test"


async def test_endpoint_errors_raise(endpoint: FakeEndpoint) -> None:
    """A refused request raises LLMError with the HTTP status."""
    async with ChatModel(LLMSettings(base_url=endpoint.url, model="broken")) as model:
        with pytest.raises(LLMError) as refused:
            await model.complete([{"role": "user", "content": "hi"}])
    assert refused.value.status == 404


def test_chat_messages_map_roles() -> None:
    """The bot's own messages become `assistant` turns, everyone else's named `user` turns."""

    def message(client_id: str, text: str) -> Message:
        return Message("room:x", 1, "i", "message", text, client_id, "human", 0)

    chat = chat_messages([message("ana", "hi @gpt"), message("gpt", "hello")], "gpt", "be nice")
    assert chat == [
        {"role": "system", "content": "be nice"},
        {"role": "user", "content": "ana: hi @gpt"},
        {"role": "assistant", "content": "hello"},
    ]


async def test_llm_bot_streams_the_model_into_the_channel(server: TestServer, endpoint: FakeEndpoint) -> None:
    """A bot on the adapter answers a mention by streaming the endpoint's tokens as one message."""
    bot = make_llm_bot("gpt", settings=LLMSettings(base_url=endpoint.url, model="fake-1"))
    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("@gpt say hello")
        got = await messages_until(subscription, lambda m: m.client_id == "gpt")
    answer = got[-1]
    assert answer.data == "".join(TOKENS) and answer.reply_to == question and answer.status == "complete"
    assert endpoint.requests[0]["messages"][-1] == {"role": "user", "content": "ana: @gpt say hello"}


async def test_llm_bot_any_means_any_and_its_session_is_closed(
    server: TestServer, endpoint: FakeEndpoint
) -> None:
    """With addressed="any" the bot answers a message that mentions nobody (or someone else); when
    the bot stops, the model's HTTP session is closed (no "Unclosed client session")."""
    complaints: list[str] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: complaints.append(str(context.get("message"))))
    bot = make_llm_bot("gpt", settings=LLMSettings(base_url=endpoint.url, model="fake-1"), addressed="any")
    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = await room.subscribe()
        question = await room.publish("@bob what do you think?")
        got = await messages_until(subscription, lambda m: m.client_id == "gpt")
    assert got[-1].reply_to == question and got[-1].data == "".join(TOKENS)
    del bot
    gc.collect()
    loop.set_exception_handler(None)
    assert not [c for c in complaints if "Unclosed client session" in c]


def tool_piece(
    index: int, arguments: str, call_id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    """One `delta.tool_calls` entry as OpenAI streams it (id and name only in a call's first piece)."""
    piece: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if call_id is not None:
        piece |= {"id": call_id, "type": "function"}
        piece["function"]["name"] = name
    return piece


def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    """A streamed completion chunk with one choice."""
    return {"id": "c1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def events_of(endpoint: FakeEndpoint, script: list[Any], **params: Any) -> list[ModelEvent]:
    """Everything `ChatModel.events` yields for a completion streamed as `script`."""
    endpoint.scripts["scripted"] = script
    async with ChatModel(LLMSettings(base_url=endpoint.url, model="scripted")) as model:
        return [event async for event in model.events([{"role": "user", "content": "hi"}], **params)]


WEATHER = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


async def test_tool_call_arguments_split_over_chunks(endpoint: FakeEndpoint) -> None:
    """A tool call's id and name come in its first piece and its arguments over three more; `events`
    yields each piece and a Finish with the whole call; the tools go into the request."""
    script = [
        chunk({"role": "assistant", "tool_calls": [tool_piece(0, "", "call_1", "weather")]}),
        chunk({"tool_calls": [tool_piece(0, '{"ci')]}),
        chunk({"tool_calls": [tool_piece(0, 'ty": "Os')]}),
        chunk({"tool_calls": [tool_piece(0, 'lo"}')]}),
        chunk({}, finish="tool_calls"),
    ]
    got = await events_of(endpoint, script, tools=WEATHER)
    assert got == [
        ToolCallDelta(0, "call_1", "weather", ""),
        ToolCallDelta(0, None, None, '{"ci'),
        ToolCallDelta(0, None, None, 'ty": "Os'),
        ToolCallDelta(0, None, None, 'lo"}'),
        Finish("tool_calls", (ToolCall(0, "call_1", "weather", '{"city": "Oslo"}'),)),
    ]
    finish = got[-1]
    assert isinstance(finish, Finish) and finish.tool_calls[0].parsed_arguments() == {"city": "Oslo"}
    assert endpoint.requests[-1]["tools"] == WEATHER and endpoint.requests[-1]["stream"] is True


async def test_two_parallel_tool_calls_are_kept_apart_by_index(endpoint: FakeEndpoint) -> None:
    """Two calls streamed interleaved (pieces of index 0 and 1 in one chunk and across chunks) each
    assemble their own arguments, and come back in index order."""
    script = [
        chunk(
            {
                "tool_calls": [
                    tool_piece(0, "", "call_a", "weather"),
                    tool_piece(1, '{"city"', "call_b", "time"),
                ]
            }
        ),
        chunk({"tool_calls": [tool_piece(1, ': "Lima"}')]}),
        chunk({"tool_calls": [tool_piece(0, '{"city": "Oslo"}')]}),
        chunk({}, finish="tool_calls"),
    ]
    got = await events_of(endpoint, script)
    assert [(e.index, e.arguments_chunk) for e in got if isinstance(e, ToolCallDelta)] == [
        (0, ""),
        (1, '{"city"'),
        (1, ': "Lima"}'),
        (0, '{"city": "Oslo"}'),
    ]
    assert got[-1] == Finish(
        "tool_calls",
        (
            ToolCall(0, "call_a", "weather", '{"city": "Oslo"}'),
            ToolCall(1, "call_b", "time", '{"city": "Lima"}'),
        ),
    )


async def test_text_and_tool_calls_in_one_completion(endpoint: FakeEndpoint) -> None:
    """Text deltas and tool call pieces of one completion come out in the order they arrived; usage
    chunks without choices are skipped; `stream` still yields the text only."""
    script = [
        chunk({"role": "assistant", "content": "Let me "}),
        chunk({"content": "check."}),
        chunk({"tool_calls": [tool_piece(0, '{"city": "Oslo"}', "call_1", "weather")]}),
        chunk({}, finish="tool_calls"),
        {"id": "c1", "choices": [], "usage": {"total_tokens": 9}},
    ]
    got = await events_of(endpoint, script)
    assert got == [
        TextDelta("Let me "),
        TextDelta("check."),
        ToolCallDelta(0, "call_1", "weather", '{"city": "Oslo"}'),
        Finish("tool_calls", (ToolCall(0, "call_1", "weather", '{"city": "Oslo"}'),)),
    ]
    async with ChatModel(LLMSettings(base_url=endpoint.url, model="scripted")) as model:
        assert await model.complete([{"role": "user", "content": "hi"}]) == "Let me check."
    assert await events_of(endpoint, [chunk({"content": "ok"}, finish="stop")]) == [
        TextDelta("ok"),
        Finish("stop"),
    ]


@pytest.mark.parametrize(
    ("script", "says"),
    [
        ([chunk({"tool_calls": {"index": 0}})], "not a list"),
        ([chunk({"tool_calls": [{"function": {"arguments": "{}"}}]})], "no valid index"),
        ([chunk({"tool_calls": [tool_piece(0, "{}")]})], "without an id and a name"),
        (
            [
                chunk(
                    {
                        "tool_calls": [
                            {"index": 0, "id": "c", "function": {"name": "f", "arguments": {"a": 1}}}
                        ]
                    }
                )
            ],
            "not text",
        ),
        (
            [
                chunk({"tool_calls": [tool_piece(0, "", "call_1", "weather")]}),
                chunk({"tool_calls": [tool_piece(0, "{}", "call_2", "weather")]}),
            ],
            "changed its id",
        ),
        ([chunk({"tool_calls": ["oops"]})], "not an object"),
        (["{not json"], "undecodable"),
        ([{"error": {"message": "rate limited"}}], "rate limited"),
    ],
)
async def test_malformed_tool_call_chunks_raise(endpoint: FakeEndpoint, script: list[Any], says: str) -> None:
    """A malformed tool call piece (or chunk) raises LLMError saying what is wrong."""
    with pytest.raises(LLMError, match=says):
        await events_of(endpoint, script)


def test_tool_call_arguments_that_are_not_json_raise() -> None:
    """A whole call whose arguments are not JSON raises LLMError when parsed; none means {}."""
    with pytest.raises(LLMError, match="not JSON"):
        ToolCall(0, "call_1", "weather", '{"city": ').parsed_arguments()
    assert ToolCall(0, "call_1", "weather", "").parsed_arguments() == {}


async def test_the_tool_call_example_runs(endpoint: FakeEndpoint) -> None:
    """The tool call example of docs/sdk.md, pointed at a fake endpoint, prints the arguments as they
    stream and ends with the whole call."""
    endpoint.scripts[LLMSettings().model] = [
        chunk({"tool_calls": [tool_piece(0, '{"city":', "call_1", "weather")]}),
        chunk({"tool_calls": [tool_piece(0, ' "Oslo"}')]}, finish="tool_calls"),
    ]
    printed: list[str] = []
    ns: dict[str, Any] = {"print": lambda *args, **_: printed.append(" ".join(map(str, args)))}
    code = compile(
        block("docs/sdk.md", "model.events(").text, "<sdk.md>", "exec", flags=PyCF_ALLOW_TOP_LEVEL_AWAIT
    )
    with patch.dict(os.environ, {"AGENTCHAT_LLM_BASE_URL": endpoint.url}):
        result = eval(code, ns)  # the docs' own code, as a reader would paste it
        if asyncio.iscoroutine(result):
            await result
    assert "".join(printed) == '{"city": "Oslo"}'
    assert ns["calls"] == [("weather", {"city": "Oslo"})]
