"""Report sections for the scenarios that measure agentchat alone (memory, streams, durable publish,
held connections); bench/report.py holds the shared helpers and the comparisons with peers."""

from __future__ import annotations

from typing import Any

from bench.report import Report, _lat, _ok, fmt, fmt_ratio, med, ratios, values, verdict

Runs = list[dict[str, Any]]


def memory_section(rep: Report, res: dict[str, Runs], labels: dict[str, str], n: int) -> None:
    """RSS per idle connection per server, and its target against the one-write floor."""
    rows = ["| server | KB per idle connection | per run | RSS after (MB) |", "|---|---|---|---|"]
    for name, runs in res.items():
        per = ", ".join(fmt(v, 1) for v in values(runs, lambda r: r["kb_per_conn"]))
        rows.append(
            f"| {labels.get(name, name)} | {fmt(med(runs, lambda r: r['kb_per_conn']), 1)} | {per} | "
            f"{fmt(med(runs, lambda r: r['rss_after_mb']), 1)} |"
        )
    rep.add(
        f"## Memory per idle connection\n\nServer RSS growth divided by {n:,} connections opened after "
        "a warm-up, each joined to one channel.\n\n" + "\n".join(rows)
    )
    if "agentchat-ephemeral" in res:
        rs = ratios(res["agentchat-ephemeral"], res.get("floor-write", []), lambda r: r["kb_per_conn"])
        rep.target(
            "memory per idle connection vs the aiohttp one-write floor",
            "<= 1.2x",
            fmt_ratio(rs),
            verdict(rs, lambda m: m <= 1.2),
        )


def streams_section(rep: Report, res: dict[str, Runs], streams: int, readers: int, rate: float) -> None:
    """Token streams against the same chunks as ephemeral messages; Store writes per stream."""
    rows = [
        "| load | chunks sent/s | p50 | p99 | max | lost | Store writes per stream (metrics) "
        "| rows per stream | server CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        rows.append(
            f"| {name} | {fmt(med(runs, lambda r: r['writers']['offered_chunks_per_s']))} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p50')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p99')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'max')), 1, ' ms')} | "
            f"{fmt(sum(values(runs, lambda r: r['lost'])))} | "
            f"{fmt(med(runs, lambda r: r['store_writes_per_stream']), 2)} | "
            f"{fmt(med(runs, lambda r: r['rows_per_stream']), 2)} | "
            f"{fmt(med(runs, lambda r: r['server_cpu_pct']), 0, '%')} |"
        )
    rep.add(
        f"## Token streams: {streams} streams x {rate:.0f} tokens/s x {readers} readers\n\n"
        "The same chunks sent as stream appends (`streams`) and as ephemeral messages (`ephemeral`); "
        "latency is from the chunk's send time to its arrival at a reader.\n\n" + "\n".join(rows)
    )
    if "streams" in res and "ephemeral" in res:
        rs = ratios(res["streams"], res["ephemeral"], lambda r: _lat(r, "p99"))
        rep.target(
            "stream chunk p99 vs the same load as ephemeral messages",
            "<= 1.5x",
            fmt_ratio(rs),
            verdict(rs, lambda m: m <= 1.5),
        )
        writes = med(res["streams"], lambda r: r["store_writes_per_stream"])
        rows_ps = med(res["streams"], lambda r: r["rows_per_stream"])
        shown = writes if writes is not None else rows_ps
        rep.target(
            "Store writes per stream",
            "<= 2",
            f"{fmt(shown, 2)} (rows {fmt(rows_ps, 2)})",
            "not measured" if shown is None else ("pass" if shown <= 2 else "**miss**"),
        )


def durable_section(rep: Report, res: dict[str, Runs], rate: float) -> None:
    """Durable acks at each in-flight count per store, then latency at a fixed rate; targets."""
    rows = [
        "| store | publishes in flight | acks/s (median) | per run | ack p50 | ack p99 | mean commit batch "
        "| server CPU per ack |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        good = [r for r in runs if _ok(r)]
        steps = len(good[0]["sweep"]) if good else 0
        for k in range(steps):

            def step(r: dict[str, Any], k: int = k) -> dict[str, Any]:
                found: dict[str, Any] = r["sweep"][k]
                return found

            per = ", ".join(fmt(v) for v in values(runs, lambda r: step(r)["acks_per_s"]))
            rows.append(
                f"| {name} | {fmt(med(runs, lambda r: step(r)['in_flight']))} | "
                f"{fmt(med(runs, lambda r: step(r)['acks_per_s']))} | {per} | "
                f"{fmt(med(runs, lambda r: _lat(step(r), 'p50', 'ack_ms')), 1, ' ms')} | "
                f"{fmt(med(runs, lambda r: _lat(step(r), 'p99', 'ack_ms')), 1, ' ms')} | "
                f"{fmt(med(runs, lambda r: step(r)['mean_commit_batch']), 1)} | "
                f"{fmt(med(runs, lambda r: step(r)['cpu_us_per_delivery']), 0, ' us')} |"
            )
        acks = med(runs, lambda r: r["throughput"]["acks_per_s"])
        rep.target(
            f"durable publish with 1,000 in flight, ack after commit, {name}",
            ">= 10,000 msgs/s",
            fmt(acks),
            "not measured" if acks is None else ("pass" if acks >= 10_000 else "**miss**"),
        )
    lat_rows = [
        f"| store | publish-to-delivery p50 at {rate:,.0f} msgs/s | p99 | ack p50 | ack p99 | lost |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        p99 = med(runs, lambda r: _lat(r["latency"], "p99"))
        lat_rows.append(
            f"| {name} | {fmt(med(runs, lambda r: _lat(r['latency'], 'p50')), 1, ' ms')} | "
            f"{fmt(p99, 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r['latency'], 'p50', 'ack_ms')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r['latency'], 'p99', 'ack_ms')), 1, ' ms')} | "
            f"{fmt(sum(values(runs, lambda r: r['latency']['lost'])))} |"
        )
        rep.target(
            f"durable publish-to-delivery p99 at {rate:,.0f} msgs/s, {name}",
            "<= 20 ms",
            fmt(p99, 1, " ms"),
            "not measured" if p99 is None else ("pass" if p99 <= 20 else "**miss**"),
        )
    rep.add(
        "## Durable publish, ack after commit\n\n"
        "Publishers keep a fixed number of publishes awaiting their ack (1 connection x 1, 10 x 1, "
        "20 x 5, 20 x 50) and send the next as each ack arrives; an ack comes after the message is "
        "committed (SQLite WAL with synchronous=FULL, or PostgreSQL, each a throwaway database). Ack "
        "latency is from send to ack. 'Mean commit batch' is messages per group commit from the server's "
        "/metrics.\n\n" + "\n".join(rows) + "\n\nThen open loop at a fixed rate, 10 subscribers:\n\n"
        "" + "\n".join(lat_rows)
    )


def conns_section(rep: Report, runs: Runs, requested: int) -> None:
    """Held connections: count, heartbeats on time, memory and CPU, and what bounds the count."""
    rows = [
        "| connections | connect time | alive after hold | closes | heartbeats/conn | longest server silence "
        "(allowed) | ping RTT p99 | server CPU while held | server RSS held | KB per connection |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if not _ok(run):
            rows.append(f"| {requested:,} | error: {run['error'][:80]} | | | | | | | | |")
            continue
        rows.append(
            f"| {run['connections']:,} | {run['connect_s']:.1f} s | {run['alive_after_hold']:,} | "
            f"{run['closed']} | {run['heartbeats_per_conn']:.1f} | "
            f"{fmt(run.get('max_silence_s'), 1, ' s')} ({2 * run['heartbeat_interval']:.0f} s) | "
            f"{fmt(_lat(run, 'p99', 'ping_rtt_ms'), 1, ' ms')} | {run['server_cpu_pct_hold']:.0f}% | "
            f"{run['rss_held_mb']:.0f} MB | {fmt(run.get('kb_per_conn'), 1)} |"
        )
    good = [r for r in runs if _ok(r)]
    bound = ""
    if good and good[0]["connections"] < requested:
        r = good[0]
        bound = (
            f"\n\nThe goal is {requested:,} connections; this machine allows each process "
            f"{r['fd_hard_limit']:,} open files (hard RLIMIT_NOFILE, which a process without privileges "
            f"cannot raise), so one server process can hold at most about that many sockets and the bench "
            f"opens {r['connections']:,}. Memory was not the bound: {r['mem_available_mb'] / 1024:.1f} GiB "
            f"were available, and at {fmt(r.get('kb_per_conn'), 1)} KB per connection "
            f"{requested:,} connections would need about "
            f"{(r.get('kb_per_conn') or 0) * requested / 1024 / 1024:.1f} GiB."
        )
    rep.add(
        "## Held WebSocket connections with heartbeats\n\n"
        "One agentchat process; the load generator binds its sockets to source addresses 127.0.0.2-201 "
        "before connecting and raises its own open-file limit (`resource.setrlimit`, not the system "
        "configuration). Each connection joins one of 100 channels and pings every half heartbeat "
        "interval; the server sends a heartbeat when a connection has been silent for an interval. "
        "'On time' means every connection heard from the server at least once in every stretch of twice "
        "the interval (the protocol's limit). "
        "Server CPU while held is the cost of the heartbeats and pings; KB per connection is RSS growth "
        "divided by the connections." + bound + "\n\n" + "\n".join(rows)
    )
    steady = bool(good) and all(
        r["alive_after_hold"] == r["connections"]
        and r["heartbeats_per_conn"] > 0
        and (r.get("max_silence_s") or 0.0) <= 2 * r["heartbeat_interval"]
        for r in good
    )
    held = min((r["connections"] for r in good), default=0)
    measured = "; ".join(
        f"{r['alive_after_hold']:,}/{r['connections']:,} alive, longest silence "
        f"{fmt(r.get('max_silence_s'), 1, ' s')}"
        for r in good
    )
    result = "not measured" if not good else ("pass" if steady and held >= requested else "**miss**")
    if good and steady and held < requested:
        result += f" ({held / requested:.2f}x of the count: bounded by the open-file limit)"
    rep.target(
        f"{requested:,} connections with every heartbeat on time",
        "all alive, no silence over 2 x heartbeat interval",
        measured or "n/a",
        result,
    )
