"""Agent rooms through the SDK, part two: runs written (lanes, tool calls, state, endings) and read
(typed RunUpdates, the snapshot a reader joining mid-run gets), and how streams and runs end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from agentchat import Client, RunUpdate, StreamFeed, StreamUpdate, Subscription
from agentchat_server.testing import TestServer
from tests.room_helpers import ROOM
from tests.sdk_helpers import WAIT, cut_connection


def agent(srv: TestServer, client_id: str) -> Client:
    """An SDK client with an agent token."""
    return Client(srv.url, token=srv.token(client_id, kind="agent"))


def person(srv: TestServer, client_id: str = "ana") -> Client:
    """An SDK client with a human token."""
    return Client(srv.url, token=srv.token(client_id))


async def run_until(subscription: Subscription, run_id: str, done: Callable[[RunUpdate], bool]) -> RunUpdate:
    """The first update of run `run_id` for which `done` holds (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for update in subscription.run_updates:
            if update.run_id == run_id and done(update):
                return update
    raise AssertionError("the subscription ended")


async def stream_until(feed: StreamFeed, done: Callable[[StreamUpdate], bool]) -> StreamUpdate:
    """The first stream update for which `done` holds (within WAIT)."""
    async with asyncio.timeout(WAIT):
        async for update in feed:
            if done(update):
                return update
    raise AssertionError("the feed ended")


async def test_a_reader_joining_mid_run_gets_its_snapshot(server: TestServer) -> None:
    """A run with reasoning, a tool call, its result, state and text: a client that attaches while
    its text is being written sees the run (status, requester, state with deltas applied), the open
    text lane, the finished lanes in history, then the run completed with its result."""
    async with person(server) as ana, agent(server, "planner") as planner:
        question = await ana.channel(ROOM).publish("find the flaky test", to=["planner"])
        team = planner.channel(ROOM)
        async with team.run(reply_to=question, to=["ana"]) as run:
            async with run.reasoning() as thinking:
                await thinking.append("search the CI logs first")
            async with run.tool_call("call_1", "search") as call:
                await call.append('{"query": ')
                await call.append('"flaky"}')
            await run.tool_result("call_1", {"hits": 3})
            await run.state(snapshot={"plan": ["search"]})
            await run.state(delta=[{"op": "add", "path": "/plan/-", "value": "write"}])
            async with run.text() as lane:
                await lane.append("It is test_")
                async with person(server, "bo") as bo:
                    late = bo.channel(ROOM)
                    streams = late.streams()
                    joined = await late.subscribe()
                    seen = await run_until(joined, run.id, lambda u: u.state is not None)
                    assert (seen.status, seen.client_id, seen.requester, seen.reply_to) == (
                        "running",
                        "planner",
                        "ana",
                        question,
                    )
                    assert seen.state == {"plan": ["search", "write"]} and joined.runs[run.id] == seen
                    text = await stream_until(streams, lambda u: u.lane == "text" and u.text == "It is test_")
                    assert text.run_id == run.id and text.status == "open"
                    page = await late.history(direction="forwards", after=question)
                    lanes = [(m.lane, m.run_id, m.tool_call) for m in page if m.lane is not None]
                    assert lanes == [
                        ("reasoning", run.id, None),
                        ("tool_call", run.id, {"id": "call_1", "name": "search"}),
                        ("tool_result", run.id, {"id": "call_1"}),
                    ]
                    assert [m.data for m in page if m.lane == "tool_call"] == ['{"query": "flaky"}']
                    await run.state(delta=[{"op": "replace", "path": "/plan/0", "value": "searched"}])
                    state = await run_until(joined, run.id, lambda u: u.state["plan"][0] == "searched")
                    assert state.state == {"plan": ["searched", "write"]}
                    await lane.append("retry_upload")
                    await run.end("completed", result={"test": "test_retry_upload"})
                    done = await run_until(joined, run.id, lambda u: u.done)
                    assert (done.status, done.result) == ("completed", {"test": "test_retry_upload"})
                    assert done.version > seen.version
                    final = await stream_until(streams, lambda u: u.lane == "text" and u.done)
                    assert (final.status, final.text) == ("complete", "It is test_retry_upload")
        assert run.status == "completed"


async def test_an_exception_in_a_run_ends_it_failed_not_cancelled(server: TestServer) -> None:
    """An exception in the run's block ends its open lane and the run `failed` with the exception's
    message (never `cancelled`), and propagates."""
    async with person(server) as ana, agent(server, "planner") as planner:
        watch = await ana.channel(ROOM).subscribe()
        streams = ana.channel(ROOM).streams()
        with pytest.raises(RuntimeError, match="model unavailable"):
            async with planner.channel(ROOM).run() as run:
                async with run.text() as lane:
                    await lane.append("Thinking about")
                    raise RuntimeError("model unavailable")
        failed = await run_until(watch, run.id, lambda u: u.done)
        assert failed.status == "failed" and failed.cancelled_by is None
        assert failed.error == {"message": "model unavailable", "code": "RuntimeError"}
        lane_end = await stream_until(streams, lambda u: u.done)
        assert (lane_end.status, lane_end.text) == ("failed", "Thinking about")
        assert lane_end.error is not None and lane_end.error["message"] == "model unavailable"
        assert run.status == "failed"


async def test_cancelling_the_writers_task_ends_the_run_cancelled(server: TestServer) -> None:
    """When the task writing a run is cancelled, the run ends `cancelled` with nobody's name."""
    async with person(server) as ana, agent(server, "planner") as planner:
        watch = await ana.channel(ROOM).subscribe()
        started = asyncio.Event()
        holder: list[str] = []

        async def work() -> None:
            async with planner.channel(ROOM).run() as run:
                holder.append(run.id)
                started.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(work())
        async with asyncio.timeout(WAIT):
            await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        ended = await run_until(watch, holder[0], lambda u: u.done)
        assert (ended.status, ended.cancelled_by, ended.error) == ("cancelled", None, None)


async def test_a_member_cancels_a_run_and_its_writer_stops_cleanly(server: TestServer) -> None:
    """A person's `cancel_run` stops the writer: on_cancel runs, the lane's next append ends its
    block, the run's next call ends the run's block, and readers see who cancelled it."""
    async with person(server) as ana, agent(server, "planner") as planner:
        watch = await ana.channel(ROOM).subscribe()
        calls: list[str] = []
        async with planner.channel(ROOM).run() as run:
            run.on_cancel(lambda: calls.append("cancelled"))
            async with run.text() as lane:
                await lane.append("Working on")
                await ana.channel(ROOM).cancel_run(run.id)
                async with asyncio.timeout(WAIT):
                    await run.wait_cancelled()
                await lane.append(" it")
            assert lane.status == "cancelled"
            await run.publish_text("never published")
        assert calls == ["cancelled"] and run.cancelled_by == "ana" and run.status == "cancelled"
        ended = await run_until(watch, run.id, lambda u: u.done)
        assert (ended.status, ended.cancelled_by) == ("cancelled", "ana")


async def test_sub_runs_name_their_parent(server: TestServer) -> None:
    """A child run is a sub-run of its parent: readers see `parent`; both end completed."""
    async with person(server) as ana, agent(server, "planner") as planner:
        watch = await ana.channel(ROOM).subscribe()
        async with planner.channel(ROOM).run() as parent:
            async with parent.child() as child:
                await child.publish_text("the part of a helper")
            inner = await run_until(watch, child.id, lambda u: u.done)
            assert (inner.parent, inner.status) == (parent.id, "completed")
        outer = await run_until(watch, parent.id, lambda u: u.done)
        assert outer.parent is None and outer.status == "completed"


async def test_a_stream_fails_with_an_error_or_is_cancelled_by_a_member(server: TestServer) -> None:
    """`Stream.fail` ends a stream `failed` with its error; a member's cancel ends one `cancelled`
    naming the member: readers tell the two apart."""
    async with person(server) as ana, agent(server, "writer") as writer:
        streams = ana.channel(ROOM).streams()
        await streams.start()
        async with writer.channel(ROOM).stream() as stream:
            await stream.append("partial")
            await stream.fail("upstream 503", code="upstream_503")
        assert stream.status == "failed"
        failed = await stream_until(streams, lambda u: u.done)
        assert failed.status == "failed" and failed.error == {
            "message": "upstream 503",
            "code": "upstream_503",
        }
        assert failed.cancelled_by is None
        async with writer.channel(ROOM).stream() as second:
            await second.append("more")
            opened = await stream_until(streams, lambda u: u.stream_id == second.stream_id)
            await ana.channel(ROOM).cancel_stream(opened.stream_id)
            async with asyncio.timeout(WAIT):
                await second.wait_cancelled()
        cancelled = await stream_until(streams, lambda u: u.done)
        assert (cancelled.status, cancelled.cancelled_by, cancelled.error) == ("cancelled", "ana", None)


async def test_a_stream_or_run_whose_opener_was_cancelled_is_not_left_open(server: TestServer) -> None:
    """A task cancelled while its stream's open (or run's start) awaits the ack: once the server
    opened it, the SDK ends it cancelled instead of leaving it open until the session ends."""
    async with person(server) as ana, agent(server, "writer") as writer:
        watch = await ana.channel(ROOM).subscribe()
        streams = ana.channel(ROOM).streams()
        await streams.start()
        opening = asyncio.create_task(writer.channel(ROOM).stream().open())
        starting = asyncio.create_task(writer.channel(ROOM).run().start())
        await asyncio.sleep(0)  # both requests are sent, their acks not yet read
        opening.cancel()
        starting.cancel()
        await asyncio.gather(opening, starting, return_exceptions=True)
        assert opening.cancelled() and starting.cancelled()
        ended = await stream_until(streams, lambda u: u.done)
        assert ended.status == "cancelled"
        async with asyncio.timeout(WAIT):
            async for run in watch.run_updates:
                if run.done:
                    break
        assert run.status == "cancelled"


async def test_a_run_goes_on_across_a_dropped_connection(server: TestServer) -> None:
    """A run's writer whose connection drops mid-lane resumes its session: the lane's text is whole
    and the run completes, as a reader sees it."""
    async with person(server) as ana, agent(server, "planner") as planner:
        watch = await ana.channel(ROOM).subscribe()
        streams = ana.channel(ROOM).streams()
        async with planner.channel(ROOM).run() as run:
            async with run.text(coalesce=0) as lane:
                await lane.append("before the drop, ")
                cut_connection(planner)
                await lane.append("after it")
            await run.tool_result("call_9", {"ok": True})
        final = await stream_until(streams, lambda u: u.done)
        assert (final.status, final.text, final.run_id) == ("complete", "before the drop, after it", run.id)
        done = await run_until(watch, run.id, lambda u: u.done)
        assert done.status == "completed" and planner.reconnects == 1 and planner.resumed
