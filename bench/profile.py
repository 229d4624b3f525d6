"""Profile agentchat under one bench load: `python -m bench.profile fanout|latency|rooms|durable|...`.

py-spy (from the bench environment) samples the server for the middle of the load; the top functions
by self time and by inclusive time are printed, and the raw samples are kept in bench/results/.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.env import BENCH_DIR, BENCH_VENV, ensure_python_env
from bench.harness import LoadGen, throwaway_postgres
from bench.scenarios import Config, _spec
from bench.servers import AGENTCHAT_FORMAT, Target, agentchat_target, start, stop

PY_SPY = BENCH_VENV / "bin" / "py-spy"
SCENARIOS = [
    "fanout",
    "fanout-durable",
    "latency",
    "durable",
    "durable-pg",
    "durable-latency",
    "ephemeral-many",
    "rooms",
    "rooms-durable",
]


def specs(name: str, cfg: Config, running: Any, rate: float = 2000.0) -> dict[str, Any]:
    """The load generator for a scenario, long enough to sample."""
    common = {"size": cfg.size, "warmup": 1.0, "duration": 12.0}
    if name in ("fanout", "fanout-durable"):
        return _spec(
            running, "fanout", subs=cfg.subs, channel="room:bench", window=cfg.fanout_window, **common
        )
    if name == "latency":
        return _spec(
            running, "latency", subs=cfg.latency_subs, channel="room:bench", rate=cfg.latency_rate, **common
        )
    if name in ("rooms", "rooms-durable"):
        # One long step of the many-small-rooms load (`--rate`: 2,000 msgs/s, which every server keeps).
        return _spec(
            running,
            "rooms",
            rooms=cfg.rooms,
            members=cfg.room_members,
            publishers=cfg.rooms_publishers,
            size=cfg.size,
            rates=[rate],
            step_s=15.0,
            p99_ms=cfg.rooms_p99_ms,
            timeout=900,
        )
    if name == "durable-latency":
        return _spec(
            running,
            "latency",
            subs=cfg.durable_latency_subs,
            channel="room:durable-latency",
            rate=cfg.durable_latency_rate,
            **common,
        )
    # durable / ephemeral-many: many publishers, each with a window of publishes awaiting their ack.
    return _spec(running, "durable", conns=cfg.durable_conns, window=cfg.durable_window, channels=1, **common)


def summarize(raw: Path, top: int) -> str:
    self_time: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        self_time[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples"
    out = [f"{total} samples", "", "self time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in self_time.most_common(top)]
    out += ["", "inclusive time (agentchat and aiohttp frames):"]
    picked = [(f, n) for f, n in inclusive.most_common(400) if "channels/" in f or "aiohttp/" in f]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in picked[:top]]
    return "\n".join(out)


async def profile(name: str, seconds: float, top: int, rate: float = 2000.0) -> None:
    ensure_python_env()
    cfg = Config()
    ephemeral = name not in ("fanout-durable", "durable", "durable-pg", "durable-latency", "rooms-durable")
    async with contextlib.AsyncExitStack() as stack:
        db_url = None
        if name == "durable-pg":
            db_url = await stack.enter_async_context(throwaway_postgres())
        target = agentchat_target(
            "agentchat",
            "agentchat",
            ephemeral=ephemeral,
            db="{db}" if db_url else "sqlite+aiosqlite:///{workdir}/bench.db",
        )
        await _profile_once(name, target, db_url, cfg, seconds, top, rate)


async def _profile_once(
    name: str, target: Target, db_url: str | None, cfg: Config, seconds: float, top: int, rate: float
) -> None:
    running = await start(target, db_url=db_url)
    raw = BENCH_DIR / "results" / f"profile-{name}-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    raw.parent.mkdir(exist_ok=True)
    try:
        async with LoadGen(specs(name, cfg, running, rate)) as load:
            if name.startswith("rooms"):
                await load.ready(wait_s=600)
            await asyncio.sleep(3.0)
            spy = await asyncio.create_subprocess_exec(
                str(PY_SPY),
                "record",
                "-p",
                str(running.pid),
                "-d",
                str(int(seconds)),
                "-f",
                "raw",
                "-o",
                str(raw),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            await spy.wait()
            result = await load.result()
    finally:
        stop(running)
    keys = ("deliveries_per_s", "acks_per_s", "latency_ms", "lost", "steps")
    print({k: v for k, v in result.items() if k in keys})
    print(summarize(raw, top))
    print(f"raw samples: {raw}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=SCENARIOS)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--rate", type=float, default=2000.0, help="rooms: messages/s offered")
    parser.add_argument("--format", choices=["msgpack", "json"], default="msgpack")
    args = parser.parse_args()
    AGENTCHAT_FORMAT["format"] = args.format
    asyncio.run(profile(args.scenario, args.seconds, args.top, args.rate))


if __name__ == "__main__":
    main()
