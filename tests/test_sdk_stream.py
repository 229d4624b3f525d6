"""Token streams written with the SDK: coalescing, cancel, errors, ids and resume mid-stream."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentchat import AlreadyExistsError, Backoff, Client, StreamCancelled
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, StreamView, cut_connection, messages_until, next_message
from tests.server_process import ServerProcess
from tests.wire import UNIT

WORDS = [f"word{n} " for n in range(120)]


async def test_stream_reaches_readers_and_ends_as_one_message(server: TestServer) -> None:
    """Readers get the open and chunks live, then one durable message with the whole text."""
    async with (
        Client(server.url, token=server.token("planner", kind="agent")) as writer,
        Client(server.url, token=server.token("ana")) as reader,
    ):
        question = await reader.channel("room:lobby").publish("@planner hi?")
        feed = reader.channel("room:lobby").events()
        subscription = reader.channel("room:lobby").subscribe()
        await subscription.start()
        async with writer.channel("room:lobby").stream(
            reply_to=question, name="answer", meta={"m": 1}
        ) as stream:
            for word in WORDS[:10]:
                await stream.append(word)
        assert stream.status == "complete" and stream.serial == question + 1
        final = await next_message(subscription)
        assert final.data == "".join(WORDS[:10]) and final.status == "complete"
        assert final.stream_id == stream.stream_id and final.reply_to == question and final.name == "answer"
        view = StreamView()
        async with asyncio.timeout(WAIT):
            async for event in feed:
                if event.type == "stream_open":
                    assert event.frame["stream_id"] == stream.stream_id
                view.apply(event.frame)
                if view.text == final.data:
                    break


async def test_tiny_appends_are_coalesced(server: TestServer) -> None:
    """Many tiny appends in a burst go out as far fewer chunks; the text is unchanged."""
    async with Client(server.url, token=server.token("planner", kind="agent")) as writer:
        feed = await writer.channel("room:lobby").events().start()
        async with writer.channel("room:lobby").stream(coalesce=0.2) as stream:
            for n in range(200):
                await stream.append(str(n % 10))
        view = StreamView()
        async with asyncio.timeout(WAIT):
            async for event in feed:
                view.apply(event.frame)
                if view.text == stream.content:
                    break
        assert 1 <= view.next < 200
        assert (await writer.channel("room:lobby").history(limit=1)).messages[0].data == stream.content


async def test_member_cancel_stops_the_writer(server: TestServer) -> None:
    """A cancel from another member notifies the writer; its next append raises, the block ends quietly."""
    async with (
        Client(server.url, token=server.token("planner", kind="agent")) as writer,
        Client(server.url, token=server.token("ana")) as human,
    ):
        notified: list[str] = []
        async with writer.channel("room:lobby").stream() as stream:
            stream.on_cancel(lambda: notified.append("stop"))
            await stream.append("partial")
            assert stream.stream_id is not None
            serial = await human.channel("room:lobby").cancel_stream(stream.stream_id)
            async with asyncio.timeout(WAIT):
                await stream.wait_cancelled()
            assert stream.cancelled and stream.cancelled_by == "ana" and notified == ["stop"]
            with pytest.raises(StreamCancelled):
                await stream.append(" more")
            await stream.append(" and more")  # raises again; the block swallows it
            notified.append("not reached")
        assert notified == ["stop"] and stream.status == "cancelled"
        final = (await human.channel("room:lobby").history(limit=1)).messages[0]
        assert final.serial == serial and final.status == "cancelled" and final.data == "partial"


async def test_writer_cancel_and_exception_end_the_stream(server: TestServer) -> None:
    """`cancel()` ends a stream cancelled; an exception in the block does too, and propagates."""
    async with Client(server.url, token=server.token("planner", kind="agent")) as writer:
        room = writer.channel("room:lobby")
        stream = await room.stream().open()
        await stream.append("stopped here")
        serial = await stream.cancel()
        with pytest.raises(ValueError):
            async with room.stream() as failing:
                await failing.append("half an ans")
                raise ValueError("model crashed")
        page = await room.history(after=0, direction="forwards")
        assert [(m.serial, m.status, m.data) for m in page.messages] == [
            (serial, "cancelled", "stopped here"),
            (failing.serial, "cancelled", "half an ans"),
        ]


async def test_an_existing_id_refuses_a_second_stream(server: TestServer) -> None:
    """Opening a stream whose id is open or answered raises AlreadyExistsError saying where."""
    async with Client(server.url, token=server.token("planner", kind="agent")) as writer:
        room = writer.channel("room:lobby")
        async with room.stream(id="answer-to-7") as first:
            with pytest.raises(AlreadyExistsError) as open_one:
                await room.stream(id="answer-to-7").open()
            assert open_one.value.stream_id == first.stream_id
            await first.append("done")
        with pytest.raises(AlreadyExistsError) as done_one:
            await room.stream(id="answer-to-7").open()
        assert done_one.value.serial == first.serial


async def test_json_stream_keeps_each_chunk(server: TestServer) -> None:
    """A json stream's final content is the list of its chunks."""
    async with Client(server.url, token=server.token("planner", kind="agent")) as writer:
        room = writer.channel("room:lobby")
        async with room.stream(format="json") as stream:
            await stream.append({"step": 1})
            await stream.append([2, "two"])
        final = (await room.history(limit=1)).messages[0]
        assert final.data == [{"step": 1}, [2, "two"]] and final.serial == stream.serial


async def test_cut_mid_stream_finishes_after_resume(server: TestServer) -> None:
    """A writer whose socket is cut mid-stream resumes and finishes; readers see one whole message."""
    async with (
        Client(server.url, token=server.token("planner", kind="agent"), backoff=Backoff(0.02, 0.2)) as writer,
        Client(server.url, token=server.token("ana")) as reader,
    ):
        feed = reader.channel("room:lobby").events(max_buffer=10_000)
        assembled = reader.channel("room:lobby").streams()
        subscription = reader.channel("room:lobby").subscribe()
        await subscription.start()
        async with writer.channel("room:lobby").stream(coalesce=0) as stream:
            for n, word in enumerate(WORDS):
                await stream.append(word)
                if n == 40:
                    cut_connection(writer)
        assert writer.reconnects == 1 and writer.resumed
        messages = await messages_until(subscription, lambda m: m.stream_id is not None)
        assert len(messages) == 1 and messages[0].data == "".join(WORDS) and messages[0].status == "complete"
        view = StreamView()
        async with asyncio.timeout(WAIT):
            async for event in feed:
                view.apply(event.frame)
                if view.next == len(WORDS):
                    break
        assert view.text == "".join(WORDS) and view.repeats == 0
        # The SDK's own assembly shows the same: never a doubled chunk, and the final text.
        async with asyncio.timeout(WAIT):
            async for update in assembled:
                assert "".join(WORDS).startswith(update.text)
                if update.done:
                    break
        assert (update.status, update.content) == ("complete", "".join(WORDS))
        history = await reader.channel("room:lobby").history(after=0, direction="forwards")
        assert [m.stream_id for m in history.messages] == [stream.stream_id]


async def test_declared_end_content_is_authoritative(server: TestServer) -> None:
    """`end(data=...)` stores the declared content, whatever the chunks said."""
    async with Client(server.url, token=server.token("planner", kind="agent")) as writer:
        room = writer.channel("room:lobby")
        stream = await room.stream().open()
        await stream.append("draft tex")
        serial = await stream.end(data="final text")
        assert serial == stream.serial and stream.status == "complete"
        assert await stream.end() == serial
        assert (await room.history(limit=1)).messages[0].data == "final text"


async def test_the_sdk_resumes_its_stream_after_the_server_restarts(tmp_path: Path) -> None:
    """kill -9 of the only server mid-answer, then a restart: the SDK writer resumes its stream by
    itself and the answer ends once, complete, with every word (nothing lost, nothing restarted)."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'resume.db'}", stream_grace=UNIT * 2)
    await server.start()
    fast = Backoff(initial=0.05, maximum=0.2)
    try:
        async with Client(server.url, token=server.token("planner", kind="agent"), backoff=fast) as writer:
            async with writer.channel("room:lobby").stream(coalesce=0) as stream:
                for word in WORDS[:10]:
                    await stream.append(word)
                await server.kill()
                await server.start()
                for word in WORDS[10:20]:
                    await stream.append(word)
            assert stream.status == "complete"
        async with Client(server.url, token=server.token("ana")) as reader:
            page = await reader.channel("room:lobby").history(limit=10)
        assert [(m.stream_id, m.status, m.data) for m in page] == [
            (stream.stream_id, "complete", "".join(WORDS[:20]))
        ]
    finally:
        await server.stop()
