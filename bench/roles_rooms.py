"""Load-generator role for many small rooms: `rooms` x `members` subscribers, an open-loop rate sweep.

Each step offers `rate` messages/s for `step_s` seconds at scheduled send times spread evenly over the
rooms; every payload carries its scheduled time (not the time it was sent), so a publisher that falls
behind shows as latency, not as a lower offered rate. The sweep stops at the first step that loses a
delivery or has p99 at or over `p99_ms` (a step over the bound that lost nothing is tried once more).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.dialects import Dialect
from bench.loadkit import ServerProbe, drain, emit, open_many, percentiles, pinger
from bench.wsclient import Shared, WsClient, make_payload


async def role_rooms(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Sweep offered rates over many small rooms; per step: latency, loss, lag, server cost."""
    shared = Shared()
    rooms, members = spec["rooms"], spec["members"]
    t0 = time.monotonic()
    subs = await open_many(lambda i: dialect.subscriber(shared, f"room:r{i // members}", i), rooms * members)
    pubs = await open_many(lambda i: dialect.publisher(shared, i), spec["publishers"])
    connect_s = time.monotonic() - t0
    # One member per room reads send times (latency); the others only count, which keeps the load
    # generator's cost per delivery low enough to offer the higher rates.
    for i, sub in enumerate(subs):
        sub.switch("sample" if i % members == 0 else "count")
    keepalive = asyncio.create_task(pinger(dialect, [*subs, *pubs], spec.get("ping_every", 5.0)))
    emit("READY", {"connected": len(subs) + len(pubs), "connect_s": connect_s})
    await asyncio.sleep(1.0)
    probe = ServerProbe(spec.get("server_pid"))
    steps: list[dict[str, Any]] = []
    best = 0.0
    for rate in spec["rates"]:
        step = await _step(dialect, shared, subs, pubs, spec, float(rate), probe)
        if not step["ok"] and step["lost"] == 0 and step["closed"] == 0:
            # A tail over the bound with nothing lost may be one stall: the step gets one more try.
            steps.append(step)
            step = await _step(dialect, shared, subs, pubs, spec, float(rate), probe)
            step["second_try"] = True
        steps.append(step)
        if not step["ok"]:
            break
        best = float(rate)
    keepalive.cancel()
    for conn in [*subs, *pubs]:
        conn.close()
    return {
        "rooms": rooms,
        "members": members,
        "connect_s": connect_s,
        "best_msgs_per_s": best,
        "best_deliveries_per_s": best * members,
        "steps": steps,
        "closed": shared.closed,
    }


async def _step(
    dialect: Dialect,
    shared: Shared,
    subs: list[WsClient],
    pubs: list[WsClient],
    spec: dict[str, Any],
    rate: float,
    probe: ServerProbe,
) -> dict[str, Any]:
    rooms, members, size, npub = spec["rooms"], spec["members"], spec["size"], len(pubs)
    count = max(1, int(rate * spec["step_s"]))
    interval_ns = int(1e9 / rate)
    shared.latencies_us.clear()
    base, closed0 = shared.total, shared.closed
    lag_us: list[int] = []
    before = probe.sample()
    cpu0, t_begin = time.process_time(), time.monotonic()
    start_ns = time.monotonic_ns() + 1_000_000
    sent = 0
    while sent < count:
        now = time.monotonic_ns()
        due = min(count, (now - start_ns) // interval_ns + 1)
        if due <= sent:
            # uvloop's timers count whole milliseconds: a shorter sleep would wake at once and spin.
            # Sleeping at least 1 ms sends what fell due meanwhile together; each message still
            # carries its own scheduled time, so the wait counts in its latency.
            await asyncio.sleep(max(0.001, (start_ns + sent * interval_ns - now) / 1e9))
            continue
        # Every message due by now goes out in this pass, one joined write per publisher connection.
        batches: dict[int, list[bytes]] = {}
        for i in range(sent, due):
            room = i % rooms
            scheduled = start_ns + i * interval_ns
            lag_us.append((now - scheduled) // 1000)
            frame = dialect.publish_frame(f"room:r{room}", make_payload(size, i, scheduled))
            batches.setdefault(room % npub, []).append(frame)
        for k, frames in batches.items():
            pubs[k].write_raw(b"".join(frames))
        sent = due
        await asyncio.sleep(0)
    send_s = (time.monotonic_ns() - start_ns) / 1e9
    expected = count * members
    await drain(shared, base + expected, idle_timeout=2.0, max_wait=15.0)
    after = probe.sample()
    received = shared.total - base
    lat = percentiles(shared.latencies_us)
    lost = expected - received
    closes = shared.closed - closed0
    p99 = lat.get("p99")
    ok = lost <= 0 and closes == 0 and p99 is not None and p99 < spec["p99_ms"]
    return {
        "rate_msgs_per_s": rate,
        "offered_deliveries_per_s": rate * members,
        "messages": count,
        "expected": expected,
        "received": received,
        "lost": max(0, lost),
        "duplicates": max(0, -lost),
        "closed": closes,
        "latency_ms": lat,
        "publisher_lag_ms": percentiles(lag_us),
        "send_s": send_s,
        "loadgen_cpu_pct": 100 * (time.process_time() - cpu0) / max(1e-9, time.monotonic() - t_begin),
        "ok": ok,
        **ServerProbe.cost(before, after, received),
    }
