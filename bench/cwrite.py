"""The C `write()` reference: compile bench/peers/cwrite.c with gcc into a temporary directory and run
it pinned to the server's CPU, in the same bench run as the servers it is compared with."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from bench.env import BENCH_DIR
from bench.servers import SERVER_CPUS, pin

SOURCE = BENCH_DIR / "peers" / "cwrite.c"


def measure(sockets: int = 1000, frame_bytes: int = 215, rounds: int = 300) -> dict[str, Any]:
    """CPU microseconds per write() of one frame to one of `sockets` loopback TCP sockets."""
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        raise RuntimeError("no C compiler (gcc) on this machine")
    with tempfile.TemporaryDirectory(prefix="bench-cwrite-") as tmp:
        exe = Path(tmp) / "cwrite"
        subprocess.run(
            [gcc, "-O2", "-o", str(exe), str(SOURCE)], check=True, capture_output=True, timeout=120
        )
        done = subprocess.run(
            [str(exe), str(sockets), str(frame_bytes), str(rounds)],
            capture_output=True,
            text=True,
            timeout=300,
            preexec_fn=pin(SERVER_CPUS),
        )
    if done.returncode != 0:
        raise RuntimeError(f"cwrite failed: {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


if __name__ == "__main__":
    print(measure())
