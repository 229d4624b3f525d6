"""The OpenAI-compatible adapter against a fake chat completions endpoint on loopback."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agentchat import Client
from agentchat.llm import ChatModel, LLMError, LLMSettings, chat_messages, make_llm_bot
from agentchat.models import Message
from agentchat_server.testing import TestServer
from tests.sdk_helpers import messages_until, running

TOKENS = ["Hel", "lo", ", ", "wor", "ld", "!"]


class FakeEndpoint:
    """A real HTTP server speaking the streaming chat completions format (SSE `data:` chunks, [DONE])."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.url = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        if body["model"] == "broken":
            return web.json_response({"error": {"message": "no such model"}}, status=404)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keep-alive\n\n")
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
