"""The example agents: the demo pair and its command, the if_serial conversation, bots by spec."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from agentchat import Bot, Client
from agentchat.bot import load_bot, run_bot_from_spec
from agentchat.examples import run_demo, tools
from agentchat.examples.conversation import ANSWERS, QUESTIONS, run_conversation
from agentchat.examples.pool import POOL, run_pool
from agentchat.examples.scripted import ScriptedModel, model_settings, plan_for, tokenize
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, running


def test_tokenize_keeps_the_text() -> None:
    """Scripted tokens join back into the answer, and long words are split like model tokens."""
    text = "Let us think, step by step, about extraordinary things."
    tokens = tokenize(text)
    assert "".join(tokens) == text and max(len(t.strip()) for t in tokens) <= 6


def test_plan_is_built_from_the_question() -> None:
    """The planner's answer quotes the question's topic and its key words, without the mention."""
    plan = plan_for("@planner how do we migrate the billing database?")
    assert 'for "how do we migrate the billing database"' in plan
    assert "migrate, billing and database" in plan and "@planner" not in plan
    assert plan_for("@planner ?").startswith('A short plan for "this"')


async def test_scripted_model_answers_the_same_prompt_the_same_way() -> None:
    """The scripted model is deterministic per prompt and streams the plan for it."""
    model = ScriptedModel(rate=10_000, think=0)
    first = [t async for t in model.tokens("ship the beta")]
    assert first == [t async for t in model.tokens("ship the beta")]
    assert "".join(first) == plan_for("ship the beta") and len(first) > 20


def test_demo_settings_switch_to_a_model_only_when_asked() -> None:
    """The planner uses a model only with AGENTCHAT_LLM_BASE_URL or _API_KEY, not OPENAI_API_KEY alone."""
    assert model_settings({"OPENAI_API_KEY": "sk-x"}) is None
    chosen = model_settings({"AGENTCHAT_LLM_BASE_URL": "http://127.0.0.1:9/v1", "AGENTCHAT_LLM_MODEL": "m"})
    assert chosen is not None and chosen.model == "m"


def _mint_for(server: TestServer) -> Callable[[str, str], str]:
    def mint(client_id: str, kind: str) -> str:
        return server.token(client_id, kind=kind)

    return mint


async def test_demo_runs_echo_and_planner(server: TestServer) -> None:
    """`run_demo` puts both bots in the channel; each answers what is addressed to it."""
    demo = asyncio.create_task(run_demo(server.url, _mint_for(server), channel="room:demo"))
    try:
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:demo")
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(
                    lambda members: {m.client_id for m in members} >= {"echo", "planner"}
                )
            subscription = room.subscribe()
            await subscription.start()
            echoed = await room.publish("@echo ping")
            asked = await room.publish("@planner what now for the launch?")
            got = await messages_until(
                subscription, lambda m: m.client_id == "planner" and m.status is not None
            )
            by_echo = [m for m in got if m.client_id == "echo"]
            assert [(m.reply_to, m.data) for m in by_echo] == [(echoed, "echo: ping")]
            assert got[-1].reply_to == asked and got[-1].status == "complete"
            assert got[-1].data == plan_for("what now for the launch")
    finally:
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo


async def test_demo_ignores_unaddressed_messages(server: TestServer) -> None:
    """25 quick messages that mention no demo agent get no answer; the addressed ones get one each."""
    stop = asyncio.Event()
    demo = asyncio.create_task(run_demo(server.url, _mint_for(server), channel="room:quiet", stop=stop))
    async with Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:quiet")
        async with asyncio.timeout(WAIT):
            await room.presence.wait_for(
                lambda members: {m.client_id for m in members} >= {"echo", "planner"}
            )
        subscription = await room.subscribe().start()
        chatter = [await room.publish(f"hello everyone, note {n} about the plan") for n in range(25)]
        echoed = await room.publish("@echo done?")
        asked = await room.publish("@planner what is left?")
        await messages_until(subscription, lambda m: m.client_id == "planner" and m.status is not None)
        # A graceful stop ends any answer still being written as a durable message: all would show.
        stop.set()
        async with asyncio.timeout(WAIT):
            await demo
        answers = [m async for m in room.messages(after=chatter[0] - 1, direction="forwards")]
    replies = [(m.client_id, m.reply_to) for m in answers if m.client_id in ("echo", "planner")]
    assert replies == [("echo", echoed), ("planner", asked)]


async def test_demo_command_runs_until_sigterm(server: TestServer, tmp_path: Path) -> None:
    """`python -m agentchat demo` mints tokens from AGENTCHAT_KEYS, answers, and exits 0 on SIGTERM."""
    env = {**os.environ, "AGENTCHAT_KEYS": server.settings.keys[0], "AGENTCHAT_LOG_LEVEL": "WARNING"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentchat",
        "demo",
        "--url",
        server.url,
        "--channel",
        "room:cli",
        cwd=tmp_path,
        env=env,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:cli")
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(
                    lambda members: {m.client_id for m in members} >= {"echo", "planner"}
                )
            subscription = await room.subscribe().start()
            asked = await room.publish("@echo are you there")
            got = await messages_until(subscription, lambda m: m.client_id == "echo")
            assert (got[-1].reply_to, got[-1].data) == (asked, "echo: are you there")
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(WAIT):
                _, err = await process.communicate()
                await room.presence.wait_for(lambda members: not members)
        assert process.returncode == 0, err.decode()[-2000:]
        assert b"Traceback" not in err
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_conversation_takes_turns(server: TestServer) -> None:
    """The asker and answerer alternate strictly, each message right after the other's."""

    def mint(client_id: str, kind: str) -> str:
        return server.token(client_id, kind=kind)

    async with asyncio.timeout(WAIT):
        transcript = await run_conversation(server.url, mint, channel="room:talk")
    assert [m.client_id for m in transcript] == ["asker", "answerer"] * len(QUESTIONS)
    assert [m.data for m in transcript] == [
        line for pair in zip(QUESTIONS, ANSWERS, strict=True) for line in pair
    ]
    assert [m.serial for m in transcript] == list(range(1, 2 * len(QUESTIONS) + 1))


def test_a_spec_module_may_live_in_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`load_bot` finds `mymodule:bot` in the current directory even when it is not on sys.path
    (as under the `agentchat` console script); a missing module is a clear ValueError."""
    (tmp_path / "cwd_bot_module.py").write_text(
        "from agentchat import Bot\nbot = Bot('from-cwd')\n", encoding="utf-8"
    )
    here = os.getcwd()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", here, str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "cwd_bot_module", raising=False)
    try:
        assert load_bot("cwd_bot_module:bot").client_id == "from-cwd"
    finally:
        sys.modules.pop("cwd_bot_module", None)
    with pytest.raises(ValueError, match="no_such_module_here"):
        load_bot("no_such_module_here:bot")
    with pytest.raises(ValueError, match="no attribute"):
        load_bot("agentchat.examples.echo:nothing")


async def test_bots_load_and_run_from_a_spec(server: TestServer) -> None:
    """`module:attr` names a Bot or a factory; `run_bot_from_spec` runs it with tokens minted from keys."""
    assert isinstance(load_bot("agentchat.examples.echo:bot"), Bot)
    assert load_bot("agents.examples.scripted:make_bot").client_id == "planner"
    with pytest.raises(TypeError):
        load_bot("agents.examples.scripted:CLIENT_ID")

    # API keys mint tokens locally, the way `agentchat bot --keys` does.
    spec = "agents.examples.echo"
    keys = server.settings.keys
    runner = asyncio.create_task(
        run_bot_from_spec(spec, server.url, keys=keys, channels=["room:spec"], handle_signals=False)
    )
    try:
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:spec")
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda members: any(m.client_id == "echo" for m in members))
            subscription = room.subscribe()
            await subscription.start()
            await room.publish("@echo spec")
            got = await messages_until(subscription, lambda m: m.client_id == "echo")
            assert got[-1].data == "echo: spec"
    finally:
        runner.cancel()
        await asyncio.gather(runner, return_exceptions=True)


async def test_the_tools_example_answers_with_a_run(server: TestServer) -> None:
    """The librarian answers in one run: reasoning, a `lookup` tool call whose streamed arguments
    are JSON, the tool's result, then the text worded from it; the run ends `completed`."""
    async with running(tools.make_bot(), server), Client(server.url, token=server.token("ana")) as human:
        room = human.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        asked = await room.publish("@librarian what are claims and runs?")
        got = await messages_until(
            subscription, lambda m: m.name == "agentchat.run" and (m.data or {}).get("status") == "completed"
        )
    run = [m for m in got if m.client_id == "librarian"]
    start, *parts, end = run
    assert (start.reply_to, start.data["status"], end.run_id) == (asked, "running", start.run_id)
    assert [m.lane for m in parts] == ["reasoning", "tool_call", "tool_result", "text"]
    reasoning, call, result, text = parts
    assert "claims, runs" in reasoning.data
    assert call.tool_call is not None and dict(call.tool_call) == {"id": "call_1", "name": "lookup"}
    assert json.loads(call.data) == {"words": ["claims", "runs"]}
    assert result.data == tools.lookup(["claims", "runs"]) and set(result.data) == {"claims", "runs"}
    assert text.data == tools.answer_from(["claims", "runs"], result.data) and text.status == "complete"


async def test_the_pool_example_answers_each_question_once(server: TestServer) -> None:
    """Two planner instances of the pool example answer six questions: one complete answer each."""
    ready = asyncio.Event()
    pool = asyncio.create_task(run_pool(server.url, _mint_for(server), rate=10_000, ready=ready))
    try:
        async with asyncio.timeout(WAIT):
            await ready.wait()
        async with Client(server.url, token=server.token("ana")) as human:
            room = human.channel("room:lobby")
            async with asyncio.timeout(WAIT):
                await room.presence.wait_for(lambda ms: sum(m.data.get("pool") == POOL for m in ms) == 2)
            subscription = room.subscribe()
            await subscription.start()
            questions = [await room.publish(f"@planner how do we ship part {n}?") for n in range(6)]
            waiting = set(questions)
            async with asyncio.timeout(WAIT):
                async for message in subscription:
                    if message.client_id == "planner" and message.status == "complete":
                        waiting.discard(message.reply_to or 0)
                    if not waiting:
                        break
            answers = [m async for m in room.messages(after=questions[0]) if m.client_id == "planner"]
    finally:
        pool.cancel()
        await asyncio.gather(pool, return_exceptions=True)
    assert sorted(m.reply_to or 0 for m in answers if m.status == "complete") == questions
