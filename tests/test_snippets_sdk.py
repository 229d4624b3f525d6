"""docs/sdk.md's examples run as written, against a development server on loopback.

A fragment runs in a namespace that holds what the page's prose says the reader has: `client`
(connected as ana), `room` (its `room:lobby`), and, where a fragment names them, small stand-ins
(`model_tokens`, `show`, `redraw`, `question`, `model`, `get_token`). `print` is recorded. A
fragment that loops on live messages runs until what it prints or calls shows it worked, then is
cancelled. tests/test_snippets.py checks every block is run here or listed with a reason.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import agentchat
from agentchat import Client
from agentchat_server.testing import TestServer
from tests.snippets import block, commands
from tests.test_sdk_llm import FakeEndpoint, endpoint  # noqa: F401 (fixture)
from tests.wire import UNIT, Wire

# ruff: noqa: F811
DOC_URL = "http://127.0.0.1:8080"
SDK = "docs/sdk.md"


class Recorder:
    """Stands in for `print` and the page's callbacks: records calls and lets a test await one."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self._changed = asyncio.Event()

    def __call__(self, name: str) -> Callable[..., None]:
        def record(*args: Any, **_: Any) -> None:
            self.calls.append((name, args))
            self._changed.set()

        return record

    def of(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of each call of `name`."""
        return [args for called, args in self.calls if called == name]

    async def wait_for(self, wanted: Callable[[list[tuple[str, tuple[Any, ...]]]], bool]) -> None:
        async with asyncio.timeout(UNIT * 10):
            while not wanted(self.calls):
                self._changed.clear()
                await self._changed.wait()


class Watched:
    """A channel whose calls a fragment awaits: tells the test when each one returned."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self._done: dict[str, asyncio.Event] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.channel, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            result = attribute(*args, **kwargs)
            if not inspect.isawaitable(result):
                return result

            async def awaited() -> Any:
                value = await result
                self._done.setdefault(name, asyncio.Event()).set()
                return value

            return awaited()

        return call

    async def returned(self, name: str) -> None:
        """Wait until a call of `name` returned."""
        async with asyncio.timeout(UNIT * 10):
            await self._done.setdefault(name, asyncio.Event()).wait()


async def present(wire: Wire, *client_ids: str) -> None:
    """Wait until each of `client_ids` is in the presence of the channel `wire` attached."""
    wanted = set(client_ids)
    async with asyncio.timeout(UNIT * 20):
        while wanted:
            frame = await wire.inbox.get()
            members = frame.get("members", []) + ([frame["member"]] if "member" in frame else [])
            wanted -= {m["client_id"] for m in members}


async def run_fragment(text: str, namespace: dict[str, Any]) -> None:
    """Run a Markdown block as the body of an async function (top-level `await` allowed)."""
    code = compile(text, "<sdk.md>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the docs' own code, run as a reader would paste it
    if asyncio.iscoroutine(result):
        await result


@pytest.fixture
async def dev() -> AsyncIterator[TestServer]:
    async with TestServer(None, dev=True) as server:
        yield server


@contextlib.asynccontextmanager
async def reader_namespace(server: TestServer, **extra: Any) -> AsyncIterator[dict[str, Any]]:
    """A namespace with `client` (ana, connected), `room` and a recorded `print`."""
    token = await agentchat.dev_token(server.url, "ana", "human")
    async with Client(server.url, token=token, client_id="ana") as client:
        recorder = Recorder()
        yield {
            "client": client,
            "room": client.channel("room:lobby"),
            "print": recorder("print"),
            "recorder": recorder,
            **extra,
        }


async def test_the_quick_start_program_answers_a_mention(dev: TestServer, tmp_path: Path) -> None:
    """The quick start, run as a program (URL: the test server's), publishes hello, enters
    presence, and answers `@helper` with a stream "Hello!"."""
    program = block(SDK, "asyncio.run(main())").text.replace(DOC_URL, dev.url)
    (tmp_path / "quick.py").write_text(program)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(tmp_path / "quick.py"), stdout=asyncio.subprocess.DEVNULL
    )
    wire = await Wire.open(dev.ws_url, dev.token("bob"))
    try:
        await wire.request({"type": "attach", "channel": "room:lobby"})
        await present(wire, "helper")
        await wire.request({"type": "publish", "channel": "room:lobby", "data": "@helper hi"})
        async with asyncio.timeout(UNIT * 10):
            while True:
                frame = await wire.expect("message")
                if frame["client_id"] == "helper" and frame.get("stream_id"):
                    break
        assert (frame["status"], frame["data"]) == ("complete", "Hello!")
        history = await wire.request({"type": "history", "channel": "room:lobby", "direction": "forwards"})
        assert history["messages"][0]["data"] == "hello"
    finally:
        proc.terminate()
        await proc.wait()
        await wire.close()


async def test_the_chat_thread_and_read_examples_run(dev: TestServer) -> None:
    """Edits, reactions, deletes, threads, read marks and the directory, as the page writes them."""
    async with reader_namespace(dev) as ns:
        room = ns["room"]
        for n in range(64):  # the read-mark example marks serial 64 read
            await room.publish(f"message {n}")
        await run_fragment(block(SDK, "await room.edit(serial").text, ns)
        deleted, rev = ns["recorder"].of("print")[-1]
        assert deleted.by == "ana" and rev > 64
        await run_fragment(block(SDK, "thread=root").text, ns)
        assert ns["recorder"].of("print")[-1][0].count == 2
        await run_fragment(block(SDK, "await room.mark_read(64)").text, ns)
        assert (ns["serial"], ns["moved"]) == (64, False)
        assert ns["recorder"].of("print")[-1] == (0, 0)  # ana's own messages are not unread
        await run_fragment(block(SDK, "create=True").text, ns)
        assert ("room:design-review", "Design Review", 0) in ns["recorder"].of("print")


async def test_the_stream_examples_run(dev: TestServer) -> None:
    """The writer example streams the model's tokens as an answer; the reader example sees a
    stream update and its final message."""
    question_token = dev.token("bob")
    wire = await Wire.open(dev.ws_url, question_token)

    async def model_tokens() -> AsyncIterator[str]:
        for token in ("Hel", "lo"):
            yield token

    try:
        await wire.request({"type": "publish", "channel": "room:lobby", "data": "what is up?"})
        async with reader_namespace(dev, model_tokens=model_tokens) as ns:
            recorder = ns["recorder"]
            ns["show"] = recorder("show")
            reading = asyncio.create_task(run_fragment(block(SDK, "room.streams()").text, ns))
            (ns["question"],) = await ns["room"].history(limit=1)
            await run_fragment(block(SDK, "model_tokens()").text, ns)
            await recorder.wait_for(lambda calls: any(args[:1] == ("final:",) for _, args in calls))
            reading.cancel()
            final = next(args for args in recorder.of("print") if args[:1] == ("final:",))
            assert final[1] == "complete" and final[2].text == "Hello"
            written = [args for args in recorder.of("print") if args[:1] != ("final:",)]
            assert written[-1][1] == "complete"
            assert recorder.of("show")[-1][1:] == ("ana", "Hello")
    finally:
        await wire.close()


async def test_the_timeline_example_keeps_messages_current(dev: TestServer) -> None:
    """The Timeline example fills from history and redraws what a live message adds."""
    async with reader_namespace(dev) as ns:
        recorder = ns["recorder"]
        ns["redraw"] = recorder("redraw")
        await ns["room"].publish("before")
        ns["room"] = watched = Watched(ns["room"])
        running = asyncio.create_task(run_fragment(block(SDK, "Timeline(").text, ns))
        bob = await Wire.open(dev.ws_url, dev.token("bob"))
        try:
            await watched.returned("history")  # subscribed, then read: a message now is live
            await bob.request({"type": "publish", "channel": "room:lobby", "data": "live"})
            await recorder.wait_for(
                lambda calls: any(a and a[0].text == "live" for n, a in calls if n == "redraw")
            )
        finally:
            running.cancel()
            await bob.close()


async def test_the_bot_example_answers(dev: TestServer) -> None:
    """The Bot example, run with a stand-in model and token provider, answers a person by streaming."""

    class Model:
        async def tokens(self, text: str) -> AsyncIterator[str]:
            for token in ("you ", "said ", text):
                yield token

    def get_token() -> str:
        return dev.token("scout", kind="agent")

    text = block(SDK, 'Bot("scout"').text.replace(DOC_URL, dev.url)
    ns: dict[str, Any] = {"model": Model(), "get_token": get_token}
    running = asyncio.create_task(run_fragment(text, ns))
    wire = await Wire.open(dev.ws_url, dev.token("bob"))
    try:
        await wire.request({"type": "attach", "channel": "room:lobby"})
        await present(wire, "scout")
        await wire.request({"type": "publish", "channel": "room:lobby", "data": "hello"})
        async with asyncio.timeout(UNIT * 10):
            while True:
                frame = await wire.expect("message")
                if frame["client_id"] == "scout":
                    break
        assert (frame["status"], frame["data"]) == ("complete", "you said hello")
    finally:
        running.cancel()
        await wire.close()


async def test_the_agent_room_bot_example_asks_then_answers(dev: TestServer) -> None:
    """The agent-room Bot example (pooled, with retries and double texting), run with a stand-in
    model and token provider, asks for an approval, then answers by streaming."""

    class Model:
        async def tokens(self, text: str) -> AsyncIterator[str]:
            for token in ("you ", "said ", text):
                yield token

    def get_token() -> str:
        return dev.token("deployer", kind="agent")

    text = block(SDK, "pool=True,").text.replace(DOC_URL, dev.url)
    ns: dict[str, Any] = {"model": Model(), "get_token": get_token}
    running = asyncio.create_task(run_fragment(text, ns))
    wire = await Wire.open(dev.ws_url, dev.token("bob"))
    try:
        await wire.request({"type": "attach", "channel": "team:ops"})
        await present(wire, "deployer")
        await wire.request({"type": "publish", "channel": "team:ops", "data": "v2"})
        async with asyncio.timeout(UNIT * 10):
            request = await wire.expect("message", name="agentchat.input_request")
            assert request["data"]["prompt"] == "Deploy v2?"
            answer = {"type": "answer", "channel": "team:ops", "request_id": request["request_id"]}
            await wire.request({**answer, "outcome": "approve"})
            while True:
                frame = await wire.expect("message")
                if frame["client_id"] == "deployer" and frame.get("reply_to") is not None:
                    break
        assert (frame["status"], frame["data"]) == ("complete", "you said deploy v2")
    finally:
        running.cancel()
        await wire.close()


async def test_the_model_adapter_example_streams(endpoint: FakeEndpoint) -> None:
    """The adapter example, with AGENTCHAT_LLM_BASE_URL pointing at a fake endpoint, prints the
    model's deltas and makes a bot."""
    ns: dict[str, Any] = {}
    recorder = Recorder()
    ns["print"] = recorder("print")
    saved = os.environ.get("AGENTCHAT_LLM_BASE_URL")
    os.environ["AGENTCHAT_LLM_BASE_URL"] = endpoint.url
    try:
        await run_fragment(block(SDK, "ChatModel(LLMSettings.from_env())").text, ns)
    finally:
        if saved is None:
            os.environ.pop("AGENTCHAT_LLM_BASE_URL")
        else:
            os.environ["AGENTCHAT_LLM_BASE_URL"] = saved
    assert "".join(args[0] for args in recorder.of("print")) == "Hello, world!"
    assert ns["bot"].client_id == "gpt"


async def test_the_demo_and_bot_commands_run(dev: TestServer) -> None:
    """`python -m agentchat demo` and `agentchat bot agentchat.examples.echo:bot`, with the
    server's key in AGENTCHAT_KEYS, bring the demo agents and echo into the room."""
    lines = commands(block(SDK, "python -m agentchat demo").text)
    # `python` and `agentchat` are the virtualenv's, as for a reader who activated it.
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "AGENTCHAT_KEYS": dev.settings.keys[0], "PATH": path}
    procs = [
        await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            f"exec {line.replace(DOC_URL, dev.url)}",
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for line in lines
    ]
    wire = await Wire.open(dev.ws_url, dev.token("bob"))
    try:
        await wire.request({"type": "attach", "channel": "room:lobby"})
        await present(wire, "planner", "echo")
    finally:
        for proc in procs:
            proc.terminate()
        await asyncio.gather(*(proc.wait() for proc in procs))
        await wire.close()


async def test_the_agent_room_examples_run(dev: TestServer) -> None:
    """The agent-room examples, run as the agent `planner` in team:alpha: it addresses and claims a
    task and answers it with the token, writes a run a `to_me` reader sees complete with its state,
    and asks ana, whose approval its `wait()` returns."""
    planner = await agentchat.dev_token(dev.url, "planner", "agent")
    person = await agentchat.dev_token(dev.url, "ana", "human")
    async with (
        Client(dev.url, token=planner) as client,
        Client(dev.url, token=person) as ana,
    ):
        recorder = Recorder()
        ns: dict[str, Any] = {
            "client": client,
            "team": client.channel("team:alpha"),
            "print": recorder("print"),
        }
        await run_fragment(block(SDK, "team.claim(task)").text, ns)
        assert recorder.of("print") == [("open", 30), (1, [])]
        reply = (await ns["team"].history(limit=1)).messages[0]
        assert (reply.reply_to, ns["mine"].filter) == (ns["task"], "to_me")
        await run_fragment(block(SDK, 'run.tool_call("call_1"').text, ns)
        run_id, status = recorder.of("print")[-1]
        assert status == "completed"
        await run_fragment(block(SDK, "mine.run_updates").text, ns)
        assert recorder.of("print")[-1] == (run_id, "completed", {"plan": ["searched", "answer"]})
        watch = await ana.channel("team:alpha").subscribe()
        asking = asyncio.create_task(run_fragment(block(SDK, "asked.wait()").text, ns))
        async with asyncio.timeout(UNIT * 10):
            async for message in watch:
                request = agentchat.InputRequest.from_message(message)
                if request is not None:
                    break
        await ana.channel("team:alpha").answer(request.request_id, "approve")
        async with asyncio.timeout(UNIT * 10):
            await asking
        assert ns["answer"].approved and ns["answer"].client_id == "ana"
        assert (await ns["team"].history(limit=1)).messages[0].text == "Deploying v2."
