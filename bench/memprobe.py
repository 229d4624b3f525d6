"""Where agentchat's memory per idle connection goes: `python -m bench.memprobe [--n 1000]`.

Starts `agentchat serve` in-process under tracemalloc (SIGUSR1 takes a snapshot), opens `warm`
then `n` idle connections with the bench's load generator, and prints the allocation sites that
grew the most, per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tracemalloc
from pathlib import Path
from typing import Any

from bench.env import BENCH_DIR, MAIN_BIN, ensure_python_env


def serve_traced(out: Path, n: int, argv: list[str]) -> None:
    """In the server process: tracemalloc on, snapshots on SIGUSR1, the diff written to `out`."""
    tracemalloc.start(8)
    snaps: list[tracemalloc.Snapshot] = []

    def on_signal(_sig: int, _frame: Any) -> None:
        snaps.append(tracemalloc.take_snapshot())
        if len(snaps) == 2:
            diff = snaps[1].compare_to(snaps[0], "lineno")
            total = sum(d.size_diff for d in diff)
            lines = [f"total traced growth {total / n / 1024:.2f} KiB per connection"]
            for d in diff[:30]:
                frame = d.traceback[0]
                where = f"{frame.filename}:{frame.lineno}"
                lines.append(f"{d.size_diff / n:9.0f} B/conn {d.count_diff / n:6.2f} blocks/conn  {where}")
            out.write_text("\n".join(lines) + "\n")

    signal.signal(signal.SIGUSR1, on_signal)
    from agentchat_server.cli import main

    sys.argv = ["agentchat", *argv]
    main()


async def probe(n: int, warm: int) -> None:
    from bench.harness import LoadGen
    from bench.scenarios import _spec
    from bench.servers import BENCH_KEY, Target, agentchat_env, start, stop

    out = BENCH_DIR / "results" / "memprobe.txt"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)

    def command(workdir: Path) -> list[str]:
        db = f"sqlite+aiosqlite:///{workdir}/bench.db"
        args = ["serve", "--port", "0", "--db", db, "--keys", BENCH_KEY]
        return [str(MAIN_BIN / "python"), "-m", "bench.memprobe", "--serve", str(out), str(n), *args]

    target = Target(
        "agentchat",
        "agentchat",
        "agentchat",
        command,
        env=agentchat_env(),
        options={"key": BENCH_KEY, "ephemeral": True, "format": "msgpack"},
    )
    running = await start(target, wait_s=180)  # tracemalloc slows the imports a lot
    try:
        async with LoadGen(_spec(running, "idle", channel="room:bench", warm=warm, n=n)) as load:
            await load.ready()
            os.kill(running.pid, signal.SIGUSR1)
            await asyncio.sleep(10.0)
            load.say("GO")
            await load.ready()
            os.kill(running.pid, signal.SIGUSR1)
            for _ in range(240):  # a snapshot of a traced heap takes a while
                if out.exists():
                    break
                await asyncio.sleep(0.5)
            load.say("GO")
            await load.result()
    finally:
        stop(running)
    print(out.read_text() if out.exists() else "no snapshot diff written")


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve_traced(Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4:])
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--warm", type=int, default=100)
    args = parser.parse_args()
    ensure_python_env()
    asyncio.run(probe(args.n, args.warm))


if __name__ == "__main__":
    main()
