"""The page bench/run.py writes: docs/performance.md (or the smoke file) from one run's raw results,
with the method of every figure; also rewrites it from a saved run (`python -m bench.run --render`)."""

from __future__ import annotations

import dataclasses
import json
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import report, report_agentchat
from bench.env import BENCH_DIR, REPO_DIR, machine_info, versions
from bench.scenarios import Config
from bench.servers import AGENTCHAT_FORMAT, AGENTCHAT_FRAME_BYTES

DISTURBED_PCT = 50.0  # other processes' CPU (% of one core) during a measurement that makes us repeat it
# Latency tails are set by a few stalls: a tenth of a core used by others already moves a p99.
DISTURBED_PCT_BY_SCENARIO = {"latency": 10.0}


def disturbance(result: dict[str, Any]) -> float:
    """The largest 'other load' seen by a measurement, 0 when it has none."""
    found = [result.get("other_cpu_pct")]
    for part in ("throughput", "latency"):
        if isinstance(result.get(part), dict):
            found.append(result[part].get("other_cpu_pct"))
    return max((float(v) for v in found if v is not None), default=0.0)


def render(cfg: Config, results: dict[str, Any], meta: dict[str, Any], started: str, elapsed: float) -> str:
    """The markdown page of one run: method, machine, targets, then one section per scenario."""
    rep = report.Report()
    labels = meta["labels"]

    def section(name: str, draw: Callable[[], Any]) -> Any:
        # A section that cannot be drawn (unexpected figures) is named in the notes; the rest still print.
        try:
            return draw()
        except Exception as exc:
            traceback.print_exc()
            cfg.notes.append(f"The {name} section could not be written: {type(exc).__name__}: {exc}")
            return None

    c_us = None
    if "cwrite" in results:
        c_us = section("C write()", lambda: report.cwrite_section(rep, results["cwrite"]["cwrite"]))
    if "fanout" in results:
        section("hot channel", lambda: report.fanout_section(rep, results["fanout"], labels))
    if "rooms" in results:
        section("rooms", lambda: report.rooms_section(rep, results["rooms"], labels, cfg, c_us))
    if "latency" in results:
        offered = cfg.latency_rate * cfg.latency_subs
        section(
            "latency",
            lambda: report.latency_section(rep, results["latency"], labels, offered, cfg.latency_subs),
        )
    if "durable" in results:
        section(
            "durable",
            lambda: report_agentchat.durable_section(rep, results["durable"], cfg.durable_latency_rate),
        )
    if "conns" in results:
        section(
            "connections",
            lambda: report_agentchat.conns_section(rep, results["conns"]["agentchat"], cfg.conns),
        )
    if "memory" in results:
        section(
            "memory", lambda: report_agentchat.memory_section(rep, results["memory"], labels, cfg.memory_n)
        )
    if "streams" in results:
        section(
            "streams",
            lambda: report_agentchat.streams_section(
                rep, results["streams"], cfg.streams, cfg.stream_readers, cfg.tokens_per_s
            ),
        )
    machine = meta.get("machine") or machine_info()
    vers = meta.get("versions") or versions(meta["node"])
    mode = (
        "quick smoke run (`make bench-quick`), 1 run each, short durations, small sizes"
        if cfg.quick
        else f"full run: {cfg.runs} runs per figure ({cfg.latency_runs} for latency, {cfg.own_runs} for "
        "durable publish and streams, 1 for the rooms sweep and the held connections)"
    )
    out = [
        "# Performance",
        "",
        "Written by `python -m bench.run` (do not edit by hand; rerun to refresh). "
        f"This file: {mode}, started {started}, took {elapsed / 60:.1f} min, measuring "
        f"{meta['measured']}.",
        "",
        "Reproduce: `make bench` (full, about 25 minutes) or `make bench-quick` (smoke, a few minutes). "
        "Raw figures of every run are kept in bench/results/*.json.",
        "",
        *(
            [
                "**This is a smoke run**: small sizes, one run each, no waiting for a quiet machine. It "
                "shows what the report holds, not how fast anything is; `make bench` on a quiet machine "
                "writes the figures to quote.",
                "",
            ]
            if cfg.quick
            else []
        ),
        "## Machine and versions",
        "",
        f"- {machine['nproc']} CPUs ({machine['cpu']}), {machine['ram']} RAM, Linux {machine['kernel']}; "
        f"loopback only. fsync of 4 KiB in the SQLite directory: {machine['fsync']}.",
        "- " + ", ".join(f"{k} {v}" for k, v in vers.items()),
        "",
        "## How it is measured",
        "",
        "- Every server runs as its own process pinned to CPU 0; the load generator (`bench/loadgen.py`, "
        "raw asyncio sockets on uvloop) runs in its own process pinned to CPU 1. Each gets one core. The "
        "machine may be shared: each measurement first waits (bounded) until other processes use under a "
        "quarter of a core, and is repeated (bounded) when they used more meanwhile; 'other load' shows "
        "what they still used, in % of one core.",
        "- The peers run in the same invocation, one after another in each run, and every ratio is "
        "taken between figures of the same run; tables show the median and each run's value.",
        "- Payloads carry a marker and a monotonic timestamp; subscribers count markers in the raw bytes "
        "per connection (loss and duplicates) and read the timestamps for latency, so client-side parsing "
        "does not cap the measured rate. Every counted delivery is a whole message in its own WebSocket "
        "frame (Redis: its own RESP message).",
        "- agentchat runs as `agentchat serve --log-level WARNING` with its default outbox bound, "
        "raised publish-rate and per-client connection limits (AGENTCHAT_PUBLISH_RATE/BURST, "
        "MAX_CONNECTIONS_PER_CLIENT), and the loop brake off for bench rooms "
        '(`AGENTCHAT_NAMESPACES=\'{"*": {"loop_budget": null}}\'`), since bench publishers count as '
        f"agents. Load clients speak {AGENTCHAT_FORMAT['format']} unless the row says JSON.",
        "- Peers: the aiohttp floors (`bench/peers/floor.py`) and python-socketio run on uvloop; "
        "python-socketio and Node socket.io use the websocket transport only and room emit; Redis is a "
        "throwaway `redis-server` without persistence. The per-tick floor pads each frame to "
        f"{AGENTCHAT_FRAME_BYTES} bytes, agentchat's msgpack frame for these messages, so both move the "
        "same bytes; the other peers send their own protocol's frame (bytes/delivery column).",
        "- Cost figures: server CPU microseconds per delivery (user+system time of the server process "
        "from /proc/PID/stat over the measured window, divided by its deliveries) and deliveries per "
        "write system call (/proc/PID/io `syscw`), for every server in the fan-out, rooms and latency "
        "scenarios; the C write() section gives the physical reference from the same run.",
        "- Idle agentchat load clients send a `ping` every 5 s each (every 7.5 s in the rooms scenario, "
        "as the SDK does with the default 15 s heartbeat interval), spread over the period; the floors "
        "and Redis need none, socket.io pings from the server and the load clients answer.",
        "- Diagnosis tools beside the bench: `python -m bench.profile SCENARIO` (py-spy on the server "
        "under one load), `python -m bench.gcprobe [--freeze]`, `python -m bench.memprobe`.",
        "",
        "## Targets, as ratios within the same run",
        "",
        "Where a target is missed the result says by how much (the median ratio against the goal); "
        "[performance-bounds.md](performance-bounds.md) shows what bounds it, from profiles of the server "
        "under the same loads.",
        "",
        "| target | goal | measured (median, then each run) | result |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rep.targets],
        "",
        *[s + "\n" for s in rep.sections],
    ]
    all_runs = [r for per in results.values() for runs in per.values() for r in runs]
    repeated = sum(r.get("retries", 0) for r in all_runs)
    still = sum(1 for r in all_runs if disturbance(r) > r.get("disturbed_limit", DISTURBED_PCT))
    cfg.notes.append(
        f"{repeated} measurement(s) were repeated because other processes used more than "
        f"{DISTURBED_PCT:.0f}% of a core meanwhile ({DISTURBED_PCT_BY_SCENARIO['latency']:.0f}% for the "
        f"latency scenario, whose tail a few stalls decide), keeping the least disturbed attempt; {still} of "
        f"the {len(all_runs)} kept measurements were still over that after the retries allowed (their "
        "'other load' column shows it)."
    )
    errs = report.errors_of({k: v for k, v in results.items()})
    if errs or cfg.notes:
        out += ["## Failures and notes", "", *errs, *[f"- {n}" for n in cfg.notes], ""]
    return "\n".join(out)


def publish(text: str, quick: bool, no_write: bool) -> None:
    """Write the report where it belongs: the smoke file for quick runs, else docs/performance.md."""
    if quick:
        (BENCH_DIR / "results" / "performance-quick.md").write_text(text)
    elif not no_write:
        (REPO_DIR / "docs" / "performance.md").write_text(text)


def rerender(raw: Path, write: bool, no_write: bool) -> None:
    """The report of an earlier run, from its raw results (after a report-only fix, nothing remeasured)."""
    data = json.loads(raw.read_text())
    known = {f.name for f in dataclasses.fields(Config)}
    cfg = Config(
        **{
            k: tuple(v) if isinstance(v, list) and k != "notes" else v
            for k, v in data["config"].items()
            if k in known
        }
    )
    run_info = data["run"]
    text = render(cfg, data["results"], run_info, run_info["started"], run_info["elapsed"])
    publish(text, cfg.quick and not write, no_write)
    print(text)
