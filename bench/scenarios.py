"""The scenarios of issue 9: each measures one target once and returns its figures as a dict."""

from __future__ import annotations

import asyncio
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
    fanout_duration: float = 5.0
    latency_rate: float = 20.0  # messages/s; x 1,000 subscribers = 20k deliveries/s
    latency_warmup: float = 1.0
    latency_duration: float = 10.0
    memory_warm: int = 100
    memory_n: int = 2000
    streams: int = 200
    stream_readers: int = 5
    tokens_per_s: float = 50.0
    stream_duration: float = 10.0
    stream_chunk: int = 40
    durable_conns: int = 20
    durable_window: int = 50
    durable_channels: int = 1
    durable_warmup: float = 1.0
    durable_duration: float = 5.0
    durable_latency_rate: float = 1000.0
    durable_latency_subs: int = 10
    durable_latency_duration: float = 10.0
    conns: int = 10_000
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
            latency_warmup=0.5,
            latency_duration=2.0,
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
    """Delivery latency percentiles at a fixed offered rate (20k deliveries/s to 1,000 subscribers)."""
    return await _one_channel(
        target,
        "latency",
        cfg,
        rate=cfg.latency_rate,
        warmup=cfg.latency_warmup,
        duration=cfg.latency_duration,
    )


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
    """Durable publish with ack after commit: acks/s with many in flight, then p99 at 1k msgs/s."""
    running = await start(target, db_url=db_url)
    try:
        throughput = await _measured(
            running,
            _spec(
                running,
                "durable",
                conns=cfg.durable_conns,
                window=cfg.durable_window,
                channels=cfg.durable_channels,
                size=cfg.size,
                warmup=cfg.durable_warmup,
                duration=cfg.durable_duration,
            ),
        )
        m = scrape(running.port)
        batches = metric(m, "agentchat_commit_batch_size_count")
        ops = metric(m, "agentchat_commit_batch_size_sum")
        throughput["mean_commit_batch"] = ops / batches if batches and ops is not None else None
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
        return {"throughput": throughput, "latency": lat}
    finally:
        stop(running)


async def connections(target: Target, cfg: Config) -> dict[str, Any]:
    """`conns` WebSocket connections held with heartbeats; steady means none closes and pings stay fast."""
    running = await start(target)
    try:
        spec = _spec(
            running,
            "conns",
            n=cfg.conns,
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
        )
        return result
    finally:
        stop(running)
