"""The load generator process: `python -m bench.loadgen '<json spec>'` runs one role and prints its result.

It talks to the orchestrator (bench/run.py) by lines: it prints `READY {json}` when a phase is set up
and waits for `GO` on stdin where the role says so, and ends with one `RESULT {json}` line.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import roles_agentchat, roles_rooms
from bench.dialects import DIALECTS, Agentchat, Dialect
from bench.loadkit import (
    AckTracker,
    ErrorCounter,
    ServerProbe,
    bytes_per_delivery,
    drain,
    emit,
    open_many,
    percentiles,
    pinger,
    trace,
    wait_line,
)
from bench.wsclient import Shared, make_payload


async def role_fanout(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: keep at most `window` messages undelivered to all subscribers; measure deliveries/s."""
    shared = Shared()
    if spec.get("trace"):
        asyncio.get_running_loop().create_task(trace(shared))
    n, channel, size, window = spec["subs"], spec["channel"], spec["size"], spec["window"]
    subs = await open_many(lambda i: dialect.subscriber(shared, channel, i), n)
    pub = await dialect.publisher(shared, 0)
    errors = ErrorCounter(dialect.decode if isinstance(dialect, Agentchat) else bytes)
    pub.on_payload = errors
    for i, sub in enumerate(subs):
        sub.switch("sample" if i < spec.get("sample_subs", 20) else "count")
    keepalive = asyncio.create_task(pinger(dialect, [*subs, pub], 5.0))
    await asyncio.sleep(0.5)

    published = 0
    stalled = False
    probe = ServerProbe(spec.get("server_pid"))
    cost0 = None
    t_start = time.monotonic()
    t_warm = t_start + spec["warmup"]
    t_end = t_warm + spec["duration"]
    warm_total: int | None = None
    while True:
        now = time.monotonic()
        if warm_total is None and now >= t_warm:
            warm_total, t_warm = shared.total, now
            cost0 = probe.sample()
            shared.latencies_us.clear()
        if now >= t_end:
            break
        room = shared.total // n + window - published
        if room <= 0:
            shared.wake_at = (published - window + 1) * n
            shared.wake.clear()
            if shared.total >= shared.wake_at:
                continue
            try:
                await asyncio.wait_for(shared.wake.wait(), 5.0)
            except TimeoutError:
                stalled = True
                break
            continue
        k = min(room, 16)
        pub.write_raw(
            b"".join(dialect.publish_frame(channel, make_payload(size, published + j)) for j in range(k))
        )
        published += k
        await asyncio.sleep(0)
    t_stop = time.monotonic()
    end_total = shared.total
    cost = ServerProbe.cost(cost0, probe.sample(), end_total - (warm_total or 0))
    await drain(shared, published * n)
    keepalive.cancel()
    counts = [s.count for s in subs]
    received = sum(counts)
    result = {
        **cost,
        "deliveries_per_s": (end_total - (warm_total or 0)) / max(1e-9, t_stop - t_warm),
        "published": published,
        "expected": published * n,
        "received": received,
        "lost": published * n - received,
        "subs_short": sum(1 for c in counts if c < published),
        "duplicates": sum(max(0, c - published) for c in counts),
        "closed": shared.closed,
        "close_codes": dict(shared.close_codes),
        "stalled": stalled,
        "errors": errors.errors,
        "last_error": repr(errors.last) if errors.last is not None else None,
        "bytes_per_delivery": bytes_per_delivery(subs, received),
        "latency_ms": percentiles(shared.latencies_us),
    }
    for conn in [*subs, pub]:
        conn.close()
    return result


async def role_latency(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Open loop: publish `rate` messages/s at even spacing; every subscriber samples latency."""
    shared = Shared()
    n, channel, size, rate = spec["subs"], spec["channel"], spec["size"], spec["rate"]
    subs = await open_many(lambda i: dialect.subscriber(shared, channel, i), n)
    pub = await dialect.publisher(shared, 0)
    acks = AckTracker(dialect.decode if isinstance(dialect, Agentchat) else bytes)
    with_refs = isinstance(dialect, Agentchat) and not dialect.ephemeral
    pub.on_payload = (
        acks if with_refs else ErrorCounter(dialect.decode if isinstance(dialect, Agentchat) else bytes)
    )
    for sub in subs:
        sub.switch("sample")
    keepalive = asyncio.create_task(pinger(dialect, [*subs, pub], 5.0))
    await asyncio.sleep(0.5)

    interval_ns = int(1e9 / rate)
    total_s = spec["warmup"] + spec["duration"]
    count = int(total_s * rate)
    warm_count = int(spec["warmup"] * rate)
    probe = ServerProbe(spec.get("server_pid"))
    cost0 = None
    lag_us: list[int] = []
    t0_ns = time.monotonic_ns()
    warm_total = 0
    t_warm = time.monotonic()
    for i in range(count):
        due_ns = t0_ns + i * interval_ns
        delay = (due_ns - time.monotonic_ns()) / 1e9
        if delay > 0:
            await asyncio.sleep(delay)
        if i == warm_count:
            shared.latencies_us.clear()
            acks.ack_us.clear()
            lag_us.clear()
            warm_total = shared.total
            t_warm = time.monotonic()
            cost0 = probe.sample()
        ref = i + 1 if with_refs else None
        now_ns = time.monotonic_ns()
        lag_us.append(max(0, now_ns - due_ns) // 1000)
        if ref is not None:
            acks.sent_at[ref] = due_ns
        # Open loop: the payload carries the scheduled send time, so a late send counts as latency.
        pub.write_raw(dialect.publish_frame(channel, make_payload(size, i, due_ns), ref))
    t_stop = time.monotonic()
    end_total = shared.total
    await drain(shared, count * n)
    cost = ServerProbe.cost(cost0, probe.sample(), shared.total - warm_total)
    keepalive.cancel()
    counts = [s.count for s in subs]
    received = sum(counts)
    result = {
        **cost,
        "offered_per_s": rate * n,
        "measured_messages": count - warm_count,
        "deliveries_per_s": (end_total - warm_total) / max(1e-9, t_stop - t_warm),
        "published": count,
        "lost": count * n - received,
        "closed": shared.closed,
        "close_codes": dict(shared.close_codes),
        "publisher_lag_ms": percentiles(lag_us),
        "bytes_per_delivery": bytes_per_delivery(subs, received),
        "latency_ms": percentiles(shared.latencies_us),
        "ack_ms": percentiles(acks.ack_us) if with_refs else None,
        "refused": acks.refused,
    }
    for conn in [*subs, pub]:
        conn.close()
    return result


async def role_idle(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Memory: open `warm` connections, READY, then `n` more, READY; the orchestrator reads RSS between."""
    shared = Shared()
    channel = spec["channel"]
    t0 = time.monotonic()
    first = await open_many(lambda i: dialect.subscriber(shared, channel, i), spec["warm"])
    keepalive = asyncio.create_task(pinger(dialect, first, 5.0))
    for conn in first:
        conn.switch("count")
    await asyncio.sleep(1.0)
    emit("READY", {"phase": "warm", "connected": len(first)})
    await wait_line("GO")
    t1 = time.monotonic()
    more = await open_many(lambda i: dialect.subscriber(shared, channel, i), spec["n"], start=spec["warm"])
    connect_s = time.monotonic() - t1
    keepalive.cancel()
    conns = first + more
    for conn in more:
        conn.switch("count")
    keepalive = asyncio.create_task(pinger(dialect, conns, 5.0))
    await asyncio.sleep(2.0)
    emit("READY", {"phase": "full", "connected": len(conns) - shared.closed})
    await wait_line("GO")
    keepalive.cancel()
    for conn in conns:
        conn.close()
    return {
        "connected": len(more),
        "connect_s": connect_s,
        "closed_early": shared.closed,
        "t": time.monotonic() - t0,
    }


ROLES: dict[str, Callable[[Dialect, dict[str, Any]], Awaitable[dict[str, Any]]]] = {
    "fanout": role_fanout,
    "latency": role_latency,
    "idle": role_idle,
    "conns": roles_agentchat.role_conns,
    "stream_readers": roles_agentchat.role_stream_readers,
    "stream_writers": roles_agentchat.role_stream_writers,
    "durable": roles_agentchat.role_durable,
    "rooms": roles_rooms.role_rooms,
}


async def amain(spec: dict[str, Any]) -> None:
    dialect = DIALECTS[spec["dialect"]](spec["port"], spec.get("options", {}))
    role = ROLES[spec["role"]]
    try:
        result = await asyncio.wait_for(role(dialect, spec), spec.get("timeout", 300))
    except Exception as exc:
        result = {"failed": f"{type(exc).__name__}: {exc}"}
    result["loadgen_cpu_s"] = time.process_time()
    emit("RESULT", result)


def main() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = json.loads(sys.argv[1])
    import uvloop

    uvloop.run(amain(spec))


if __name__ == "__main__":
    main()
