"""Approvals and questions over real sockets: an answer given while the asker is away reaches it on
reconnect, the run shows input_required until then (even across a server restart), deadlines expire
requests, answers are checked, the first one wins, and REST lists and answers them too."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM, member, ok, record, refused, said, seen
from tests.wire import UNIT


async def test_an_answer_given_while_the_asker_is_away_reaches_it_on_reconnect(
    make_server: Callable[..., Any],
) -> None:
    """The agent asks inside its run and crashes; the run parks (input_required, no writer); a person
    approves; the agent comes back, replays the answer addressed to it, lists it, resumes the run."""
    srv: TestServer = await make_server(stream_grace=0.1, **FAST)
    human = await member(srv, "ana", kind="human")
    agent = await member(srv, "planner")
    question = await said(human, "ship v2?", to=["planner"])
    run_id = (await ok(agent, {"type": "run_start", "channel": ROOM, "reply_to": question}))["run_id"]
    ask = {"type": "ask", "channel": ROOM, "prompt": "Deploy v2 to production?", "run_id": run_id}
    asked = await ok(agent, {**ask, "data": {"tool": "deploy", "args": {"env": "prod"}}, "to": ["ana"]})
    request_id = asked["request_id"]
    waiting, shown = await seen(
        human,
        {"type": "run_status", "run_id": run_id, "status": "input_required"},
        {"type": "message", "name": "agentchat.input_request", "request_id": request_id},
    )
    assert waiting["pending"] == 1
    assert shown["data"]["prompt"] == "Deploy v2 to production?" and shown["data"]["shape"] == {
        "kind": "approval"
    }
    agent.cut()
    parked = await human.expect("run_status", timeout=UNIT * 2, run_id=run_id, writer=None)
    assert parked["status"] == "input_required"
    await ok(human, {"type": "answer", "channel": ROOM, "request_id": request_id, "outcome": "approve"})
    after = await human.expect("run_status", run_id=run_id, pending=0)
    assert after["status"] == "input_required"  # answered, but its agent has not taken it back yet
    back = await member(srv, "planner", position=asked["serial"])
    answer = await record(back, "agentchat.input_answer", request_id=request_id)
    assert (answer["data"], answer["client_id"], answer["to"], answer["reply_to"]) == (
        {"outcome": "approve"},
        "ana",
        ["planner"],
        asked["serial"],
    )
    listed = await ok(back, {"type": "requests", "channel": ROOM, "mine": True, "status": "any"})
    [mine] = listed["requests"]
    assert (mine["request_id"], mine["status"], mine["answer"]["outcome"]) == (
        request_id,
        "answered",
        "approve",
    )
    resumed = await ok(back, {"type": "run_resume", "run_id": run_id})
    assert (resumed["status"], resumed["pending"]) == ("running", 0)
    await ok(back, {"type": "run_end", "run_id": run_id, "status": "completed"})
    await agent.close()


async def test_a_connected_asker_gets_the_answer_live(connect: Callable[..., Any]) -> None:
    """A connected asker, even one reading only messages to it, gets the answer as it is given."""
    agent = await connect("planner", kind="agent")
    await agent.request({"type": "attach", "channel": ROOM, "presence": False, "filter": "to_me"})
    human = await connect("ana")
    shape = {"kind": "choice", "options": ["staging", "prod"]}
    asked = await ok(agent, {"type": "ask", "channel": ROOM, "prompt": "Where?", "shape": shape})
    await ok(
        human,
        {
            "type": "answer",
            "channel": ROOM,
            "request_id": asked["request_id"],
            "outcome": "data",
            "data": "staging",
        },
    )
    answer = await record(agent, "agentchat.input_answer")
    assert answer["data"] == {"outcome": "data", "data": "staging"}


async def test_a_deadline_expires_the_request(make_server: Callable[..., Any]) -> None:
    """Past its deadline a request closes with an `expired` answer from the server to the asker,
    its run goes back to running, and a late answer is 40907."""
    srv: TestServer = await make_server(**FAST)
    agent = await member(srv, "planner")
    human = await member(srv, "ana", kind="human")
    run_id = (await ok(agent, {"type": "run_start", "channel": ROOM}))["run_id"]
    asked = await ok(
        agent, {"type": "ask", "channel": ROOM, "prompt": "ok?", "deadline": 1, "run_id": run_id}
    )
    expired = await record(agent, "agentchat.input_answer", timeout=UNIT * 2, request_id=asked["request_id"])
    assert (expired["data"], expired["client_id"], expired["kind"]) == (
        {"outcome": "expired"},
        "agentchat",
        "system",
    )
    back = await human.expect("run_status", run_id=run_id, version=3)
    assert (back["status"], back["pending"]) == ("running", 0)
    late = {"type": "answer", "channel": ROOM, "request_id": asked["request_id"], "outcome": "approve"}
    nack = await refused(human, late, Code.REQUEST_CLOSED)
    assert nack["status"] == "expired"


async def test_answers_are_checked_and_the_first_one_wins(connect: Callable[..., Any]) -> None:
    """Wrong shape 40004, not an addressee or no `answer` right 40300, unknown request 40403; of two
    answers given at once exactly one is taken, the other is 40907 with the answer given."""
    agent = await connect("planner", kind="agent")
    ana, bob = await connect("ana"), await connect("bob")
    viewer = await connect("viewer", capabilities={"*": ["subscribe", "publish", "history"]})
    only_ana = await ok(agent, {"type": "ask", "channel": ROOM, "prompt": "ana?", "to": ["ana"]})
    answer = {"type": "answer", "channel": ROOM, "request_id": only_ana["request_id"]}
    await refused(bob, {**answer, "outcome": "approve"}, Code.FORBIDDEN)
    await refused(ana, {**answer, "outcome": "data", "data": 1}, Code.INVALID_VALUE)
    await refused(ana, {**answer, "request_id": "q_missing", "outcome": "approve"}, Code.REQUEST_NOT_FOUND)
    await refused(ana, {**answer, "channel": "team:other", "outcome": "approve"}, Code.REQUEST_NOT_FOUND)
    open_to_all = await ok(
        agent, {"type": "ask", "channel": ROOM, "prompt": "anyone?", "shape": {"kind": "text"}}
    )
    race = {"type": "answer", "channel": ROOM, "request_id": open_to_all["request_id"], "outcome": "data"}
    await refused(viewer, {**race, "data": "me"}, Code.FORBIDDEN)
    replies = await asyncio.gather(
        ana.request({**race, "data": "ana's"}), bob.request({**race, "data": "bob's"})
    )
    assert sorted(r["type"] for r in replies) == ["ack", "nack"]
    winner = ["ana", "bob"][[r["type"] for r in replies].index("ack")]
    [lost] = [r for r in replies if r["type"] == "nack"]
    assert lost["code"] == Code.REQUEST_CLOSED and lost["status"] == "answered"
    assert (lost["answer"]["client_id"], lost["answer"]["data"]) == (winner, f"{winner}'s")


async def test_input_requests_over_rest(server: TestServer, connect: Callable[..., Any]) -> None:
    """`GET …/requests` lists pending requests; `POST …/requests/{id}/answer` answers (201), again
    is 409; bad bodies and parameters are 400."""
    agent = await connect("planner", kind="agent")
    asked = await ok(agent, {"type": "ask", "channel": ROOM, "prompt": "merge PR 12?"})
    headers = {"Authorization": f"Bearer {server.token('ana')}"}
    base = f"{server.url}/v1/channels/{ROOM}/requests"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(base) as resp:
            body = await resp.json()
            assert resp.status == 200 and [r["request_id"] for r in body["requests"]] == [asked["request_id"]]
        answer_url = f"{base}/{asked['request_id']}/answer"
        async with http.post(answer_url, json={"outcome": "maybe"}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["code"] == Code.INVALID_FRAME
        async with http.post(answer_url, json={"outcome": "approve"}) as resp:
            assert resp.status == 201 and (await resp.json())["serial"] == asked["serial"] + 1
        async with http.post(answer_url, json={"outcome": "deny"}) as resp:
            assert resp.status == 409 and (await resp.json())["error"]["code"] == Code.REQUEST_CLOSED
        async with http.get(base, params={"status": "closed", "mine": "false"}) as resp:
            [closed] = (await resp.json())["requests"]
            assert closed["answer"]["outcome"] == "approve"
        async with http.get(base, params={"status": "everything"}) as resp:
            assert resp.status == 400
        async with http.post(f"{base}/{'q' * 65}/answer", json={"outcome": "approve"}) as resp:
            assert resp.status == 400


async def test_a_waiting_run_survives_a_server_restart(tmp_path: Path) -> None:
    """A run waiting for approval is parked when the server stops; after the restart a new reader
    sees it input_required, a person answers, and its agent resumes and finishes it."""
    async with TestServer(tmp_path) as srv:
        agent = await member(srv, "planner")
        run_id = (await ok(agent, {"type": "run_start", "channel": ROOM}))["run_id"]
        asked = await ok(agent, {"type": "ask", "channel": ROOM, "prompt": "proceed?", "run_id": run_id})
        await agent.close(code=1001)
    async with TestServer(tmp_path) as srv:
        human = await member(srv, "ana", kind="human")
        snapshot = await human.expect("run_snapshot")
        assert (snapshot["run_id"], snapshot["status"], snapshot["writer"]) == (
            run_id,
            "input_required",
            None,
        )
        await ok(
            human,
            {"type": "answer", "channel": ROOM, "request_id": asked["request_id"], "outcome": "approve"},
        )
        agent = await member(srv, "planner")
        assert (await ok(agent, {"type": "run_resume", "run_id": run_id}))["status"] == "running"
        await ok(agent, {"type": "run_end", "run_id": run_id, "status": "completed"})
        # start, ask, parked at shutdown, answered, resumed, ended: six versions
        assert (await human.expect("run_status", run_id=run_id, status="completed"))["version"] == 6
        await asyncio.gather(human.close(), agent.close())
