"""Turns one bench invocation's raw results into docs/performance.md: medians, per-run ratios, targets."""

from __future__ import annotations

import functools
import operator
import statistics
from collections.abc import Callable
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]
Getter = Callable[[dict[str, Any]], float | None]


def _ok(run: dict[str, Any]) -> bool:
    return "error" not in run


def values(runs: list[dict[str, Any]], get: Getter) -> list[float]:
    out = []
    for run in runs:
        if not _ok(run):
            continue
        try:
            v = get(run)
        except (KeyError, TypeError):
            v = None
        if v is not None:
            out.append(float(v))
    return out


def med(runs: list[dict[str, Any]], get: Getter) -> float | None:
    vals = values(runs, get)
    return statistics.median(vals) if vals else None


def ratios(ours: list[dict[str, Any]], peer: list[dict[str, Any]], get: Getter) -> list[float]:
    """ours/peer for each run index where both were measured (same run, same machine state)."""
    out = []
    for a, b in zip(ours, peer, strict=False):
        va = values([a], get)
        vb = values([b], get)
        if va and vb and vb[0]:
            out.append(va[0] / vb[0])
    return out


def fmt(v: float | None, digits: int = 0, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if digits == 0 and abs(v) >= 1000:
        return f"{v:,.0f}{unit}"
    return f"{v:.{digits}f}{unit}"


def fmt_ratio(rs: list[float], digits: int = 2) -> str:
    if not rs:
        return "n/a"
    per = ", ".join(f"{r:.{digits}f}" for r in rs)
    return f"**{statistics.median(rs):.{digits}f}x** ({per})"


def verdict(rs: list[float], ok: Callable[[float], bool], extra_ok: bool = True) -> str:
    if not rs:
        return "not measured"
    return "pass" if ok(statistics.median(rs)) and extra_ok else "**miss**"


def errors_of(results: Results) -> list[str]:
    lines = []
    for scenario, per_target in results.items():
        for target, runs in per_target.items():
            for i, run in enumerate(runs):
                if not _ok(run):
                    lines.append(f"- {scenario} / {target} / run {i + 1}: {run['error']}")
    return lines


class Report:
    """Accumulates markdown sections and the targets table."""

    def __init__(self) -> None:
        self.sections: list[str] = []
        self.targets: list[tuple[str, str, str, str]] = []

    def target(self, what: str, goal: str, measured: str, result: str) -> None:
        self.targets.append((what, goal, measured, result))

    def add(self, text: str) -> None:
        self.sections.append(text)


def _lat(run: dict[str, Any], key: str, field: str = "latency_ms") -> float | None:
    block = run.get(field) or {}
    value = block.get(key)
    return float(value) if value is not None else None


def fanout_section(rep: Report, res: dict[str, list[dict[str, Any]]], labels: dict[str, str]) -> None:
    rows = [
        "| server | deliveries/s (median) | per run | lost | p99 at saturation | bytes/delivery | server CPU "
        "| other load |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        per = ", ".join(fmt(v) for v in values(runs, lambda r: r["deliveries_per_s"]))
        lost = sum(values(runs, lambda r: r["lost"]))
        rows.append(
            f"| {labels.get(name, name)} | {fmt(med(runs, lambda r: r['deliveries_per_s']))} | {per} | "
            f"{fmt(lost)} | {fmt(med(runs, lambda r: _lat(r, 'p99')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: r['bytes_per_delivery']))} | "
            f"{fmt(med(runs, lambda r: r['server_cpu_pct']), 0, '%')} | "
            f"{fmt(med(runs, lambda r: r['other_cpu_pct']), 0, '%')} |"
        )
    rep.add(
        "## Fan-out: max deliveries/s, 1,000 subscribers, one channel, 100-byte messages\n\n"
        + "\n".join(rows)
    )
    get: Getter = lambda r: r["deliveries_per_s"]  # noqa: E731
    lines = [
        "| lane | vs coalesced floor (>= 0.7) | vs python-socketio (>= 25) | vs Node socket.io (>= 4) |",
        "|---|---|---|---|",
    ]
    for ours, lane in (("agentchat-ephemeral", "ephemeral"), ("agentchat-durable", "durable (after commit)")):
        if ours not in res:
            continue
        lost = sum(values(res[ours], lambda r: r["lost"]))
        no_loss = lost == 0 and all(_ok(r) for r in res[ours])
        cells = []
        for peer, goal in (("floor-coalesce", 0.7), ("python-socketio", 25.0), ("node-socket.io", 4.0)):
            rs = ratios(res[ours], res.get(peer, []), get)
            cells.append(fmt_ratio(rs))
            rep.target(
                f"fan-out {lane} vs {peer}",
                f">= {goal}x, no loss",
                f"{fmt_ratio(rs)}, lost {fmt(lost)}",
                verdict(rs, functools.partial(operator.le, goal), no_loss),
            )
        lines.append(f"| {lane} | " + " | ".join(cells) + " |")
    rep.add("Ratios of agentchat's deliveries/s to each peer, per run (median first):\n\n" + "\n".join(lines))


def latency_section(
    rep: Report, res: dict[str, list[dict[str, Any]]], labels: dict[str, str], offered: float
) -> None:
    rows = [
        "| server | delivered/s | p50 | p99 | p99.9 | max | lost | state | other load |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        delivered = med(runs, lambda r: r["deliveries_per_s"])
        lost = sum(values(runs, lambda r: r["lost"]))
        saturated = delivered is not None and delivered < 0.95 * offered
        rows.append(
            f"| {labels.get(name, name)} | {fmt(delivered)} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p50')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p99')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p999')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'max')), 1, ' ms')} | {fmt(lost)} | "
            f"{'saturated' if saturated else 'keeps up'} | "
            f"{fmt(med(runs, lambda r: r['other_cpu_pct']), 0, '%')} |"
        )
    rep.add(
        f"## Latency at {offered:,.0f} deliveries/s (1,000 subscribers), publish to delivery\n\n"
        + "\n".join(rows)
    )
    get: Getter = lambda r: _lat(r, "p99")  # noqa: E731
    for ours, lane in (("agentchat-ephemeral", "ephemeral"), ("agentchat-durable", "durable")):
        if ours in res:
            rs = ratios(res[ours], res.get("floor-write", []), get)
            rep.target(
                f"p99 at 20k deliveries/s, {lane} lane, vs one-write floor",
                "<= 1.3x",
                fmt_ratio(rs),
                verdict(rs, lambda m: m <= 1.3),
            )


def memory_section(rep: Report, res: dict[str, list[dict[str, Any]]], labels: dict[str, str], n: int) -> None:
    rows = ["| server | KB per idle connection | per run | RSS after (MB) |", "|---|---|---|---|"]
    for name, runs in res.items():
        per = ", ".join(fmt(v, 1) for v in values(runs, lambda r: r["kb_per_conn"]))
        rows.append(
            f"| {labels.get(name, name)} | {fmt(med(runs, lambda r: r['kb_per_conn']), 1)} | {per} | "
            f"{fmt(med(runs, lambda r: r['rss_after_mb']), 1)} |"
        )
    rep.add(
        f"## Memory per idle connection (server RSS delta / {n:,} connections, joined to a channel)\n\n"
        + "\n".join(rows)
    )
    if "agentchat-ephemeral" in res:
        rs = ratios(res["agentchat-ephemeral"], res.get("floor-write", []), lambda r: r["kb_per_conn"])
        rep.target(
            "memory per idle connection vs raw aiohttp",
            "<= 1.2x",
            fmt_ratio(rs),
            verdict(rs, lambda m: m <= 1.2),
        )


def streams_section(
    rep: Report, res: dict[str, list[dict[str, Any]]], streams: int, readers: int, rate: float
) -> None:
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
        f"## Token streams: {streams} streams x {rate:.0f} tokens/s x {readers} readers\n\n" + "\n".join(rows)
    )
    if "streams" in res and "ephemeral" in res:
        rs = ratios(res["streams"], res["ephemeral"], lambda r: _lat(r, "p99"))
        rep.target(
            "stream chunk p99 vs same load as ephemeral messages",
            "<= 1.5x",
            fmt_ratio(rs),
            verdict(rs, lambda m: m <= 1.5),
        )
        writes = med(res["streams"], lambda r: r["store_writes_per_stream"])
        rows_ps = med(res["streams"], lambda r: r["rows_per_stream"])
        shown = writes if writes is not None else rows_ps
        source = "metrics" if writes is not None else "rows"
        rep.target(
            "Store writes per stream",
            "<= 2",
            f"{fmt(shown, 2)} ({source}; rows {fmt(rows_ps, 2)})",
            "not measured" if shown is None else ("pass" if shown <= 2 else "**miss**"),
        )


def durable_section(rep: Report, res: dict[str, list[dict[str, Any]]], rate: float) -> None:
    rows = [
        "| store | acks/s (median) | per run | ack p50 | ack p99 | mean commit batch | "
        f"p50 publish-to-delivery at {rate:,.0f}/s | p99 | ack p99 at {rate:,.0f}/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        per = ", ".join(fmt(v) for v in values(runs, lambda r: r["throughput"]["acks_per_s"]))
        rows.append(
            f"| {name} | {fmt(med(runs, lambda r: r['throughput']['acks_per_s']))} | {per} | "
            f"{fmt(med(runs, lambda r: _lat(r['throughput'], 'p50', 'ack_ms')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r['throughput'], 'p99', 'ack_ms')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: r['throughput']['mean_commit_batch']), 1)} | "
            f"{fmt(med(runs, lambda r: _lat(r['latency'], 'p50')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r['latency'], 'p99')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r['latency'], 'p99', 'ack_ms')), 1, ' ms')} |"
        )
        acks = med(runs, lambda r: r["throughput"]["acks_per_s"])
        p99 = med(runs, lambda r: _lat(r["latency"], "p99"))
        rep.target(
            f"durable publish, ack after commit, {name}",
            ">= 10,000 msgs/s",
            fmt(acks),
            "not measured" if acks is None else ("pass" if acks >= 10_000 else "**miss**"),
        )
        rep.target(
            f"publish-to-delivery p99 at 1k msgs/s, {name}",
            "<= 20 ms",
            fmt(p99, 1, " ms"),
            "not measured" if p99 is None else ("pass" if p99 <= 20 else "**miss**"),
        )
    rep.add("## Durable publish, ack after commit\n\n" + "\n".join(rows))


def conns_section(rep: Report, runs: list[dict[str, Any]], n: int) -> None:
    rows = [
        "| connections | connect time | alive after hold | closes | heartbeats/conn | longest server silence "
        "(allowed) | ping RTT p99 | server CPU while held | server RSS held |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        if not _ok(run):
            rows.append(f"| {n:,} | error: {run['error'][:80]} | | | | | | | |")
            continue
        rows.append(
            f"| {run['connections']:,} | {run['connect_s']:.1f} s | {run['alive_after_hold']:,} | "
            f"{run['closed']} | "
            f"{run['heartbeats_per_conn']:.1f} | {fmt(run.get('max_silence_s'), 1, ' s')} "
            f"({2 * run['heartbeat_interval']:.0f} s) | "
            f"{fmt(_lat(run, 'p99', 'ping_rtt_ms'), 1, ' ms')} | {run['server_cpu_pct_hold']:.0f}% | "
            f"{run['rss_held_mb']:.0f} MB |"
        )
    rep.add(f"## {n:,} concurrent WebSocket connections with heartbeats\n\n" + "\n".join(rows))
    good = [r for r in runs if _ok(r)]
    # Steady: nobody dropped, and no connection heard nothing for longer than the protocol allows.
    steady = bool(good) and all(
        r["alive_after_hold"] == r["connections"]
        and r["heartbeats_per_conn"] > 0
        and (r.get("max_silence_s") or 0.0) <= 2 * r["heartbeat_interval"]
        for r in good
    )
    measured = "; ".join(
        f"{r['alive_after_hold']:,}/{r['connections']:,} alive, "
        f"longest silence {fmt(r.get('max_silence_s'), 1, ' s')}"
        for r in good
    )
    rep.target(
        f"{n:,} connections with heartbeats, steady",
        "all alive, no silence over 2 x heartbeat interval",
        measured or "n/a",
        "not measured" if not good else ("pass" if steady else "**miss**"),
    )
