"""Agent rooms through the SDK, part one: addressing, the namespace policy, claims and their errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentchat import (
    AgentChatError,
    ClaimEvent,
    ClaimHeld,
    ClaimLost,
    Client,
    LoopBrake,
    NotAddressed,
    RequestError,
    Subscription,
)
from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM
from tests.sdk_helpers import WAIT, cut_connection, next_message


def agent(srv: TestServer, client_id: str) -> Client:
    """An SDK client with an agent token."""
    return Client(srv.url, token=srv.token(client_id, kind="agent"))


def person(srv: TestServer, client_id: str = "ana") -> Client:
    """An SDK client with a human token."""
    return Client(srv.url, token=srv.token(client_id))


async def claim_state(subscription: Subscription, serial: int, state: str) -> ClaimEvent:
    """The first claim change of message `serial` into `state` the subscription sees (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for event in subscription.claims:
            if event.serial == serial and event.state == state:
                return event
    raise AssertionError("the subscription ended")


async def test_addressed_messages_and_the_to_me_filter(server: TestServer) -> None:
    """`to` is stored and read back as a tuple; a `to_me` subscription and history get only the
    messages to the reader, to nobody, or its own."""
    async with person(server) as ana, agent(server, "planner") as planner:
        mine = await planner.channel(ROOM).subscribe(filter="to_me")
        room = ana.channel(ROOM)
        await room.publish("for everyone")
        await room.publish("for coder", to=["coder"])
        await room.publish("for planner", to=["planner"])
        await planner.channel(ROOM).publish("mine, to coder", to=["coder"])
        last = await room.publish("for both", to=["planner", "coder"])
        async with room.stream(to=["coder"]) as aside:
            await aside.append("streamed to coder")
        async with room.stream(to=["planner"]) as answer:
            await answer.append("streamed to planner")
        got = [await next_message(mine) for _ in range(5)]
        assert [m.text for m in got] == [
            "for everyone",
            "for planner",
            "mine, to coder",
            "for both",
            "streamed to planner",
        ]
        assert got[3].to == ("planner", "coder") and got[3].serial == last
        assert got[4].to == ("planner",) and got[4].stream_id == answer.stream_id
        page = await planner.channel(ROOM).history(filter="to_me", direction="forwards")
        assert [m.text for m in page] == [m.text for m in got]
        assert len(await room.history()) == 7
        with pytest.raises(ValueError, match="one filter"):
            planner.channel(ROOM).subscribe()


async def test_a_to_me_reader_resumes_after_a_reconnect_without_false_gaps(server: TestServer) -> None:
    """Serials a filtered reader skips are no gap: messages after a reconnect come once, in order."""
    async with person(server) as ana, agent(server, "planner") as planner:
        mine = await planner.channel(ROOM).subscribe(filter="to_me")
        room = ana.channel(ROOM)
        await room.publish("skip me", to=["coder"])
        await room.publish("one", to=["planner"])
        assert (await next_message(mine)).text == "one"
        cut_connection(planner)
        await room.publish("skip me too", to=["coder"])
        await room.publish("two")
        assert (await next_message(mine)).text == "two"
        assert planner.reconnects == 1


async def test_a_channel_attached_for_presence_takes_a_subscriptions_filter(server: TestServer) -> None:
    """A channel attached for presence only can still be subscribed `to_me`: it attaches again with
    the filter, and from then on only the reader's share arrives."""
    async with person(server) as ana, agent(server, "planner") as planner:
        team = planner.channel(ROOM)
        await team.presence.enter({"status": "idle"})
        mine = await team.subscribe(filter="to_me")
        await ana.channel(ROOM).publish("for coder", to=["coder"])
        await ana.channel(ROOM).publish("for planner", to=["planner"])
        assert (await next_message(mine)).text == "for planner"
        assert [m.client_id for m in team.presence.members] == ["planner"]


async def test_policy_comes_from_the_attach(make_server: Callable[..., Any]) -> None:
    """`channel.policy` holds the namespace's settings once attached (defaults elsewhere)."""
    policy = {"reply_policy": "addressed", "claim_ttl": 7, "double_texting": "interrupt", "loop_budget": None}
    srv: TestServer = await make_server(namespaces={"team": policy})
    async with agent(srv, "planner") as planner:
        team = planner.channel(ROOM)
        await team.attach()
        assert team.policy.reply_policy == "addressed" and team.policy.claim_ttl == 7
        assert team.policy.double_texting == "interrupt" and team.policy.loop_budget is None
        lobby = planner.channel("room:lobby")
        await lobby.attach()
        assert lobby.policy.reply_policy == "open" and lobby.policy.loop_budget == 10


async def test_one_claimant_wins_and_the_others_learn_the_holder(server: TestServer) -> None:
    """Of two agents claiming one message, one gets token 1; the other gets ClaimHeld naming it; the
    room sees the claim held, then done once the holder replies with its token."""
    async with person(server) as ana, agent(server, "w1") as w1, agent(server, "w2") as w2:
        watch = await ana.channel(ROOM).subscribe()
        task = await ana.channel(ROOM).publish("summarise the logs")
        claim = await w1.channel(ROOM).claim(task)
        assert (claim.serial, claim.token) == (task, 1) and claim.expires_at > 0
        with pytest.raises(ClaimHeld) as held:
            await w2.channel(ROOM).claim(task)
        assert held.value.holder == "w1" and held.value.code == Code.CLAIMED
        assert isinstance(held.value, AgentChatError)
        event = await claim_state(watch, task, "held")
        assert (event.client_id, event.token) == ("w1", 1)
        listed = await w2.channel(ROOM).claims()
        assert [(c.serial, c.client_id, c.token) for c in listed] == [(task, "w1", 1)]
        await w1.channel(ROOM).publish("done", reply_to=task, claim=claim.token)
        await claim_state(watch, task, "done")
        assert await w2.channel(ROOM).claims() == []


async def test_a_stale_holders_late_reply_is_refused(make_server: Callable[..., Any]) -> None:
    """A's lease lapses (the claim frees for B, token 2): A's renewal, reply and stream are refused
    with ClaimLost; B's reply with its token is stored and makes the claim done."""
    srv: TestServer = await make_server(**FAST)
    async with person(srv) as ana, agent(srv, "slow") as slow, agent(srv, "fast") as fast:
        watch = await ana.channel(ROOM).subscribe()
        task = await ana.channel(ROOM).publish("deploy the fix")
        stale = await slow.channel(ROOM).claim(task, ttl=1)
        await claim_state(watch, task, "expired")
        fresh = await fast.channel(ROOM).claim(task)
        assert fresh.token == 2
        with pytest.raises(ClaimLost) as lost:
            await slow.channel(ROOM).publish("done!", reply_to=task, claim=stale.token)
        assert lost.value.code == Code.CLAIM_LOST
        with pytest.raises(ClaimLost):
            async with slow.channel(ROOM).stream(reply_to=task, claim=stale.token) as stream:
                await stream.append("late")
        with pytest.raises(ClaimLost):
            await stale.renew()
        assert stale.lost
        await fast.channel(ROOM).publish("deployed", reply_to=task, claim=fresh.token)
        done = await claim_state(watch, task, "done")
        assert (done.client_id, done.token) == ("fast", 2)


async def test_a_lapsed_claim_frees_the_message_for_another_client(make_server: Callable[..., Any]) -> None:
    """A worker that claims and vanishes holds the message only until its lease ends."""
    srv: TestServer = await make_server(**FAST)
    async with person(srv) as ana, agent(srv, "steady") as steady:
        watch = await ana.channel(ROOM).subscribe()
        task = await ana.channel(ROOM).publish("index the repo")
        async with agent(srv, "crashing") as crashing:
            await crashing.channel(ROOM).claim(task, ttl=1)
        with pytest.raises(ClaimHeld):
            await steady.channel(ROOM).claim(task)
        expired = await claim_state(watch, task, "expired")
        assert expired.client_id == "crashing"
        assert (await steady.channel(ROOM).claim(task)).token == 2


async def test_async_with_renews_the_lease_and_releases_it(make_server: Callable[..., Any]) -> None:
    """Inside `async with channel.claim(..., ttl=1)` the lease outlives its ttl (renewed in the
    background); the block's end releases it, and an error in the block releases it too."""
    srv: TestServer = await make_server(**FAST)
    async with person(srv) as ana, agent(srv, "keeper") as keeper, agent(srv, "rival") as rival:
        watch = await ana.channel(ROOM).subscribe()
        task = await ana.channel(ROOM).publish("long job")
        clock = await ana.channel(ROOM).publish("a claim left to lapse")
        async with keeper.channel(ROOM).claim(task, ttl=1) as claim:
            await rival.channel(ROOM).claim(clock, ttl=1)
            await claim_state(watch, clock, "expired")  # a second has passed, unrenewed
            with pytest.raises(ClaimHeld):
                await rival.channel(ROOM).claim(task)
            assert not claim.lost
        released = await claim_state(watch, task, "released")
        assert (released.client_id, released.token) == ("keeper", 1)
        with pytest.raises(RuntimeError):
            async with keeper.channel(ROOM).claim(task) as again:
                assert again.token == 2
                raise RuntimeError("tool crashed")
        assert (await claim_state(watch, task, "released")).token == 2
        assert (await rival.channel(ROOM).claim(task)).token == 3


async def test_reply_policy_and_loop_brake_raise_typed_errors(make_server: Callable[..., Any]) -> None:
    """Under `addressed` an agent's reply (a message or a run) to a message not addressed to it is
    NotAddressed; past the loop budget an agent's turn is LoopBrake carrying the budget."""
    policy = {"reply_policy": "addressed", "loop_budget": 2}
    srv: TestServer = await make_server(namespaces={"team": policy})
    async with person(srv) as ana, agent(srv, "ping") as ping, agent(srv, "pong") as pong:
        question = await ana.channel(ROOM).publish("coder, look", to=["coder"])
        with pytest.raises(NotAddressed) as refused:
            await ping.channel(ROOM).publish("me?", reply_to=question)
        assert refused.value.code == Code.REPLY_NOT_ALLOWED
        with pytest.raises(NotAddressed):
            async with ping.channel(ROOM).run(reply_to=question):
                raise AssertionError("a refused run does not start")
        await ping.channel(ROOM).publish("ping")
        await pong.channel(ROOM).publish("pong")
        with pytest.raises(LoopBrake) as braked:
            await ping.channel(ROOM).publish("ping again")
        assert braked.value.budget == 2 and braked.value.code == Code.LOOP_BRAKE


async def test_bad_room_input_gets_a_clear_error_and_breaks_nothing(server: TestServer) -> None:
    """Bad addressees, claims and filters are refused with a clear error; the channel goes on."""
    async with agent(server, "planner") as planner:
        team = planner.channel(ROOM)
        for bad in ([], ["a", "a"], ["bad id!"]):
            with pytest.raises(RequestError) as refused:
                await team.publish("hi", to=bad)
            assert refused.value.code == Code.INVALID_FRAME
        with pytest.raises(RequestError) as missing:
            await team.claim(999)
        assert missing.value.code == Code.NOT_FOUND
        with pytest.raises(ValueError, match="to_me"):
            team.subscribe(filter="nobody")  # type: ignore[arg-type]
        async with team.run() as run:
            with pytest.raises(ValueError, match="snapshot or delta"):
                await run.state()
        assert run.status == "completed"
        assert await team.publish("still fine", to=["ana"]) > 0
