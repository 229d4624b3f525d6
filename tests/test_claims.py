"""Claims over real sockets: exactly one claimant wins, fencing tokens refuse a stale holder, a lapsed
lease frees the claim for others, the room sees every change, and it all holds across two nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM, member, ok, refused, said, seen
from tests.wire import UNIT, Wire


async def test_exactly_one_of_many_claimants_wins(make_server: Callable[..., Any]) -> None:
    """Twelve agents claim one task at once: one ack with token 1, eleven 40905 naming the holder."""
    srv: TestServer = await make_server()
    human = await member(srv, "ana", kind="human")
    task = await said(human, "summarise the logs")
    workers = [await member(srv, f"worker-{i}") for i in range(12)]
    claim = {"type": "claim", "channel": ROOM, "serial": task}
    replies = await asyncio.gather(*(w.request(dict(claim)) for w in workers))
    won = [r for r in replies if r["type"] == "ack"]
    assert len(won) == 1 and won[0]["token"] == 1 and won[0]["serial"] == task
    winner = workers[replies.index(won[0])].connected["client_id"]
    lost = [r for r in replies if r["type"] == "nack"]
    assert len(lost) == 11 and {(r["code"], r["holder"]) for r in lost} == {(Code.CLAIMED, winner)}
    event = await human.expect("claim")
    assert (event["serial"], event["client_id"], event["token"], event["state"]) == (task, winner, 1, "held")


async def test_a_stale_holder_cannot_write_after_losing_the_lease(make_server: Callable[..., Any]) -> None:
    """A's lease lapses and B claims (token 2): A's late reply and stream are refused (40906),
    B's reply is stored and makes the claim done; the room sees expired, held, done."""
    srv: TestServer = await make_server(**FAST)
    human = await member(srv, "ana", kind="human")
    task = await said(human, "deploy the fix")
    slow, fast = await member(srv, "slow"), await member(srv, "fast")
    first = await ok(slow, {"type": "claim", "channel": ROOM, "serial": task, "ttl": 1})
    assert first["token"] == 1
    await human.expect("claim", timeout=UNIT * 2, state="expired")
    second = await ok(fast, {"type": "claim", "channel": ROOM, "serial": task})
    assert second["token"] == 2
    late = {"type": "publish", "channel": ROOM, "data": "done!", "reply_to": task, "claim": 1}
    await refused(slow, late, Code.CLAIM_LOST)
    stream = {"type": "stream_open", "channel": ROOM, "reply_to": task, "claim": 1}
    await refused(slow, stream, Code.CLAIM_LOST)
    await said(fast, "deployed", reply_to=task, claim=2)
    done, answer = await seen(
        human, {"type": "claim", "state": "done"}, {"type": "message", "data": "deployed"}
    )
    assert (done["client_id"], done["token"], answer["reply_to"]) == ("fast", 2, task)
    await refused(slow, {"type": "claim", "channel": ROOM, "serial": task}, Code.CLAIMED)


async def test_a_crashed_workers_lease_lapses_and_another_takes_the_task(
    make_server: Callable[..., Any],
) -> None:
    """A worker claims and its connection dies: when the lease ends the claim is free for the next."""
    srv: TestServer = await make_server(**FAST)
    human = await member(srv, "ana", kind="human")
    task = await said(human, "index the repo")
    crashing = await member(srv, "crashing")
    await ok(crashing, {"type": "claim", "channel": ROOM, "serial": task, "ttl": 1})
    crashing.cut()
    other = await member(srv, "steady")
    await refused(other, {"type": "claim", "channel": ROOM, "serial": task}, Code.CLAIMED)
    expired = await human.expect("claim", timeout=UNIT * 2, state="expired")
    assert expired["client_id"] == "crashing"
    taken = await ok(other, {"type": "claim", "channel": ROOM, "serial": task})
    assert taken["token"] == 2
    await crashing.close()


async def test_renew_release_and_list_claims(connect: Callable[..., Any]) -> None:
    """Renewing keeps the token and moves the lease on; the list shows held claims; a release frees
    the claim (the room sees it) and the next claimant gets a higher token."""
    human = await connect("ana")
    await human.request({"type": "attach", "channel": ROOM, "presence": False})
    task = await said(human, "triage")
    a, b = await connect("a", kind="agent"), await connect("b", kind="agent")
    first = await ok(a, {"type": "claim", "channel": ROOM, "serial": task, "ttl": 5})
    renewed = await ok(a, {"type": "claim", "channel": ROOM, "serial": task, "token": 1, "ttl": 60})
    assert renewed["token"] == 1 and renewed["expires_at"] > first["expires_at"]
    await refused(a, {"type": "claim", "channel": ROOM, "serial": task, "token": 9}, Code.CLAIM_LOST)
    listed = await ok(b, {"type": "claims", "channel": ROOM})
    assert [(c["serial"], c["client_id"], c["token"]) for c in listed["claims"]] == [(task, "a", 1)]
    assert listed["has_more"] is False
    await refused(b, {"type": "claim_release", "channel": ROOM, "serial": task, "token": 1}, Code.CLAIM_LOST)
    await ok(a, {"type": "claim_release", "channel": ROOM, "serial": task, "token": 1})
    released = await human.expect("claim", state="released")
    assert released["client_id"] == "a"
    assert (await ok(b, {"type": "claims", "channel": ROOM}))["claims"] == []
    assert (await ok(b, {"type": "claim", "channel": ROOM, "serial": task}))["token"] == 2


async def test_replies_to_a_claimed_message_need_the_holders_token(connect: Callable[..., Any]) -> None:
    """While claimed, another agent's reply is 40905 and the holder's without token 40906; a human
    may still reply; replying to an unclaimed message needs no claim."""
    human = await connect("ana")
    task = await said(human, "who takes this?")
    free = await said(human, "anyone?")
    holder, other = await connect("holder", kind="agent"), await connect("other", kind="agent")
    await ok(holder, {"type": "claim", "channel": ROOM, "serial": task})
    reply = {"type": "publish", "channel": ROOM, "data": "mine", "reply_to": task}
    await refused(other, reply, Code.CLAIMED)
    await refused(holder, reply, Code.CLAIM_LOST)
    await said(human, "thanks", reply_to=task)
    await said(other, "sure", reply_to=free)


async def test_addressed_rooms_take_agent_replies_to_their_own_or_claimed_messages(
    make_server: Callable[..., Any],
) -> None:
    """Under reply_policy "addressed", an agent answers a message to it or one it claimed; a reply
    to a message for nobody, or for someone else, is 40302; people reply freely."""
    srv: TestServer = await make_server(namespaces={"team": {"reply_policy": "addressed"}})
    human = await member(srv, "ana", kind="human")
    attached = await human.request({"type": "attach", "channel": ROOM, "presence": False})
    assert attached["policy"]["reply_policy"] == "addressed"
    for_planner = await said(human, "plan it", to=["planner"])
    for_nobody = await said(human, "anyone?")
    planner, coder = await member(srv, "planner"), await member(srv, "coder")
    await said(planner, "on it", reply_to=for_planner)
    await refused(
        coder, {"type": "publish", "channel": ROOM, "data": "me too", "reply_to": for_planner}, 40302
    )
    await refused(coder, {"type": "publish", "channel": ROOM, "data": "me", "reply_to": for_nobody}, 40302)
    token = (await ok(coder, {"type": "claim", "channel": ROOM, "serial": for_nobody}))["token"]
    await said(coder, "claimed and answered", reply_to=for_nobody, claim=token)
    await refused(coder, {"type": "stream_open", "channel": ROOM, "reply_to": for_planner}, 40302)
    await said(human, "fine", reply_to=for_nobody)
    await said(coder, "a note to the room")  # not a reply: the loop brake governs it, not the policy


async def test_claims_hold_across_two_nodes(
    make_server: Callable[..., Any], pg_url: str, redis_url: str
) -> None:
    """Two nodes share PostgreSQL and Redis: claimants on both race, one wins, the loser's reply is
    refused on its own node, and an observer on either node sees the claim."""
    shared = {"db": pg_url, "bus": f"{redis_url}?prefix=claims{id(pg_url)}"}
    one: TestServer = await make_server(**shared, **FAST)
    two: TestServer = await make_server(**shared, keys=one.settings.keys, **FAST)
    human = await member(one, "ana", kind="human")
    watcher = await member(two, "watcher", kind="human")
    task = await said(human, "one of you, please")
    agents: list[Wire] = []
    for i in range(8):
        agents.append(await member(one if i % 2 else two, f"agent-{i}"))
    claim = {"type": "claim", "channel": ROOM, "serial": task}
    replies = await asyncio.gather(*(a.request(dict(claim)) for a in agents))
    winners = [i for i, r in enumerate(replies) if r["type"] == "ack"]
    assert len(winners) == 1
    seen = await watcher.expect("claim", timeout=UNIT * 2, state="held")
    assert seen["client_id"] == f"agent-{winners[0]}"
    loser = agents[(winners[0] + 1) % len(agents)]
    late = {"type": "publish", "channel": ROOM, "data": "x", "reply_to": task, "claim": 1}
    await refused(loser, late, Code.CLAIM_LOST)
    await said(agents[winners[0]], "done", reply_to=task, claim=1)
