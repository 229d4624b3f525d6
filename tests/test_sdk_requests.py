"""Agent rooms through the SDK, part three: input requests (approvals, questions) asked, answered,
and waited for live, after a reconnect, or by a new client after the asker went away."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentchat import Client, InputRequest, RequestClosed, RequestError, RunUpdate, Subscription
from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import FAST, ROOM
from tests.sdk_helpers import WAIT, cut_connection


def agent(srv: TestServer, client_id: str) -> Client:
    """An SDK client with an agent token."""
    return Client(srv.url, token=srv.token(client_id, kind="agent"))


def person(srv: TestServer, client_id: str = "ana") -> Client:
    """An SDK client with a human token."""
    return Client(srv.url, token=srv.token(client_id))


async def shown_request(subscription: Subscription) -> InputRequest:
    """The next input request recorded in the channel (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for message in subscription:
            request = InputRequest.from_message(message)
            if request is not None:
                return request
    raise AssertionError("the subscription ended")


async def run_until(subscription: Subscription, run_id: str, done: Callable[[RunUpdate], bool]) -> RunUpdate:
    """The first update of run `run_id` for which `done` holds (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for update in subscription.run_updates:
            if update.run_id == run_id and done(update):
                return update
    raise AssertionError("the subscription ended")


async def test_an_approval_reaches_the_connected_asker_live(server: TestServer) -> None:
    """A person sees the request (prompt, shape, context, addressees) and approves it; the asker's
    `wait()` returns the answer; a second answer is RequestClosed carrying the first."""
    async with person(server) as ana, person(server, "bo") as bo, agent(server, "planner") as planner:
        room = await ana.channel(ROOM).subscribe()
        asked = await planner.channel(ROOM).ask(
            "Deploy v2 to production?", data={"tool": "deploy"}, to=["ana"], deadline=600
        )
        shown = await shown_request(room)
        assert (shown.request_id, shown.prompt, shown.shape, shown.data, shown.to, shown.client_id) == (
            asked.request_id,
            "Deploy v2 to production?",
            {"kind": "approval"},
            {"tool": "deploy"},
            ("ana",),
            "planner",
        )
        assert asked.request.deadline > 0 and not asked.done
        with pytest.raises(RequestError) as not_yours:
            await bo.channel(ROOM).answer(asked.request_id, "approve")
        assert not_yours.value.code == Code.FORBIDDEN
        await ana.channel(ROOM).answer(asked.request_id, "approve", data="go ahead")
        async with asyncio.timeout(WAIT):
            answer = await asked.wait()
        assert answer.approved and (answer.data, answer.client_id) == ("go ahead", "ana")
        with pytest.raises(RequestClosed) as closed:
            await ana.channel(ROOM).answer(asked.request_id, "deny")
        assert closed.value.answer is not None and closed.value.answer["outcome"] == "approve"


async def test_questions_take_answers_of_their_shape_and_expire(make_server: Callable[..., Any]) -> None:
    """A choice is answered with one of its options (another is refused); an unanswered request's
    `wait()` returns `expired` once its deadline passes."""
    srv: TestServer = await make_server(**FAST)
    async with person(srv) as ana, agent(srv, "planner") as planner:
        team = planner.channel(ROOM)
        choice = await team.ask("Which region?", shape={"kind": "choice", "options": ["eu", "us"]})
        with pytest.raises(RequestError) as wrong:
            await ana.channel(ROOM).answer(choice.request_id, "data", data="mars")
        assert wrong.value.code == Code.INVALID_VALUE
        await ana.channel(ROOM).answer(choice.request_id, "data", data="eu")
        async with asyncio.timeout(WAIT):
            assert (await choice.wait()).data == "eu"
        ignored = await team.ask("Anyone there?", shape={"kind": "text"}, deadline=1)
        async with asyncio.timeout(WAIT):
            expired = await ignored.wait()
        assert (expired.outcome, expired.client_id) == ("expired", "agentchat")
        pending = await team.requests(mine=True)
        assert pending == []
        closed = await team.requests(status="closed", mine=True)
        assert [(r.request_id, r.status) for r in closed] == [
            (choice.request_id, "answered"),
            (ignored.request_id, "expired"),
        ]


async def test_the_asker_gets_an_answer_given_while_its_link_was_down(server: TestServer) -> None:
    """An answer given while the asker's connection is cut reaches its `wait()` after the reconnect."""
    async with person(server) as ana, agent(server, "planner") as planner:
        asked = await planner.channel(ROOM).ask("Proceed?")
        cut_connection(planner)
        await ana.channel(ROOM).answer(asked.request_id, "deny", data="not today")
        async with asyncio.timeout(WAIT):
            answer = await asked.wait()
        assert (answer.outcome, answer.data) == ("deny", "not today")


async def test_an_approval_given_after_the_asker_left_reaches_its_next_client(
    make_server: Callable[..., Any],
) -> None:
    """An agent asks inside its run and goes away (the run parks, input_required); a person approves;
    a new client with the same client id finds the answer (`pending_answer`, `requests(mine=True)`),
    resumes the run and completes it."""
    srv: TestServer = await make_server(stream_grace=0.1, **FAST)
    async with person(srv) as ana:
        watch = await ana.channel(ROOM).subscribe()
        question = await ana.channel(ROOM).publish("ship v2?", to=["planner"])
        async with agent(srv, "planner") as planner:
            run = await planner.channel(ROOM).run(reply_to=question).start()
            asked = await planner.channel(ROOM).ask("Deploy v2?", run=run, to=["ana"])
            waiting = await run_until(watch, run.id, lambda u: u.status == "input_required")
            assert waiting.pending == 1
        parked = await run_until(watch, run.id, lambda u: u.writer is None)
        assert parked.status == "input_required"
        await ana.channel(ROOM).answer(asked.request_id, "approve")
        async with agent(srv, "planner") as restarted:
            team = restarted.channel(ROOM)
            [mine] = await team.requests(status="closed", mine=True)
            assert (mine.request_id, mine.run_id, mine.answer and mine.answer.outcome) == (
                asked.request_id,
                run.id,
                "approve",
            )
            found = await team.pending_answer(asked.request_id)
            async with asyncio.timeout(WAIT):
                answer = await found.wait()
            assert (answer.outcome, answer.client_id) == ("approve", "ana")
            resumed = await team.resume_run(run.id)
            assert (resumed.status, resumed.pending) == ("running", 0)
            async with resumed:
                await resumed.publish_text("Deployed v2.")
            done = await run_until(watch, run.id, lambda u: u.done)
            assert done.status == "completed"
            with pytest.raises(RequestError) as missing:
                await team.pending_answer("q_nope")
            assert missing.value.code == Code.REQUEST_NOT_FOUND
