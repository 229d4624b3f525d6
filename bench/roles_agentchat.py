"""Load-generator roles that speak only agentchat: many held connections, token streams, durable publish."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from bench.dialects import Agentchat, Dialect
from bench.loadkit import AckTracker, ServerProbe, emit, open_many, percentiles, pinger, wait_line
from bench.wsclient import MARK, MARK_FULL, Shared, WsClient, make_payload


async def read_expected() -> int:
    """The orchestrator's `STOP <expected chunks>` line (EOF or a bare STOP: expect nothing more)."""
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    parts = line.split()
    return int(parts[1]) if len(parts) == 2 and parts[0] == "STOP" else 0


async def role_conns(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Many connections held with heartbeats: count server heartbeats, closes, and ping round trips."""
    assert isinstance(dialect, Agentchat)
    shared = Shared()
    n, n_channels, hold, every = spec["n"], spec["channels"], spec["hold"], spec["ping_every"]
    heartbeats = [0]
    rtt_us: list[int] = []
    sent_at: dict[int, int] = {}
    # Longest silence from the server per connection during the hold (the protocol allows 2 x interval).
    last_rx: dict[int, float] = {}
    max_gap: dict[int, float] = {}
    holding = [False]

    def on_payload(conn: WsClient, opcode: int, payload: bytes) -> None:
        if holding[0]:
            now = time.monotonic()
            key = id(conn)
            gap = now - last_rx.get(key, now)
            if gap > max_gap.get(key, 0.0):
                max_gap[key] = gap
            last_rx[key] = now
        item = dialect.decode(payload)
        kind = item.get("type")
        if kind == "heartbeat":
            heartbeats[0] += 1
        elif kind == "ack":
            sent = sent_at.pop(item.get("ref", -1), None)
            if sent is not None:
                rtt_us.append((time.monotonic_ns() - sent) // 1000)

    live: list[WsClient] = []

    async def factory(i: int) -> WsClient:
        # Source addresses spread over 127.0.0.2-201, so ephemeral ports never run out.
        conn, replies = await dialect.connect(shared, f"c{i}", source=f"127.0.0.{2 + i % 200}")
        live.append(conn)
        await dialect.attach(conn, replies, f"room:conns-{i % n_channels}")
        conn.on_payload = on_payload
        return conn

    t0 = time.monotonic()
    # Connections opened early must stay alive while the rest are still connecting.
    keepalive = asyncio.create_task(pinger(dialect, live, every))
    conns = await open_many(factory, n)
    keepalive.cancel()
    connect_s = time.monotonic() - t0
    emit("READY", {"phase": "connected", "connected": n, "connect_s": connect_s})
    plain = dialect.encode({"type": "ping"})
    # Pings spread evenly over the interval; one connection in 20 asks for an ack to time a round trip.
    t_hold = time.monotonic()
    holding[0] = True
    for conn in conns:
        last_rx[id(conn)] = t_hold
    ref = 0
    slots = max(1, int(every / 0.05))
    tick = 0
    while time.monotonic() - t_hold < hold:
        await asyncio.sleep(0.05)
        for i in range(tick % slots, n, slots):
            conn = conns[i]
            if i % 20 == 0:
                ref += 1
                sent_at[ref] = time.monotonic_ns()
                conn.write_raw(dialect.encode({"type": "ping", "ref": ref}))
            else:
                conn.write_raw(plain)
        tick += 1
    holding[0] = False
    t_end = time.monotonic()
    gaps = sorted(max(max_gap.get(id(c), 0.0), t_end - last_rx[id(c)]) for c in conns)
    alive = sum(1 for c in conns if not c.closed)
    emit("READY", {"phase": "held", "alive": alive})
    await wait_line("GO")
    for conn in conns:
        conn.close()
    return {
        "connections": n,
        "connect_s": connect_s,
        "alive_after_hold": alive,
        "closed": shared.closed,
        "close_codes": dict(shared.close_codes),
        "heartbeats": heartbeats[0],
        "heartbeats_per_conn": heartbeats[0] / n,
        "ping_rtt_ms": percentiles(rtt_us),
        "max_silence_s": gaps[-1] if gaps else None,
        "p99_silence_s": gaps[int(0.99 * (len(gaps) - 1))] if gaps else None,
        "hold_s": hold,
    }


async def role_stream_readers(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Readers of stream chunks (or of the same load as ephemeral messages), full frame parsing."""
    assert isinstance(dialect, Agentchat)
    shared = Shared()
    chunks = [0]
    finals = [0]
    lat = shared.latencies_us

    def on_payload(conn: WsClient, opcode: int, payload: bytes) -> None:
        item = dialect.decode(payload)
        kind = item.get("type")
        text: Any = None
        if kind == "stream_chunk":
            text = item.get("d")
        elif kind == "message":
            if item.get("stream_id"):
                finals[0] += 1
                return
            text = item.get("data")
        if isinstance(text, str) and text.startswith(MARK.decode()):
            chunks[0] += 1
            lat.append((time.monotonic_ns() - int(text[len(MARK) : MARK_FULL])) // 1000)

    per, n_channels = spec["readers"], spec["channels"]

    async def factory(i: int) -> WsClient:
        conn, replies = await dialect.connect(shared, f"r{i}")
        await dialect.attach(conn, replies, f"room:stream-{i // per}")
        conn.on_payload = on_payload
        return conn

    conns = await open_many(factory, n_channels * per)
    keepalive = asyncio.create_task(pinger(dialect, conns, 5.0))
    emit("READY", {"readers": len(conns)})
    expected = await read_expected()
    # Late is not lost: wait for the expected chunks until nothing more arrives for 3 s.
    last, quiet_since = -1, time.monotonic()
    while chunks[0] < expected and time.monotonic() - quiet_since < 3.0:
        if chunks[0] != last:
            last, quiet_since = chunks[0], time.monotonic()
        await asyncio.sleep(0.05)
    keepalive.cancel()
    for conn in conns:
        conn.close()
    return {"chunks": chunks[0], "finals": finals[0], "closed": shared.closed, "latency_ms": percentiles(lat)}


async def role_stream_writers(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """One writer connection per channel; `stream` mode appends chunks, `ephemeral` mode publishes them."""
    assert isinstance(dialect, Agentchat)
    shared = Shared()
    n, rate, size, mode = spec["streams"], spec["tokens_per_s"], spec["size"], spec["mode"]
    acks = AckTracker(dialect.decode if isinstance(dialect, Agentchat) else bytes)
    conns: list[WsClient] = []
    stream_ids: list[str] = []
    for i in range(n):
        conn, replies = await dialect.connect(shared, f"w{i}")
        if mode == "stream":
            conn.write_raw(dialect.encode({"type": "stream_open", "ref": 1, "channel": f"room:stream-{i}"}))
            reply = await replies.until(lambda m: m.get("type") == "ack")
            stream_ids.append(reply["stream_id"])
        conn.on_payload = acks
        conns.append(conn)
    emit("READY", {"writers": n})
    await wait_line("GO")
    groups = 4
    tick_s = 1.0 / rate / groups
    ticks = int(spec["duration"] / tick_s)
    sent = 0
    t0 = time.monotonic()
    index = [0] * n
    for tick in range(ticks):
        delay = t0 + tick * tick_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for k in range(tick % groups, n, groups):
            text = make_payload(size, index[k])
            if mode == "stream":
                frame = {"type": "stream_append", "stream_id": stream_ids[k], "i": index[k], "d": text}
            else:
                frame = {"type": "publish", "channel": f"room:stream-{k}", "data": text, "ephemeral": True}
            conns[k].write_raw(dialect.encode(frame))
            index[k] += 1
            sent += 1
    elapsed = time.monotonic() - t0
    ended = 0
    if mode == "stream":
        for k, conn in enumerate(conns):
            ref = 1000 + k
            acks.sent_at[ref] = time.monotonic_ns()
            end = {"type": "stream_end", "ref": ref, "stream_id": stream_ids[k], "chunks": index[k]}
            conn.write_raw(dialect.encode(end))
        acks.drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acks.drained.wait(), 10)
        ended = acks.acked
    await asyncio.sleep(0.5)
    for conn in conns:
        conn.close()
    return {
        "sent": sent,
        "offered_chunks_per_s": sent / elapsed,
        "ended": ended,
        "refused": acks.refused,
        "last_refusal": repr(acks.last_refusal) if acks.last_refusal else None,
        "closed": shared.closed,
    }


async def role_durable(dialect: Dialect, spec: dict[str, Any]) -> dict[str, Any]:
    """Durable publish throughput: `conns` publishers, each keeping `window` publishes awaiting their ack."""
    assert isinstance(dialect, Agentchat)
    shared = Shared()
    n, window, size = spec["conns"], spec["window"], spec["size"]
    acks = AckTracker(dialect.decode if isinstance(dialect, Agentchat) else bytes)
    ref = [0]
    sending = [True]
    channels = spec["channels"]

    def send_one(conn: WsClient, idx: int) -> None:
        ref[0] += 1
        acks.sent_at[ref[0]] = time.monotonic_ns()
        conn.write_raw(
            dialect.publish_frame(f"room:durable-{idx % channels}", make_payload(size, ref[0]), ref[0])
        )

    conns = []
    for i in range(n):
        conn, _ = await dialect.connect(shared, f"p{i}")
        conns.append(conn)
    index_of = {id(c): i for i, c in enumerate(conns)}

    def on_ack(conn: WsClient) -> None:
        if sending[0]:
            send_one(conn, index_of[id(conn)])

    acks.on_ack = on_ack
    for conn in conns:
        conn.on_payload = acks
    t0 = time.monotonic()
    for i, conn in enumerate(conns):
        for _ in range(window):
            send_one(conn, i)
    probe = ServerProbe(spec.get("server_pid"))
    await asyncio.sleep(spec["warmup"])
    warm_acked, t_warm = acks.acked, time.monotonic()
    cost0 = probe.sample()
    acks.ack_us.clear()
    await asyncio.sleep(spec["duration"])
    end_acked, t_end = acks.acked, time.monotonic()
    cost = ServerProbe.cost(cost0, probe.sample(), end_acked - warm_acked)
    sending[0] = False
    if acks.sent_at:
        acks.drained.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(acks.drained.wait(), 10)
    for conn in conns:
        conn.close()
    return {
        **cost,
        "acks_per_s": (end_acked - warm_acked) / (t_end - t_warm),
        "acked": acks.acked,
        "unanswered": len(acks.sent_at),
        "refused": acks.refused,
        "last_refusal": repr(acks.last_refusal) if acks.last_refusal else None,
        "closed": shared.closed,
        "close_codes": dict(shared.close_codes),
        "ack_ms": percentiles(acks.ack_us),
        "t": time.monotonic() - t0,
    }
