"""Does the garbage collector cause agentchat's latency tail? `python -m bench.gcprobe [--freeze]`.

Runs `agentchat serve` in-process with a `gc.callbacks` hook that times every collection, under the
bench's latency load (20k deliveries/s to 1,000 subscribers), and prints pauses per generation next
to the measured latency. `--freeze` calls `gc.freeze()` once the subscribers are attached, so the
long-lived connection objects are no longer scanned: a cheap experiment for the server's startup code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bench.env import BENCH_DIR, MAIN_BIN, ensure_python_env


def serve_probed(out: Path, argv: list[str]) -> None:
    """In the server process: time each collection; SIGUSR1 freezes, SIGUSR2 resets, SIGTERM writes."""
    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    started = [0.0, 0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - started[0]) * 1000)

    def write(*_: Any) -> None:
        summary = {}
        for gen, values in pauses.items():
            values.sort()
            summary[str(gen)] = {
                "count": len(values),
                "total_ms": round(sum(values), 1),
                "max_ms": round(values[-1], 2) if values else 0,
                "p99_ms": round(values[int(0.99 * (len(values) - 1))], 2) if values else 0,
            }
        out.write_text(json.dumps({"pauses": summary, "tracked_objects": len(gc.get_objects())}))

    def reset(*_: Any) -> None:
        for values in pauses.values():
            values.clear()

    def on_term(*_: Any) -> None:
        write()
        raise SystemExit(0)

    gc.callbacks.append(on_gc)
    signal.signal(signal.SIGUSR1, lambda *_: gc.freeze())
    signal.signal(signal.SIGUSR2, reset)
    signal.signal(signal.SIGTERM, on_term)
    from agentchat_server.cli import main

    sys.argv = ["agentchat", *argv]
    try:
        main()
    finally:
        write()


async def probe(freeze: bool, duration: float) -> None:
    from bench.harness import LoadGen
    from bench.scenarios import Config, _spec
    from bench.servers import BENCH_KEY, Target, agentchat_env, start, stop

    cfg = Config()
    out = BENCH_DIR / "results" / f"gcprobe{'-freeze' if freeze else ''}.json"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)

    def command(workdir: Path) -> list[str]:
        db = f"sqlite+aiosqlite:///{workdir}/bench.db"
        args = ["serve", "--port", "0", "--db", db, "--keys", BENCH_KEY]
        return [str(MAIN_BIN / "python"), "-m", "bench.gcprobe", "--serve", str(out), *args]

    target = Target(
        "agentchat",
        "agentchat",
        "agentchat",
        command,
        env=agentchat_env(),
        options={"key": BENCH_KEY, "ephemeral": True, "format": "msgpack"},
    )
    running = await start(target)
    spec = _spec(
        running,
        "latency",
        subs=cfg.subs,
        channel="room:bench",
        size=cfg.size,
        rate=cfg.latency_rate,
        warmup=1.0,
        duration=duration,
    )
    try:
        async with LoadGen(spec) as load:
            # Subscribers attach during the first seconds; freeze / reset once they are in.
            await asyncio.sleep(3.0)
            if freeze:
                os.kill(running.pid, signal.SIGUSR1)
            os.kill(running.pid, signal.SIGUSR2)
            result = await load.result()
    finally:
        stop(running)
    print("latency ms:", result["latency_ms"], "lost:", result["lost"])
    print(
        "gc pauses in the server (ms, per generation):", out.read_text() if out.exists() else "none written"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_probed(Path(sys.argv[2]), sys.argv[3:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--freeze", action="store_true")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    ensure_python_env()
    asyncio.run(probe(args.freeze, args.duration))


if __name__ == "__main__":
    main()
