"""Load-generator toolkit: orchestrator lines, percentiles, connection helpers, reply trackers."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.dialects import Dialect
from bench.wsclient import Shared, WsClient

CLK_TCK = os.sysconf("SC_CLK_TCK")


def emit(kind: str, data: dict[str, Any]) -> None:
    print(f"{kind} {json.dumps(data)}", flush=True)


async def wait_line(expected: str) -> None:
    """Block until the orchestrator writes `expected` on stdin (EOF also releases, so we never hang)."""
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.strip() == expected:
            return


def percentiles(values_us: list[int]) -> dict[str, float]:
    """p50/p90/p99/p99.9/max in milliseconds, and the sample count."""
    if not values_us:
        return {"n": 0}
    values = sorted(values_us)
    n = len(values)

    def at(q: float) -> float:
        return values[min(n - 1, int(q * n))] / 1000.0

    return {
        "n": n,
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "p999": at(0.999),
        "max": values[-1] / 1000,
    }


async def open_many(factory: Callable[[int], Awaitable[WsClient]], n: int, start: int = 0) -> list[WsClient]:
    """Open n connections, at most 100 handshakes at a time (the server's accept backlog is finite)."""
    gate = asyncio.Semaphore(100)

    async def one(i: int) -> WsClient:
        async with gate:
            return await factory(i)

    return list(await asyncio.gather(*(one(start + i) for i in range(n))))


async def pinger(dialect: Dialect, conns: list[WsClient], every: float) -> None:
    """Keep idle connections alive the way real clients do (agentchat wants a frame per interval):
    each pings once per `every` seconds on its own phase, spread over the period. Pinging all at one
    instant would measure a burst no set of independent clients makes, in every latency tail."""
    frame = dialect.ping_frame()
    if frame is None:
        return
    slices = 50
    while True:
        for k in range(slices):
            await asyncio.sleep(every / slices)
            for conn in conns[k::slices]:
                conn.write_raw(frame)


def bytes_per_delivery(conns: list[WsClient], received: int) -> float:
    return sum(c.bytes_in for c in conns) / received if received else 0.0


class ErrorCounter:
    """on_payload for publishers that send without refs: the server only answers failures."""

    def __init__(self, decode: Callable[[bytes], Any]) -> None:
        self.errors = 0
        self.last: Any = None
        self.decode = decode

    def __call__(self, conn: WsClient, opcode: int, payload: bytes) -> None:
        try:
            item = self.decode(payload)
        except Exception:
            return
        if isinstance(item, dict) and item.get("type") in ("error", "nack"):
            self.errors += 1
            self.last = item


async def drain(shared: Shared, target: int, idle_timeout: float = 3.0, max_wait: float = 60.0) -> None:
    """Wait until `target` deliveries were counted, nothing arrived for `idle_timeout` s, or `max_wait` s."""
    last = -1
    quiet_since = time.monotonic()
    deadline = quiet_since + max_wait
    while shared.total < target and time.monotonic() < deadline:
        if shared.total != last:
            last, quiet_since = shared.total, time.monotonic()
        elif time.monotonic() - quiet_since > idle_timeout:
            return
        await asyncio.sleep(0.02)


async def trace(shared: Shared, every: float = 0.5) -> None:
    """With `"trace": true` in the spec: deliveries and own CPU per interval on stderr, for diagnosis."""
    last, cpu = shared.total, time.process_time()
    while True:
        await asyncio.sleep(every)
        now_cpu = time.process_time()
        print(
            f"trace: {(shared.total - last) / every:,.0f}/s loadgen cpu {100 * (now_cpu - cpu) / every:.0f}%",
            file=sys.stderr,
            flush=True,
        )
        last, cpu = shared.total, now_cpu


class AckTracker:
    """on_payload for publishers that send with refs: ack latency per ref, refused count."""

    def __init__(self, decode: Callable[[bytes], Any]) -> None:
        self.decode = decode
        self.sent_at: dict[int, int] = {}
        self.ack_us: list[int] = []
        self.acked = 0
        self.refused = 0
        self.last_refusal: Any = None
        self.on_ack: Callable[[WsClient], None] | None = None
        # Set whenever no sent request awaits its reply.
        self.drained = asyncio.Event()

    def __call__(self, conn: WsClient, opcode: int, payload: bytes) -> None:
        item = self.decode(payload)
        kind = item.get("type")
        if kind == "ack":
            sent = self.sent_at.pop(item.get("ref"), None)
            if sent is not None:
                self.ack_us.append((time.monotonic_ns() - sent) // 1000)
                self.acked += 1
                if self.on_ack is not None:
                    self.on_ack(conn)
        elif kind in ("nack", "error"):
            self.sent_at.pop(item.get("ref"), None)
            self.refused += 1
            self.last_refusal = item
            if self.on_ack is not None:
                self.on_ack(conn)
        if not self.sent_at:
            self.drained.set()


class ServerProbe:
    """The server process's CPU time and write-syscall count from /proc, read by the load generator at
    the edges of its measurement window (so connection setup is never part of a cost figure)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def sample(self) -> tuple[float, int] | None:
        """(utime + stime in seconds, syscw) of the server so far; None when it cannot be read."""
        if not self.pid:
            return None
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
            syscw = 0
            with open(f"/proc/{self.pid}/io") as f:
                for line in f:
                    if line.startswith("syscw:"):
                        syscw = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            return None
        return cpu, syscw

    @staticmethod
    def cost(
        before: tuple[float, int] | None, after: tuple[float, int] | None, deliveries: int
    ) -> dict[str, float | None]:
        """CPU microseconds per delivery and deliveries per write syscall over one window."""
        if before is None or after is None or deliveries <= 0:
            return {"cpu_us_per_delivery": None, "deliveries_per_write": None, "server_writes": None}
        writes = after[1] - before[1]
        return {
            "cpu_us_per_delivery": 1e6 * (after[0] - before[0]) / deliveries,
            "deliveries_per_write": deliveries / writes if writes > 0 else None,
            "server_writes": writes,
            "server_cpu_s": after[0] - before[0],
        }
