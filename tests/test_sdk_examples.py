"""The example agents: the demo pair (echo + planner), the if_serial conversation, loading by spec."""

from __future__ import annotations

import asyncio

import pytest

from agentchat import Bot, Client
from agentchat.bot import load_bot, run_bot_from_spec
from agentchat.examples import run_demo
from agentchat.examples.conversation import ANSWERS, QUESTIONS, run_conversation
from agentchat.examples.scripted import ScriptedModel, tokenize
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until


def test_tokenize_keeps_the_text() -> None:
    """Scripted tokens join back into the answer, and long words are split like model tokens."""
    text = "Let us think, step by step, about extraordinary things."
    tokens = tokenize(text)
    assert "".join(tokens) == text and max(len(t.strip()) for t in tokens) <= 6


async def test_scripted_model_answers_the_same_prompt_the_same_way() -> None:
    """The scripted model is deterministic per prompt."""
    model = ScriptedModel(rate=10_000, think=0)
    first = [t async for t in model.tokens("hello")]
    assert first == [t async for t in model.tokens("hello")] and len(first) > 50


async def test_demo_runs_echo_and_planner(server: TestServer) -> None:
    """`run_demo` puts both bots in the channel; each answers what is addressed to it."""

    def mint(client_id: str, kind: str) -> str:
        return server.token(client_id, kind=kind)

    demo = asyncio.create_task(run_demo(server.url, mint, channel="room:demo"))
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
            asked = await room.publish("@planner what now?")
            got = await messages_until(
                subscription, lambda m: m.client_id == "planner" and m.status is not None
            )
            by_echo = [m for m in got if m.client_id == "echo"]
            assert [(m.reply_to, m.data) for m in by_echo] == [(echoed, "echo: ping")]
            assert got[-1].reply_to == asked and got[-1].status == "complete" and len(got[-1].data) > 200
    finally:
        demo.cancel()
        with pytest.raises(asyncio.CancelledError):
            await demo


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
