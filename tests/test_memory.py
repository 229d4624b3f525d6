"""Memory stays bounded under hostile load: a real server process, its resident memory read from /proc.

These are tests of memory, not of time: they measure the server's RSS before, during and after.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp

from agentchat_server.core.records import NewMessage
from agentchat_server.protocol import Code
from agentchat_server.store import Append, make_store
from tests.server_process import ServerProcess
from tests.wire import UNIT, Wire

MB = 1024 * 1024


def rss(pid: int) -> int:
    """Resident set size of a process, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


async def _fill_channel(db: str, channel: str, rows: int, size: int) -> None:
    store = make_store(db)
    await store.open()
    data = "h" * size
    text = json.dumps(data)
    try:
        for start in range(0, rows, 50):
            batch = [
                NewMessage(f"h{i}", "chat", data, text, "writer", "human", 1000 + i)
                for i in range(start, min(rows, start + 50))
            ]
            await store.commit([Append(channel, batch)])
    finally:
        await store.close()


async def test_a_history_storm_keeps_memory_bounded_and_neighbours_served(tmp_path: Path) -> None:
    """20 concurrent history requests (limit 1000 over 60 kB rows) grow the server by under 100 MB,
    and a reader on another channel keeps getting every message."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'storm.db'}"
    await _fill_channel(db, "room:huge", 1000, 60_000)
    server = ServerProcess(db)
    await server.start()
    assert server.proc is not None
    pid = server.proc.pid
    headers = {"Authorization": f"Bearer {server.token('reader')}"}
    neighbour = await Wire.open(server.ws_url, server.token("neighbour"))
    talker = await Wire.open(server.ws_url, server.token("talker"))
    try:
        await neighbour.request({"type": "attach", "channel": "room:calm", "presence": False})
        async with aiohttp.ClientSession() as http:
            url = f"{server.url}/v1/channels/room:huge/messages?limit=1000"
            async with http.get(url, headers=headers) as resp:  # warm up the code paths once
                assert resp.status == 200
            before = rss(pid)
            peak = before

            async def one() -> int:
                async with http.get(url, headers=headers) as resp:
                    body = await resp.json()
                    return len(body["messages"])

            storm = asyncio.gather(*(one() for _ in range(20)))
            sent = 0
            while not storm.done():
                await talker.request({"type": "publish", "channel": "room:calm", "data": sent})
                sent += 1
                peak = max(peak, rss(pid))
            counts = await storm
        assert all(0 < n < 1000 for n in counts)  # pages cut by bytes, not 1,000 rows of 60 kB
        assert peak - before < 100 * MB, f"grew {(peak - before) // MB} MB"
        got = await neighbour.messages(sent, channel="room:calm", timeout=UNIT * 6)
        assert [m["data"] for m in got] == list(range(sent))
        assert not neighbour.closed.is_set()
    finally:
        await asyncio.gather(neighbour.close(), talker.close())
        await server.stop()


async def test_stream_memory_is_bounded_per_client_and_given_back(tmp_path: Path) -> None:
    """One client's open streams are bounded in bytes (41302 past the budget), and the server's
    memory returns near where it started once they end."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'streams.db'}")
    await server.start()
    assert server.proc is not None
    pid = server.proc.pid
    writer = await Wire.open(server.ws_url, server.token("writer", kind="agent"))
    reader = await Wire.open(server.ws_url, server.token("reader"))
    try:
        await reader.request({"type": "attach", "channel": "room:s", "presence": False})
        await writer.request({"type": "publish", "channel": "room:s", "data": "warm up"})
        await reader.messages(1)
        before = rss(pid)
        chunk = "c" * 4096
        streams = []
        refused = None
        for n in range(10):  # 10 x 1 MiB asked; the per-client budget is 8 MiB
            stream_id = (await writer.request({"type": "stream_open", "channel": "room:s"}))["stream_id"]
            streams.append(stream_id)
            for i in range(256):
                reply = await writer.request(
                    {"type": "stream_append", "stream_id": stream_id, "i": i, "d": chunk}
                )
                if reply["type"] == "nack":
                    refused = (n, reply["code"])
                    break
            if refused:
                break
        assert refused is not None and refused == (8, Code.STREAM_TOO_LARGE)
        for stream_id in streams:
            ended = await writer.request({"type": "stream_end", "stream_id": stream_id})
            assert ended["type"] == "ack"
        finals = await reader.messages(len(streams), channel="room:s", timeout=UNIT * 6)
        assert sum(len(m["data"]) for m in finals) >= 8 * MB
        await writer.request({"type": "ping"})
        after = rss(pid)
        assert after - before < 40 * MB, f"kept {(after - before) // MB} MB after the streams ended"
    finally:
        await asyncio.gather(writer.close(), reader.close())
        await server.stop()
