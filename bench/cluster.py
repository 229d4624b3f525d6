"""`python -m bench.cluster`: one node against two, on PostgreSQL and Redis, in one run.

Three workloads, each run on a single node and then on two nodes (clients split evenly, the
publishers' load too): fan-out to one channel's readers, many small channels, and one busy channel
written from both nodes (serials come from one row lock). Prints a markdown table and writes it
to bench/results/cluster.json. The nodes, a redis-server and a throwaway database are started and
removed by the run; the machine's own Redis is never used.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import msgpack

RESULTS = Path(__file__).parent / "results"
PG = os.environ.get("AGENTCHAT_BENCH_PG", "postgresql+asyncpg://postgres@127.0.0.1:5432")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator[str]:
    import asyncpg

    name = f"bench_cluster_{secrets.token_hex(4)}"
    admin = PG.replace("postgresql+asyncpg://", "postgresql://") + "/postgres"
    conn = await asyncpg.connect(admin)
    await conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{PG}/{name}"
    finally:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


@contextlib.asynccontextmanager
async def _nodes(count: int, db: str, redis_port: int) -> AsyncIterator[tuple[list[str], str]]:
    key = f"bench:{secrets.token_hex(32)}"
    env = {
        **os.environ,
        "AGENTCHAT_KEYS": key,
        "AGENTCHAT_DB": db,
        "AGENTCHAT_BUS": f"redis://127.0.0.1:{redis_port}/0?prefix=b{secrets.token_hex(3)}",
        "AGENTCHAT_PUBLISH_RATE": "100000",
        "AGENTCHAT_PUBLISH_BURST": "100000",
        "AGENTCHAT_LOG_LEVEL": "WARNING",
    }
    procs = []
    urls = []
    try:
        for _ in range(count):
            port = _free_port()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "agentchat_server", "serve", "--port", str(port),
                env=env, stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            procs.append(proc)
            assert proc.stdout is not None
            async with asyncio.timeout(60):
                while not (line := (await proc.stdout.readline()).decode()).startswith("agentchat listening"):
                    if not line:
                        raise RuntimeError("a node did not start")
            urls.append(f"ws://127.0.0.1:{port}/v1/ws?format=msgpack")
        yield urls, key
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(15):
                    await proc.wait()


def _token(key: str, client_id: str) -> str:
    from agentchat_server.auth import Authenticator

    return Authenticator([key]).mint(client_id, ttl=3600)[0]


class Client:
    """A msgpack WebSocket client counting the durable messages it receives."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.received = 0
        self.latencies: list[float] = []
        self.acks: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ref = 0
        self.done = asyncio.Event()
        self.expect = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            frame = msgpack.unpackb(msg.data, raw=False)
            kind = frame.get("type")
            if kind == "message" and frame.get("serial"):
                self.received += 1
                sent = frame["data"].get("t") if isinstance(frame["data"], dict) else None
                if sent is not None:
                    self.latencies.append(time.perf_counter() - sent)
                if self.expect and self.received >= self.expect:
                    self.done.set()
            elif kind in ("ack", "nack", "attached") and frame.get("ref") in self.acks:
                self.acks.pop(frame["ref"]).set_result(frame)

    async def request(self, frame: dict[str, Any]) -> dict[str, Any]:
        self.ref += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.acks[self.ref] = future
        await self.ws.send_bytes(msgpack.packb({**frame, "ref": self.ref}))
        return await future


async def _connect(http: aiohttp.ClientSession, url: str, token: str) -> Client:
    ws = await http.ws_connect(url, max_msg_size=0)
    await ws.send_bytes(msgpack.packb({"type": "connect", "token": token}))
    msg = await ws.receive()
    assert msgpack.unpackb(msg.data, raw=False)["type"] == "connected"
    return Client(ws)


async def _publish(client: Client, channels: list[str], offset: int, count: int, window: int) -> None:
    """`count` durable messages, spread over `channels` round robin from `offset`, `window` in flight."""
    gate = asyncio.Semaphore(window)

    async def one(i: int) -> None:
        channel = channels[(offset + i) % len(channels)]
        async with gate:
            await client.request(
                {"type": "publish", "channel": channel, "data": {"i": i, "t": time.perf_counter()}}
            )

    await asyncio.gather(*(one(i) for i in range(count)))


async def _workload(name: str, urls: list[str], key: str) -> dict[str, Any]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        if name == "fan-out":
            readers, channels, publishers, per_pub = 200, 1, 1, 1000
        elif name == "many channels":
            readers, channels, publishers, per_pub = 300, 100, 10, 200
        else:  # one busy channel, written from every node
            readers, channels, publishers, per_pub = 10, 1, 4, 1000
        subs = []
        for i in range(readers):
            client = await _connect(http, urls[i % len(urls)], _token(key, f"r{i}"))
            channel = f"room:c{i % channels}"
            await client.request({"type": "attach", "channel": channel, "presence": False})
            subs.append((client, channel))
        pubs = [await _connect(http, urls[i % len(urls)], _token(key, f"p{i}")) for i in range(publishers)]
        per_channel = publishers * per_pub // channels
        for client, _ in subs:
            client.expect = per_channel
        started = time.perf_counter()
        names = [f"room:c{n}" for n in range(channels)]
        await asyncio.gather(*(_publish(p, names, i * per_pub, per_pub, 50) for i, p in enumerate(pubs)))
        acked = time.perf_counter() - started
        async with asyncio.timeout(120):
            await asyncio.gather(*(c.done.wait() for c, _ in subs if c.expect))
        elapsed = time.perf_counter() - started
        deliveries = sum(c.received for c, _ in subs)
        latencies = sorted(x for c, _ in subs for x in c.latencies)
        for client in [c for c, _ in subs] + pubs:
            await client.ws.close()
        return {
            "workload": name,
            "nodes": len(urls),
            "messages": publishers * per_pub,
            "acked_per_s": round(publishers * per_pub / acked),
            "deliveries_per_s": round(deliveries / elapsed),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
        }


async def main(quick: bool) -> None:
    if shutil.which("redis-server") is None:
        raise SystemExit("bench.cluster needs redis-server")
    redis_port = _free_port()
    redis = await asyncio.create_subprocess_exec(
        "redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
        stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(0.5)
    rows = []
    try:
        for workload in ("fan-out", "many channels", "one busy channel"):
            for count in (1, 2):
                async with _database() as db, _nodes(count, db, redis_port) as (urls, key):
                    row = await _workload(workload, urls, key)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        redis.terminate()
        await redis.wait()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "cluster.json").write_text(json.dumps(rows, indent=2))
    print("\n| workload | nodes | messages | acked/s | deliveries/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['workload']} | {r['nodes']} | {r['messages']} | {r['acked_per_s']} | "
            f"{r['deliveries_per_s']} | {r['p50_ms']} | {r['p99_ms']} |"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    asyncio.run(main(parser.parse_args().quick))
