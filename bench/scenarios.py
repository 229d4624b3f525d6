"""The bench scenarios: each measures one target once and returns its figures as a dict."""

from __future__ import annotations

import asyncio
import resource
import time
from dataclasses import dataclass, field
from typing import Any

from bench.harness import LoadGen, metric, scrape, sqlite_rows
from bench.servers import Running, Target, machine_busy_seconds, start, stop


@dataclass
class Config:
    """Sizes and durations; `quick()` is the one-minute smoke version."""

    quick: bool = False
    runs: int = 3
    subs: int = 1000
    size: int = 100
    fanout_window: int = 64
    fanout_warmup: float = 1.0
    fanout_duration: float = 4.0
    # Latency: 250 messages/s to 100 subscribers (25k deliveries/s), 2,000 measured messages, 5 runs.
    latency_runs: int = 5
    latency_subs: int = 100
    latency_rate: float = 250.0
    latency_warmup: float = 0.5
    latency_duration: float = 8.0
    memory_warm: int = 100
    memory_n: int = 2000
    streams: int = 200
    stream_readers: int = 5
    tokens_per_s: float = 50.0
    stream_duration: float = 10.0
    stream_chunk: int = 40
    # Runs of the agentchat-only scenarios (durable, streams): each is long, and no peer shares them.
    own_runs: int = 2
    durable_conns: int = 20
    durable_window: int = 50
    durable_channels: int = 1
    durable_warmup: float = 1.0
    durable_duration: float = 5.0
    # Publishes kept in flight (one connection each up to 20 connections, then windows of in_flight/20).
    durable_in_flight: tuple[int, ...] = (1, 10, 100, 1000)
    durable_sweep_duration: float = 3.0
    durable_latency_rate: float = 1000.0
    durable_latency_subs: int = 10
    durable_latency_duration: float = 10.0
    # Many small rooms: open-loop sweep of offered messages/s, each step `rooms_step_s` long.
    rooms: int = 2000
    room_members: int = 5
    rooms_publishers: int = 20
    rooms_rates: tuple[int, ...] = (
        500,
        1000,
        2000,
        3000,
        4000,
        6000,
        8000,
        10000,
        13000,
        16000,
        20000,
        25000,
        32000,
    )
    # Idle members ping as the SDK does: after half the heartbeat interval (15 s) without sending.
    rooms_ping_every: float = 7.5
    rooms_step_s: float = 2.0
    rooms_p99_ms: float = 50.0
    conns: int = 100_000
    conns_channels: int = 100
    conns_hold: float = 30.0
    conns_heartbeat: float = 5.0
    notes: list[str] = field(default_factory=list)

    @classmethod
    def quick_config(cls) -> Config:
        return cls(
            quick=True,
            runs=1,
            fanout_warmup=0.5,
            fanout_duration=1.5,
            latency_runs=1,
            latency_warmup=0.5,
            latency_duration=2.0,
            durable_sweep_duration=1.0,
            rooms=200,
            rooms_step_s=1.0,
            rooms_rates=(1000, 4000, 8000, 16000, 32000),
            own_runs=1,
            memory_warm=50,
            memory_n=500,
            streams=50,
            stream_duration=2.0,
            durable_warmup=0.5,
            durable_duration=1.5,
            durable_latency_duration=2.0,
            conns=2000,
            conns_channels=20,
            conns_hold=5.0,
            conns_heartbeat=2.0,
        )


def _spec(running: Running, role: str, **params: Any) -> dict[str, Any]:
    return {
        "role": role,
        "dialect": running.target.dialect,
        "port": running.port,
        "options": running.target.options,
        "server_pid": running.pid,
        **params,
    }


async def _measured(running: Running, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one load generator to its result; adds the server's CPU use and RSS meanwhile."""
    cpu0, busy0, t0 = running.cpu_seconds(), machine_busy_seconds(), time.monotonic()
    async with LoadGen(spec) as load:
        result = await load.result()
    elapsed = time.monotonic() - t0
    server = running.cpu_seconds() - cpu0
    other = machine_busy_seconds() - busy0 - server - result.get("loadgen_cpu_s", 0.0)
    result["server_cpu_pct"] = 100 * server / elapsed
    # CPU used by processes outside the bench meanwhile (the machine may be shared): noise indicator.
    result["other_cpu_pct"] = max(0.0, 100 * other / elapsed)
    result["server_rss_mb"] = running.rss_kb() / 1024
    return result


async def _one_channel(target: Target, role: str, cfg: Config, **params: Any) -> dict[str, Any]:
    """A fresh server, `cfg.subs` subscribers of one channel and one publisher in `role`, measured."""
    running = await start(target)
    try:
        spec = _spec(running, role, subs=cfg.subs, channel="room:bench", size=cfg.size, **params)
        return await _measured(running, spec)
    finally:
        stop(running)


async def fanout(target: Target, cfg: Config) -> dict[str, Any]:
    """Max deliveries/s to `subs` subscribers of one channel, closed loop, no loss allowed."""
    return await _one_channel(
        target,
        "fanout",
        cfg,
        window=cfg.fanout_window,
        warmup=cfg.fanout_warmup,
        duration=cfg.fanout_duration,
    )


async def latency(target: Target, cfg: Config) -> dict[str, Any]:
    """Delivery latency percentiles at a fixed offered rate, open loop (scheduled send times)."""
    running = await start(target)
    try:
        spec = _spec(
            running,
            "latency",
            subs=cfg.latency_subs,
            channel="room:bench",
            size=cfg.size,
            rate=cfg.latency_rate,
            warmup=cfg.latency_warmup,
            duration=cfg.latency_duration,
        )
        return await _measured(running, spec)
    finally:
        stop(running)


async def rooms(target: Target, cfg: Config) -> dict[str, Any]:
    """Many small rooms: the open-loop rate sweep of bench/roles_rooms.py against one fresh server."""
    running = await start(target)
    try:
        spec = _spec(
            running,
            "rooms",
            rooms=cfg.rooms,
            members=cfg.room_members,
            publishers=cfg.rooms_publishers,
            size=cfg.size,
            rates=list(cfg.rooms_rates),
            step_s=cfg.rooms_step_s,
            p99_ms=cfg.rooms_p99_ms,
            ping_every=cfg.rooms_ping_every,
            timeout=900,
        )
        async with LoadGen(spec) as load:
            await load.ready(wait_s=600)
            result = await load.result(wait_s=900)
        result["server_rss_mb"] = running.rss_kb() / 1024
        return result
    finally:
        stop(running)


async def memory(target: Target, cfg: Config) -> dict[str, Any]:
    """Server RSS delta per idle connection (after the handshake and a channel join/attach)."""
    running = await start(target)
    try:
        spec = _spec(running, "idle", channel="room:bench", warm=cfg.memory_warm, n=cfg.memory_n)
        async with LoadGen(spec) as load:
            await load.ready()
            await asyncio.sleep(0.5)
            before = running.rss_kb()
            load.say("GO")
            full = await load.ready()
            after = running.rss_kb()
            load.say("GO")
            result = await load.result()
        result.update(
            rss_before_mb=before / 1024,
            rss_after_mb=after / 1024,
            kb_per_conn=(after - before) / cfg.memory_n,
            alive=full.get("connected"),
        )
        return result
    finally:
        stop(running)


async def streams(target: Target, cfg: Config, mode: str) -> dict[str, Any]:
    """Token streams (`stream`) or the same load as ephemeral messages (`ephemeral`); chunk latency."""
    running = await start(target)
    try:
        db = running.workdir / "bench.db"
        m0, rows0 = scrape(running.port), sqlite_rows(db)
        readers_spec = _spec(running, "stream_readers", channels=cfg.streams, readers=cfg.stream_readers)
        writers_spec = _spec(
            running,
            "stream_writers",
            streams=cfg.streams,
            tokens_per_s=cfg.tokens_per_s,
            size=cfg.stream_chunk,
            mode=mode,
            duration=cfg.stream_duration,
        )
        cpu0, t0 = running.cpu_seconds(), time.monotonic()
        async with LoadGen(readers_spec) as readers:
            await readers.ready()
            async with LoadGen(writers_spec) as writers:
                await writers.ready()
                w_m0, w_rows0 = scrape(running.port), sqlite_rows(db)
                cpu0, t0 = running.cpu_seconds(), time.monotonic()
                writers.say("GO")
                written = await writers.result()
            cpu_pct = 100 * (running.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            readers.say(f"STOP {written['sent'] * cfg.stream_readers}")
            read = await readers.result()
        m1, rows1 = scrape(running.port), sqlite_rows(db)
        n = cfg.streams
        writes_total = metric(m1, "agentchat_store_writes_total")
        writes_start = metric(m0, "agentchat_store_writes_total")
        writes_open = metric(w_m0, "agentchat_store_writes_total")
        rows_added = sum(rows1.values()) - sum(rows0.values())
        return {
            "mode": mode,
            "writers": written,
            "readers": read,
            "expected_chunks": written["sent"] * cfg.stream_readers,
            "lost": written["sent"] * cfg.stream_readers - read["chunks"],
            "latency_ms": read["latency_ms"],
            "store_writes_per_stream": (writes_total - writes_start) / n
            if writes_total is not None and writes_start is not None
            else None,
            "store_writes_after_open_per_stream": (writes_total - writes_open) / n
            if writes_total is not None and writes_open is not None
            else None,
            "rows_per_stream": rows_added / n,
            "rows_by_table": {t: rows1.get(t, 0) - rows0.get(t, 0) for t in rows1},
            "rows_after_open": sum(w_rows0.values()) - sum(rows0.values()),
            "server_cpu_pct": cpu_pct,
        }
    finally:
        stop(running)


async def durable(target: Target, cfg: Config, db_url: str | None = None) -> dict[str, Any]:
    """Durable publish with ack after commit: acks/s and ack latency at each in-flight count, then
    publish-to-delivery latency at a fixed 1k msgs/s."""
    running = await start(target, db_url=db_url)
    try:
        sweep = []
        for in_flight in cfg.durable_in_flight:
            conns = min(in_flight, cfg.durable_conns)
            window = max(1, in_flight // conns)
            m0 = scrape(running.port)
            step = await _measured(
                running,
                _spec(
                    running,
                    "durable",
                    conns=conns,
                    window=window,
                    channels=cfg.durable_channels,
                    size=cfg.size,
                    warmup=cfg.durable_warmup,
                    duration=cfg.durable_sweep_duration,
                ),
            )
            m1 = scrape(running.port)
            batches = _delta(m0, m1, "agentchat_commit_batch_size_count")
            ops = _delta(m0, m1, "agentchat_commit_batch_size_sum")
            step["mean_commit_batch"] = ops / batches if batches and ops is not None else None
            step["in_flight"] = conns * window
            sweep.append(step)
        lat = await _measured(
            running,
            _spec(
                running,
                "latency",
                subs=cfg.durable_latency_subs,
                channel="room:durable-latency",
                size=cfg.size,
                rate=cfg.durable_latency_rate,
                warmup=1.0,
                duration=cfg.durable_latency_duration,
            ),
        )
        return {"sweep": sweep, "throughput": sweep[-1], "latency": lat}
    finally:
        stop(running)


def _delta(m0: dict[str, float], m1: dict[str, float], name: str) -> float | None:
    a, b = metric(m0, name), metric(m1, name)
    return None if a is None or b is None else b - a


async def connections(target: Target, cfg: Config) -> dict[str, Any]:
    """`conns` WebSocket connections held with heartbeats; steady means none closes and pings stay fast."""
    # Each process (server and load generator) may open at most its hard RLIMIT_NOFILE files; the bench
    # raises the soft limit to it but cannot pass it without privileges, so it bounds the count.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    n = min(cfg.conns, hard - 500) if hard != resource.RLIM_INFINITY else cfg.conns
    running = await start(target)
    try:
        spec = _spec(
            running,
            "conns",
            n=n,
            channels=cfg.conns_channels,
            hold=cfg.conns_hold,
            ping_every=cfg.conns_heartbeat / 2,
            timeout=600,
        )
        base_rss = running.rss_kb()
        async with LoadGen(spec) as load:
            await load.ready(wait_s=600)
            rss_connected = running.rss_kb()
            cpu0, t0 = running.cpu_seconds(), time.monotonic()
            await load.ready(wait_s=600)
            cpu_pct = 100 * (running.cpu_seconds() - cpu0) / (time.monotonic() - t0)
            rss_held = running.rss_kb()
            load.say("GO")
            result = await load.result(wait_s=600)
        result.update(
            server_cpu_pct_hold=cpu_pct,
            rss_base_mb=base_rss / 1024,
            rss_connected_mb=rss_connected / 1024,
            rss_held_mb=rss_held / 1024,
            expected_heartbeats_per_conn=cfg.conns_hold / cfg.conns_heartbeat,
            heartbeat_interval=cfg.conns_heartbeat,
            requested=cfg.conns,
            fd_hard_limit=hard,
            kb_per_conn=(rss_held - base_rss) / n,
            mem_available_mb=_mem_available_mb(),
        )
        return result
    finally:
        stop(running)


def _mem_available_mb() -> float:
    """MemAvailable from /proc/meminfo, in MiB (what else bounds the connection count)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0
