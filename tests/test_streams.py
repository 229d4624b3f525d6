"""Token streams: live chunks, snapshots for late or returning readers, one durable end, no hangs."""

from __future__ import annotations

import asyncio
import random
import sys
from collections.abc import Callable
from typing import Any

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.server_process import ServerProcess
from tests.wire import UNIT, Wire

ROOM = "room:streams"


class Assembler:
    """What a reader shows: snapshot content plus chunks in index order; counts duplicates and gaps."""

    def __init__(self) -> None:
        self.text: dict[str, str] = {}
        self.next: dict[str, int] = {}
        self.duplicates = 0
        self.final: dict[str, dict[str, Any]] = {}

    def apply(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind == "stream_open":
            self.text.setdefault(frame["stream_id"], "")
            self.next.setdefault(frame["stream_id"], 0)
        elif kind == "stream_snapshot":
            sid = frame["stream_id"]
            assert frame["next"] >= self.next.get(sid, 0), "a snapshot never goes back"
            self.text[sid] = frame["content"]
            self.next[sid] = frame["next"]
        elif kind == "stream_chunk":
            sid, i = frame["stream_id"], frame["i"]
            expected = self.next.get(sid, 0)
            if i < expected:
                self.duplicates += 1
                return
            assert i == expected, f"gap in stream {sid}: got chunk {i}, expected {expected}"
            self.text[sid] = self.text.get(sid, "") + frame["d"]
            self.next[sid] = i + 1
        elif kind == "message" and frame.get("stream_id"):
            self.final[frame["stream_id"]] = frame


async def writer_stream(wire: Wire, channel: str = ROOM, **fields: Any) -> str:
    reply = await wire.request({"type": "stream_open", "channel": channel, **fields})
    assert reply["type"] == "ack", reply
    return str(reply["stream_id"])


async def append_all(wire: Wire, stream_id: str, chunks: list[str], start: int = 0, pace: int = 50) -> None:
    """Append chunks, with a ping barrier every `pace` so readers interleave with the writer."""
    for n, chunk in enumerate(chunks):
        await wire.send({"type": "stream_append", "stream_id": stream_id, "i": start + n, "d": chunk})
        if n % pace == pace - 1:
            await wire.request({"type": "ping"})


async def test_reader_reconnecting_five_times_sees_every_chunk_once(make_server: Callable[..., Any]) -> None:
    """3 readers of 2,000 chunks, one reconnecting 5 times: all equal the final message, no duplicate."""
    srv: TestServer = await make_server()
    rng = random.Random(5)
    writer = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))
    readers = [await Wire.open(srv.ws_url, srv.token(f"r{i}")) for i in range(3)]
    for r in readers:
        await r.request({"type": "attach", "channel": ROOM, "presence": False})
    chunks = [f"w{i:04d} " for i in range(2000)]
    sid = await writer_stream(writer, name="answer")
    views = [Assembler() for _ in readers]
    cut_at = sorted(rng.sample(range(50, 1950), 5))
    flaky = {"wire": readers[2], "last": 0, "epoch": None}

    async def read_steady(wire: Wire, view: Assembler) -> None:
        while sid not in view.final:
            view.apply(await wire.inbox.get())

    async def read_flaky(view: Assembler) -> None:
        seen = 0
        while sid not in view.final:
            wire: Wire = flaky["wire"]  # type: ignore[assignment]
            frame = await wire.inbox.get()
            view.apply(frame)
            if frame["type"] == "stream_chunk":
                seen += 1
                if cut_at and seen >= cut_at[0]:
                    cut_at.pop(0)
                    wire.cut()
                    await wire.closed.wait()
                    # Alternate: a session resume, and a brand-new connection (a page reload).
                    resume = wire.resume_token if len(cut_at) % 2 else None
                    fresh = await Wire.open(srv.ws_url, srv.token("r2"), resume=resume)
                    await fresh.request(
                        {
                            "type": "attach",
                            "channel": ROOM,
                            "presence": False,
                            "position": {"serial": 0, "epoch": None},
                        }
                    )
                    flaky["wire"] = fresh
                    await wire.close()

    async def write() -> None:
        await append_all(writer, sid, chunks)
        reply = await writer.request({"type": "stream_end", "stream_id": sid, "chunks": 2000})
        assert reply["type"] == "ack"

    async with asyncio.timeout(UNIT * 12):
        await asyncio.gather(
            write(),
            read_steady(readers[0], views[0]),
            read_steady(readers[1], views[1]),
            read_flaky(views[2]),
        )
    expected = "".join(chunks)
    for view in views:
        assert view.final[sid]["data"] == expected and view.final[sid]["status"] == "complete"
        assert view.text[sid] == expected
        assert view.duplicates == 0
    page = await writer.request({"type": "history", "channel": ROOM})
    assert [(m["stream_id"], m["data"]) for m in page["messages"]] == [(sid, expected)]
    await asyncio.gather(writer.close(), readers[0].close(), readers[1].close(), flaky["wire"].close())  # type: ignore[union-attr]


async def test_reader_attaching_mid_stream_gets_snapshot_then_rest(connect: Callable[..., Any]) -> None:
    """A brand-new connection attaching mid-stream gets the text so far in one piece, then the chunks."""
    writer = await connect("planner", kind="agent")
    sid = await writer_stream(writer, reply_to=None, meta={"model": "scripted"})
    await append_all(writer, sid, ["Hel", "lo ", "wor"])
    await writer.request({"type": "ping"})
    late = await connect("late")
    await late.request({"type": "attach", "channel": ROOM})
    snap = await late.expect("stream_snapshot")
    assert (snap["content"], snap["next"], snap["meta"]) == ("Hello wor", 3, {"model": "scripted"})
    await append_all(writer, sid, ["ld"], start=3)
    chunk = await late.expect("stream_chunk")
    assert (chunk["i"], chunk["d"]) == (3, "ld")
    await writer.request({"type": "stream_end", "stream_id": sid})
    final = await late.expect("message")
    assert final["data"] == "Hello world" and final["stream_id"] == sid


async def test_writer_killed_ends_stream_aborted_after_grace(tmp_path: Any) -> None:
    """The writer's process is SIGKILLed mid-stream: readers get an aborted message with the partial text."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 's.db'}", stream_grace=0.3, presence_grace=0.3)
    await server.start()
    try:
        reader = await Wire.open(server.ws_url, server.token("reader"))
        await reader.request({"type": "attach", "channel": ROOM})
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.stream_writer",
            server.ws_url,
            server.token("bot", kind="agent"),
            ROOM,
            "40",
            stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        async with asyncio.timeout(UNIT * 2):
            line = (await proc.stdout.readline()).decode().split()
        assert line[0] == "ready"
        proc.kill()
        await proc.wait()
        final = await reader.expect("message", timeout=UNIT * 2)
        partial = "".join(f"t{i} " for i in range(40))
        assert (final["stream_id"], final["status"], final["data"]) == (line[1], "aborted", partial)
        page = await reader.request({"type": "history", "channel": ROOM})
        assert [(m["status"], m["data"]) for m in page["messages"]] == [("aborted", partial)]
        await reader.close()
    finally:
        await server.stop()


async def test_open_stream_is_aborted_when_server_restarts(tmp_path: Any) -> None:
    """A stream open when the server dies, whose writer never comes back, ends as aborted once its
    lease lapses after the restart (a stream grace); nobody waits forever."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'r.db'}", stream_grace=UNIT / 5)
    await server.start()
    try:
        writer = await Wire.open(server.ws_url, server.token("bot", kind="agent"))
        sid = await writer_stream(writer, id="reply-to-1")
        await append_all(writer, sid, ["par", "tial"])
        await writer.request({"type": "ping"})
        await server.kill()
        await writer.close()
        await server.start()
        reader = await Wire.open(server.ws_url, server.token("reader"))
        await reader.request({"type": "attach", "channel": ROOM, "position": {"serial": 0}})
        (end,) = await reader.messages(1, timeout=UNIT * 2)
        assert (end["id"], end["stream_id"], end["status"]) == ("reply-to-1", sid, "aborted")
        await reader.close()
    finally:
        await server.stop()


async def test_fifty_concurrent_streams_interleave(make_server: Callable[..., Any]) -> None:
    """50 streams from 5 writers in one channel: each reader assembles every one exactly."""
    srv: TestServer = await make_server(namespaces={"room": {"loop_budget": None}})  # 50 agent turns
    writers = [await Wire.open(srv.ws_url, srv.token(f"bot{i}", kind="agent")) for i in range(5)]
    reader = await Wire.open(srv.ws_url, srv.token("reader"))
    await reader.request({"type": "attach", "channel": ROOM, "presence": False})
    streams: list[tuple[Wire, str, list[str]]] = []
    for n in range(50):
        w = writers[n % 5]
        sid = await writer_stream(w)
        streams.append((w, sid, [f"s{n}c{i} " for i in range(40)]))
    try:
        for i in range(40):
            for w, sid, chunks in streams:
                await w.send({"type": "stream_append", "stream_id": sid, "i": i, "d": chunks[i]})
        await asyncio.gather(*(w.request({"type": "stream_end", "stream_id": sid}) for w, sid, _ in streams))
        view = Assembler()
        async with asyncio.timeout(UNIT * 4):
            while len(view.final) < 50:
                view.apply(await reader.inbox.get())
        for _, sid, chunks in streams:
            assert view.text[sid] == "".join(chunks) == view.final[sid]["data"]
        assert view.duplicates == 0
    finally:
        await asyncio.gather(reader.close(), *(w.close() for w in writers))


async def test_ten_thousand_chunks_cost_at_most_two_store_writes(
    server: TestServer, connect: Callable[..., Any]
) -> None:
    """Chunks never reach the Store: a 10,000-chunk stream is one marker and one message."""
    writer = await connect("bot", kind="agent")
    before = server.broker.store.stats.writes
    sid = await writer_stream(writer)
    await append_all(writer, sid, ["x"] * 10_000, pace=500)
    reply = await writer.request({"type": "stream_end", "stream_id": sid, "chunks": 10_000})
    assert reply["type"] == "ack"
    assert server.broker.store.stats.writes_by_stream[sid] <= 2
    assert server.broker.store.stats.writes - before <= 2
    page = await writer.request({"type": "history", "channel": ROOM})
    assert page["messages"][0]["data"] == "x" * 10_000


async def test_cancel_by_a_member_stops_the_writer(connect: Callable[..., Any]) -> None:
    """A member cancels: the writer is told, appends are refused, the message is cancelled with the text."""
    writer = await connect("bot", kind="agent")
    human = await connect("ana")
    await human.request({"type": "attach", "channel": ROOM})
    sid = await writer_stream(writer)
    await append_all(writer, sid, ["so ", "far"])
    await writer.request({"type": "ping"})
    reply = await human.request({"type": "stream_cancel", "stream_id": sid})
    assert reply["type"] == "ack"
    told = await writer.expect("stream_cancelled")
    assert told["stream_id"] == sid and told["by"] == "ana"
    late = await writer.request({"type": "stream_append", "stream_id": sid, "i": 2, "d": "more"})
    assert late["code"] == Code.STREAM_NOT_FOUND
    final = await human.expect("message")
    assert (final["status"], final["data"]) == ("cancelled", "so far")


async def test_single_writer_and_resume_continues(server: TestServer, connect: Callable[..., Any]) -> None:
    """Another connection may not write; the writer's resumed session continues, resent chunks are ignored."""
    writer = await Wire.open(server.ws_url, server.token("bot", kind="agent"))
    intruder = await connect("bot", kind="agent")
    sid = await writer_stream(writer)
    await append_all(writer, sid, ["a", "b"])
    bad = await intruder.request({"type": "stream_append", "stream_id": sid, "i": 2, "d": "x"})
    assert bad["code"] == Code.NOT_STREAM_WRITER
    bad = await intruder.request({"type": "stream_end", "stream_id": sid})
    assert bad["code"] == Code.NOT_STREAM_WRITER
    writer.cut()
    await writer.closed.wait()
    back = await Wire.open(server.ws_url, server.token("bot", kind="agent"), resume=writer.resume_token)
    try:
        assert back.connected["resumed"]
        dup = await back.request({"type": "stream_append", "stream_id": sid, "i": 1, "d": "b"})
        assert dup["type"] == "ack"  # resent: accepted before, ignored now
        gap = await back.request({"type": "stream_append", "stream_id": sid, "i": 5, "d": "z"})
        assert gap["code"] == Code.CHUNK_OUT_OF_ORDER and gap["next"] == 2
        await back.request({"type": "stream_append", "stream_id": sid, "i": 2, "d": "c"})
        end = await back.request({"type": "stream_end", "stream_id": sid, "data": "abc"})
        assert end["type"] == "ack"
        page = await back.request({"type": "history", "channel": ROOM})
        assert page["messages"][0]["data"] == "abc"
    finally:
        await asyncio.gather(writer.close(), back.close())


async def test_stream_id_already_answered_is_refused(connect: Callable[..., Any]) -> None:
    """A stream whose id exists as a message (the answer was given) is refused with 40902 and the serial."""
    w = await connect("bot", kind="agent")
    sid = await writer_stream(w, id="bot:reply:7")
    await w.request({"type": "stream_end", "stream_id": sid})
    again = await w.request({"type": "stream_open", "channel": ROOM, "id": "bot:reply:7"})
    assert again["code"] == Code.ALREADY_EXISTS and again["serial"] == 1
    open_one = await writer_stream(w, id="bot:reply:8")
    twin = await w.request({"type": "stream_open", "channel": ROOM, "id": "bot:reply:8"})
    assert twin["code"] == Code.ALREADY_EXISTS and twin["stream_id"] == open_one


async def test_declared_content_wins_and_mismatch_is_counted(
    server: TestServer, connect: Callable[..., Any]
) -> None:
    """The writer's declared final content is stored even if chunks differed; the mismatch is counted."""
    w = await connect("bot", kind="agent")
    sid = await writer_stream(w)
    await append_all(w, sid, ["draft"])
    await w.request({"type": "stream_end", "stream_id": sid, "data": "final answer"})
    page = await w.request({"type": "history", "channel": ROOM})
    assert page["messages"][0]["data"] == "final answer"
    assert server.broker.metrics.stream_mismatch._value.get() == 1


async def test_stream_limits(make_server: Callable[..., Any]) -> None:
    """Open streams per connection and stream size are bounded with clear errors."""
    srv: TestServer = await make_server(max_streams_per_connection=2, max_stream_bytes=1024)
    w = await Wire.open(srv.ws_url, srv.token("bot", kind="agent"))
    try:
        first = await writer_stream(w)
        await writer_stream(w)
        third = await w.request({"type": "stream_open", "channel": ROOM})
        assert third["code"] == Code.TOO_MANY_STREAMS
        big = await w.request({"type": "stream_append", "stream_id": first, "i": 0, "d": "x" * 2000})
        assert big["code"] == Code.STREAM_TOO_LARGE
    finally:
        await w.close()


async def test_ephemeral_messages_are_live_only(connect: Callable[..., Any]) -> None:
    """Typing signals fan out live, are never stored and never replayed."""
    a = await connect("a")
    b = await connect("b")
    await b.request({"type": "attach", "channel": ROOM})
    reply = await a.request(
        {"type": "publish", "channel": ROOM, "name": "typing", "data": True, "ephemeral": True}
    )
    assert reply["serials"] == [None]
    live = await b.expect("message")
    assert live["ephemeral"] is True and live["serial"] is None and live["name"] == "typing"
    await a.request({"type": "publish", "channel": ROOM, "data": "durable"})
    page = await a.request({"type": "history", "channel": ROOM})
    assert [m["data"] for m in page["messages"]] == ["durable"]
    c = await connect("c")
    await c.request({"type": "attach", "channel": ROOM, "position": {"serial": 0, "epoch": None}})
    assert [m["data"] for m in await c.messages(1)] == ["durable"]
