"""A bot's failed answers: a raising handler leaves a `failed` answer (never `cancelled`) with the
error, and the retry policy answers again after a retryable model failure, with a new id."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agentchat import Bot, Client, Context
from agentchat.connection import Backoff
from agentchat.llm import LLMError, LLMSettings, make_llm_bot
from agentchat.retry import Retry, error_info, retryable
from agentchat_server.testing import TestServer
from tests.sdk_helpers import messages_until, running

ROOM = "room:lobby"
FAST = Retry(attempts=3, backoff=Backoff(initial=0.01, maximum=0.02))


class FlakyEndpoint:
    """A real OpenAI-compatible chat completions endpoint that answers 503 `failures` times, then
    streams "All good." as SSE chunks."""

    def __init__(self, failures: int, status: int = 503) -> None:
        self.failures = failures
        self.status = status
        self.calls = 0
        self.url = ""

    async def completions(self, request: web.Request) -> web.StreamResponse:
        await request.json()
        self.calls += 1
        if self.calls <= self.failures:
            return web.json_response({"error": {"message": "overloaded"}}, status=self.status)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for token in ("All ", "good."):
            chunk = {"choices": [{"index": 0, "delta": {"content": token}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


async def serve(endpoint: FlakyEndpoint) -> web.AppRunner:
    app = web.Application()
    app.router.add_post("/v1/chat/completions", endpoint.completions)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    endpoint.url = f"http://127.0.0.1:{port}/v1"
    return runner


@pytest.fixture
async def flaky() -> AsyncIterator[FlakyEndpoint]:
    endpoint = FlakyEndpoint(failures=1)
    runner = await serve(endpoint)
    yield endpoint
    await runner.cleanup()


@pytest.fixture
async def refusing() -> AsyncIterator[FlakyEndpoint]:
    endpoint = FlakyEndpoint(failures=10, status=400)
    runner = await serve(endpoint)
    yield endpoint
    await runner.cleanup()


async def stored_answers(human: Client, question: int) -> list[dict[str, Any]]:
    """The durable answers to `question`, oldest first, as the server stores them (with `error`)."""
    page = await human.request({"type": "history", "channel": ROOM, "after": question, "limit": 50})
    return sorted((m for m in page["messages"] if m.get("reply_to") == question), key=lambda m: m["serial"])


def test_which_failures_are_retried() -> None:
    """429 and 5xx statuses, lost connections and timeouts are retryable; 4xx and bugs are not."""
    assert retryable(LLMError("busy", 503)) and retryable(LLMError("slow down", 429))
    assert retryable(ConnectionResetError()) and retryable(TimeoutError())
    assert not retryable(LLMError("bad request", 400)) and not retryable(LLMError("bad chunk"))
    assert not retryable(KeyError("oops"))
    assert error_info(LLMError("busy", 503)) == ("busy", "upstream_503")
    assert error_info(KeyError("oops")) == ("'oops'", "KeyError")
    assert FAST.should_retry(LLMError("busy", 503), 1) and not FAST.should_retry(LLMError("busy", 503), 2)
    with pytest.raises(ValueError):
        Retry(attempts=0)


async def test_a_503_then_success_leaves_a_failed_answer_then_a_complete_one(
    server: TestServer, flaky: FlakyEndpoint
) -> None:
    """The model answers 503 once: the room holds a `failed` answer carrying the error, then a
    `complete` one with a new id (attempt 1)."""
    bot = make_llm_bot("gpt", settings=LLMSettings(base_url=flaky.url, model="m"))
    bot.retry = FAST
    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("@gpt hello")
        await messages_until(subscription, lambda m: m.client_id == "gpt" and m.status == "complete")
        answers = await stored_answers(human, question)
    assert [a["status"] for a in answers] == ["failed", "complete"]
    failed, complete = answers
    assert failed["error"]["code"] == "upstream_503" and "503" in failed["error"]["message"]
    assert complete["data"] == "All good." and "error" not in complete
    assert failed["id"] == bot.reply_id(ROOM, question, 0)
    assert complete["id"] == bot.reply_id(ROOM, question, 1)
    assert flaky.calls == 2


async def test_a_non_retryable_failure_fails_once(server: TestServer, refusing: FlakyEndpoint) -> None:
    """A 400 from the model ends the answer `failed` once; nothing is retried."""
    bot = make_llm_bot("gpt", settings=LLMSettings(base_url=refusing.url, model="m"))
    bot.retry = FAST
    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("@gpt hello")
        await messages_until(subscription, lambda m: m.client_id == "gpt")
        # A marker after the answer: the bot's retry would have come before the bot saw it.
        marker = await room.publish("@gpt second")
        await messages_until(subscription, lambda m: m.client_id == "gpt" and m.reply_to == marker)
        answers = await stored_answers(human, question)
    assert [(a["status"], a["error"]["code"]) for a in answers] == [("failed", "upstream_400")]
    assert refusing.calls == 2  # one call per question


async def test_a_handler_raising_before_answering_leaves_a_failed_answer(server: TestServer) -> None:
    """A handler that raises before it replied leaves a `failed` answer with the error's message and
    class name (not a `cancelled` one, not silence); without a retry policy it fails once."""
    bot = Bot("broken", [ROOM])

    @bot.on_message
    async def answer(context: Context) -> str:
        raise RuntimeError(f"cannot answer {context.message.text}")

    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("this")
        answer_message = (await messages_until(subscription, lambda m: m.client_id == "broken"))[-1]
        answers = await stored_answers(human, question)
    assert answer_message.status == "failed" and answer_message.reply_to == question
    assert [(a["status"], a["error"]) for a in answers] == [
        ("failed", {"message": "cannot answer this", "code": "RuntimeError"})
    ]


async def test_a_stream_whose_model_fails_midway_keeps_its_text_and_fails(server: TestServer) -> None:
    """A streaming handler whose model raises after some tokens ends `failed`, keeping the text."""
    bot = Bot("streamer", [ROOM])

    @bot.on_message
    async def answer(context: Context) -> None:
        async with context.stream() as stream:
            await stream.append("Half an ")
            await stream.append("answer")
            raise LLMError("connection reset by model", 502)

    async with running(bot, server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel(ROOM)
        subscription = room.subscribe()
        await subscription.start()
        question = await room.publish("go")
        await messages_until(subscription, lambda m: m.client_id == "streamer" and m.status is not None)
        answers = await stored_answers(human, question)
    assert [(a["status"], a["data"], a["error"]["code"]) for a in answers] == [
        ("failed", "Half an answer", "upstream_502")
    ]
