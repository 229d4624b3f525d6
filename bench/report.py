"""Turns one bench invocation's raw results into docs/performance.md: the comparisons with peers (hot
channel, many small rooms, latency, the C write() reference), medians, per-run ratios, targets."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

Results = dict[str, dict[str, list[dict[str, Any]]]]
Runs = list[dict[str, Any]]
Getter = Callable[[dict[str, Any]], float | None]

# How each server batches its writes, said once for every table.
BATCHING = {
    "floor-tick": "a room's frames of one loop tick joined once; one write of them per subscriber",
    "floor-coalesce": "frame built once; each subscriber's frames of one tick joined, one write each",
    "floor-write": "none: one aiohttp send_bytes (one write) per subscriber per message",
    "python-socketio": "none: one send per subscriber per message",
    "node-socket.io": "none: one write per subscriber per message",
    "redis": "replies buffered per client, written once per event-loop pass",
    "agentchat-ephemeral": "a channel's frames of one loop tick joined once per format; one write per reader",
    "agentchat-ephemeral-json": "as above, JSON text frames",
    "agentchat-durable": "as above, per group commit",
}


def _ok(run: dict[str, Any]) -> bool:
    return "error" not in run


def values(runs: Runs, get: Getter) -> list[float]:
    out = []
    for run in runs:
        if not _ok(run):
            continue
        try:
            v = get(run)
        except (KeyError, TypeError, IndexError):
            v = None
        if v is not None:
            out.append(float(v))
    return out


def med(runs: Runs, get: Getter) -> float | None:
    vals = values(runs, get)
    return statistics.median(vals) if vals else None


def ratios(ours: Runs, peer: Runs, get: Getter) -> list[float]:
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


def shortfall(rs: list[float], goal: float, higher_is_better: bool = True) -> str:
    """'pass', or '**miss**' with how far the median is from the goal."""
    if not rs:
        return "not measured"
    m = statistics.median(rs)
    if (m >= goal) if higher_is_better else (m <= goal):
        return "pass"
    off = (goal / m if higher_is_better else m / goal) if m else float("inf")
    return f"**miss** (by {off:.2f}x)"


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


def _spread(runs: Runs, get: Getter, digits: int = 1) -> str:
    vals = values(runs, get)
    if not vals:
        return "n/a"
    if len(vals) == 1:
        return fmt(vals[0], digits)
    return f"{fmt(statistics.median(vals), digits)} ({fmt(min(vals), digits)}-{fmt(max(vals), digits)})"


def cwrite_section(rep: Report, runs: Runs) -> float | None:
    """The C write() reference; returns its median CPU us per write."""
    us = med(runs, lambda r: r["cpu_us_per_write"])
    good = [r for r in runs if _ok(r)]
    shape = f"{good[0]['sockets']:,} sockets, {good[0]['frame_bytes']}-byte frames" if good else ""
    rep.add(
        "## The physical reference: C write() on loopback\n\n"
        "`bench/peers/cwrite.c`, compiled with gcc -O2 at bench time and pinned to the server CPU, "
        f"writes one frame per write() to each of N loopback TCP sockets ({shape}), in rounds; only the "
        "write calls are timed (process CPU time), the other ends are drained between rounds. A "
        "loopback write also pays for delivering the bytes to the receiving socket, so this is about "
        "the least CPU one delivery can cost on this machine when each delivery is its own write.\n\n"
        f"CPU per write: **{fmt(us, 2)} us** (per run: "
        f"{', '.join(fmt(v, 2) for v in values(runs, lambda r: r['cpu_us_per_write']))}); wall time per "
        f"write {fmt(med(runs, lambda r: r['wall_us_per_write']), 2)} us."
    )
    return us


def fanout_section(rep: Report, res: dict[str, Runs], labels: dict[str, str]) -> None:
    """Hot channel table (rate and cost per server, with its batching) and agentchat's ratios."""
    rows = [
        "| server | batching | deliveries/s (median) | per run | lost | bytes/delivery | CPU us/delivery "
        "| deliveries/write | server CPU | other load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        per = ", ".join(fmt(v) for v in values(runs, lambda r: r["deliveries_per_s"]))
        lost = sum(values(runs, lambda r: r["lost"]))
        rows.append(
            f"| {labels.get(name, name)} | {BATCHING.get(name, '')} | "
            f"{fmt(med(runs, lambda r: r['deliveries_per_s']))} | {per} | {fmt(lost)} | "
            f"{fmt(med(runs, lambda r: r['bytes_per_delivery']))} | "
            f"{fmt(med(runs, lambda r: r['cpu_us_per_delivery']), 2)} | "
            f"{fmt(med(runs, lambda r: r['deliveries_per_write']), 1)} | "
            f"{fmt(med(runs, lambda r: r['server_cpu_pct']), 0, '%')} | "
            f"{fmt(med(runs, lambda r: r['other_cpu_pct']), 0, '%')} |"
        )
    rep.add(
        "## Hot channel: max deliveries/s, 1,000 subscribers of one channel, 100-byte messages\n\n"
        "Closed loop: one publisher keeps at most 64 messages not yet delivered to every subscriber, so "
        "the rate is what the server sustains with no loss. Each server gets one core; CPU us/delivery is "
        "the server process's user+system CPU time (`/proc/PID/stat`) over the measured window divided by "
        "the deliveries counted in it; deliveries/write divides them by the server's write-type system "
        "calls in the window (`syscw` in `/proc/PID/io`: write and writev, which uvloop, libuv and Redis "
        "use for sockets; a server's file writes count too).\n\n" + "\n".join(rows)
    )
    get: Getter = lambda r: r["deliveries_per_s"]  # noqa: E731
    peers = [
        p for p in ("floor-tick", "floor-coalesce", "redis", "node-socket.io", "python-socketio") if p in res
    ]
    lines = ["| lane | " + " | ".join(f"vs {p}" for p in peers) + " |", "|---" * (len(peers) + 1) + "|"]
    for ours in ("agentchat-ephemeral", "agentchat-ephemeral-json", "agentchat-durable"):
        if ours not in res:
            continue
        lines.append(
            f"| {ours} | " + " | ".join(fmt_ratio(ratios(res[ours], res[p], get)) for p in peers) + " |"
        )
        if "floor-tick" in res:
            rs = ratios(res[ours], res["floor-tick"], get)
            lost = sum(values(res[ours], lambda r: r["lost"]))
            result = shortfall(rs, 0.9)
            if lost:
                result = f"**miss** (lost {fmt(lost)})"
            rep.target(
                f"hot channel, {ours}, vs the per-tick floor", ">= 0.9x, no loss", fmt_ratio(rs), result
            )
    rep.add(
        "Ratios of agentchat's deliveries/s to each peer's, per run (median first):\n\n" + "\n".join(lines)
    )


def latency_section(
    rep: Report, res: dict[str, Runs], labels: dict[str, str], offered: float, subs: int
) -> None:
    """Open-loop latency per server: p50, p99 with its spread over runs, publisher lag, cost."""
    rows = [
        "| server | runs | delivered/s | p50 | p99: median (min-max) | p99.9 | max | publisher lag p99 "
        "| lag max | lost | CPU us/delivery | other load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        lag_max = values(runs, lambda r: _lat(r, "max", "publisher_lag_ms"))
        rows.append(
            f"| {labels.get(name, name)} | {len(values(runs, lambda r: r['deliveries_per_s']))} | "
            f"{fmt(med(runs, lambda r: r['deliveries_per_s']))} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p50')), 1, ' ms')} | "
            f"{_spread(runs, lambda r: _lat(r, 'p99'))} ms | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p999')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'max')), 1, ' ms')} | "
            f"{fmt(med(runs, lambda r: _lat(r, 'p99', 'publisher_lag_ms')), 2, ' ms')} | "
            f"{fmt(max(lag_max, default=None), 1, ' ms')} | "
            f"{fmt(sum(values(runs, lambda r: r['lost'])))} | "
            f"{fmt(med(runs, lambda r: r['cpu_us_per_delivery']), 1)} | "
            f"{fmt(med(runs, lambda r: r['other_cpu_pct']), 0, '%')} |"
        )
    msgs = [int(v) for v in values(next(iter(res.values()), []), lambda r: r["measured_messages"])]
    rep.add(
        f"## Latency at {offered:,.0f} deliveries/s ({subs} subscribers of one channel)\n\n"
        "Open loop: the publisher sends at evenly spaced scheduled times and each payload carries its "
        "scheduled time, not the time it was actually sent, so a publisher that falls behind (publisher "
        "lag, shown) counts against latency instead of hiding it. Latency is from the scheduled time to "
        f"arrival at each subscriber; {msgs[0] if msgs else 'n/a'} measured messages per run after a "
        "warm-up; p99 shows the median over runs and the lowest and highest run.\n\n" + "\n".join(rows)
    )
    base = res.get("floor-tick", [])
    for ours in ("agentchat-ephemeral", "agentchat-ephemeral-json", "agentchat-durable"):
        if ours in res and base:
            rs = ratios(res[ours], base, lambda r: _lat(r, "p99"))
            rep.target(
                f"latency p99, {ours}, vs the per-tick floor (reported, no goal)", "-", fmt_ratio(rs), "-"
            )


def _best_step(run: dict[str, Any]) -> dict[str, Any] | None:
    good = [s for s in run.get("steps", []) if s.get("ok")]
    return good[-1] if good else None


def _step_at(run: dict[str, Any], rate: float) -> dict[str, Any] | None:
    """The step at `rate` (its second try when it had one), None when the sweep did not reach it."""
    found = [s for s in run.get("steps", []) if s.get("rate_msgs_per_s") == rate]
    return found[-1] if found else None


def _common_rate(a: dict[str, Any], b: dict[str, Any]) -> float | None:
    """The highest rate both sweeps kept, else the lowest rate both ran: a load to compare costs at."""
    kept = {s["rate_msgs_per_s"] for s in a.get("steps", []) if s.get("ok")} & {
        s["rate_msgs_per_s"] for s in b.get("steps", []) if s.get("ok")
    }
    if kept:
        return max(kept)
    ran = {s["rate_msgs_per_s"] for s in a.get("steps", [])} & {
        s["rate_msgs_per_s"] for s in b.get("steps", [])
    }
    return min(ran) if ran else None


def _cost_step(run: dict[str, Any]) -> dict[str, Any] | None:
    """The step whose server cost is reported: the highest kept, else the first (no step kept)."""
    steps = run.get("steps", [])
    return _best_step(run) or (steps[0] if steps else None)


def _failed_step(run: dict[str, Any]) -> dict[str, Any] | None:
    steps = run.get("steps", [])
    return steps[-1] if steps and not steps[-1].get("ok") else None


def rooms_section(
    rep: Report, res: dict[str, Runs], labels: dict[str, str], cfg: Any, c_us: float | None
) -> None:
    """Many-small-rooms sweep per server, and the rooms targets (vs Node socket.io, vs C write())."""
    rows = [
        "| server | highest rate kept (msgs/s) | deliveries/s | p99 there | CPU us/delivery there* "
        "| deliveries/write* | publisher lag p99 | load generator CPU | next step: rate, p99, lost |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, runs in res.items():
        run = runs[0] if runs else {}
        if not _ok(run):
            rows.append(
                f"| {labels.get(name, name)} | error: {run.get('error', 'none')[:80]} | | | | | | | |"
            )
            continue
        best, failed, costed = _best_step(run), _failed_step(run), _cost_step(run) or {}
        nxt = "none (top of sweep)"
        if failed is not None:
            nxt = (
                f"{fmt(failed['rate_msgs_per_s'])}: {fmt(_lat(failed, 'p99'), 1, ' ms')}, "
                f"lost {fmt(failed['lost'])}"
            )
        b = best or {}
        rows.append(
            f"| {labels.get(name, name)} | {fmt(run.get('best_msgs_per_s'))} | "
            f"{fmt(run.get('best_deliveries_per_s'))} | {fmt(_lat(b, 'p99'), 1, ' ms')} | "
            f"{fmt(costed.get('cpu_us_per_delivery'), 1)} | {fmt(costed.get('deliveries_per_write'), 2)} | "
            f"{fmt(_lat(b, 'p99', 'publisher_lag_ms'), 1, ' ms')} | "
            f"{fmt(b.get('loadgen_cpu_pct'), 0, '%')} | "
            f"{nxt} |"
        )
    rates = ", ".join(fmt(r) for r in cfg.rooms_rates)
    rep.add(
        f"## Many small rooms: {cfg.rooms:,} rooms x {cfg.room_members} members\n\n"
        f"{cfg.rooms * cfg.room_members:,} subscriber connections, {cfg.room_members} per room, and "
        f"{cfg.rooms_publishers} publisher connections; each message goes to one room (rooms in turn), so "
        f"it makes {cfg.room_members} deliveries and a server can join little per tick. Open-loop sweep: "
        f"each step offers a rate in messages/s ({rates}) for {cfg.rooms_step_s:.0f} s at scheduled "
        "send times, payloads carrying the scheduled time; the sweep stops at the first step with a lost "
        f"delivery or p99 at or over {cfg.rooms_p99_ms:.0f} ms (a step whose tail was over with nothing "
        "lost is tried once more first, so one stall does not end the sweep). 'Highest rate kept' is the "
        "last step that passed. The load generator has one core too: when its CPU nears 100% the step "
        "measures the load generator as much as the server, and CPU us/delivery (the server's own cost, from "
        "/proc) is the figure to compare then. *At the highest rate kept, or at the first step when "
        "none was kept.\n\n" + "\n".join(rows)
    )
    rep.add(_rooms_cost_table(res, labels, cfg))
    ours, node = res.get("agentchat-ephemeral", []), res.get("node-socket.io", [])
    if ours and node:
        rs = ratios(ours, node, lambda r: r.get("best_msgs_per_s") or None)
        rep.target(
            "many small rooms, highest rate kept, agentchat vs Node socket.io",
            ">= 2x",
            fmt_ratio(rs),
            shortfall(rs, 2.0),
        )
        a, b = ours[0], node[0]
        rate = _common_rate(a, b) if _ok(a) and _ok(b) else None
        sa, sb = (_step_at(a, rate), _step_at(b, rate)) if rate is not None else (None, None)
        ca, cb = (sa or {}).get("cpu_us_per_delivery"), (sb or {}).get("cpu_us_per_delivery")
        measured = "n/a"
        if ca and cb:
            measured = f"**{cb / ca:.2f}x** at {fmt(rate)} msgs/s ({fmt(cb, 1)} us vs {fmt(ca, 1)} us)"
        rep.target(
            "many small rooms, Node's CPU per delivery / agentchat's at the same offered rate (reported)",
            "-",
            measured,
            "-",
        )
    if ours and c_us:
        mine = [s.get("cpu_us_per_delivery") for s in [_cost_step(r) or {} for r in ours if _ok(r)]]
        rs = [m / c_us for m in mine if m]
        rep.target(
            "many small rooms, agentchat CPU per delivery vs C write()",
            "<= 2x",
            fmt_ratio(rs) + f" ({fmt(mine[0] if mine else None, 1)} us vs {fmt(c_us, 2)} us)",
            shortfall(rs, 2.0, higher_is_better=False),
        )


def _rooms_cost_table(res: dict[str, Runs], labels: dict[str, str], cfg: Any) -> str:
    """Each server's CPU per delivery and p99 at every rate its sweep reached (equal loads side by side)."""
    rates = [
        r for r in cfg.rooms_rates if any(_ok(rs[0]) and _step_at(rs[0], r) for rs in res.values() if rs)
    ]
    rows = ["| server | " + " | ".join(fmt(r) for r in rates) + " |", "|---" * (len(rates) + 1) + "|"]
    for name, runs in res.items():
        run = runs[0] if runs else {}
        cells = []
        for rate in rates:
            step = _step_at(run, rate) if _ok(run) else None
            if step is None:
                cells.append("")
                continue
            mark = "" if step.get("ok") else (f" lost {fmt(step['lost'])}" if step.get("lost") else " over")
            cells.append(
                f"{fmt(step.get('cpu_us_per_delivery'), 1)} us, {fmt(_lat(step, 'p99'), 0)} ms{mark}"
            )
        rows.append(f"| {labels.get(name, name)} | " + " | ".join(cells) + " |")
    return (
        "Server CPU per delivery and p99 at each offered rate (messages/s) the sweep reached; 'over' "
        f"marks a step whose p99 was at or over {cfg.rooms_p99_ms:.0f} ms. CPU per delivery falls as the "
        "rate rises (fixed costs such as heartbeats spread over more deliveries), so compare servers "
        "within one column.\n\n" + "\n".join(rows)
    )
