"""Servers under test as subprocesses: start, wait for the listening line, read RSS and CPU, stop."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.env import AGENTCHAT, BENCH_DIR, BENCH_PYTHON, REPO_DIR

LISTENING = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
CLK_TCK = os.sysconf("SC_CLK_TCK")
# The server gets CPU 0 and the load generator CPU 1, so neither steals the other's core.
SERVER_CPUS = {0}
LOADGEN_CPUS = {1}
BENCH_KEY = "bench:" + secrets.token_hex(24)


def pin(cpus: set[int]) -> Callable[[], None]:
    """A preexec function: pin the child to `cpus` and raise its open-file limit to the hard limit
    (servers and load generators hold many sockets; the system configuration is left alone)."""

    def apply() -> None:
        available = os.sched_getaffinity(0)
        if cpus <= available:
            os.sched_setaffinity(0, cpus)
        _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    return apply


def rss_kb(pid: int) -> int:
    """Resident set size of `pid` and its threads, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time consumed by `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


@dataclass
class Target:
    """One server configuration the scenarios can be run against."""

    name: str
    label: str
    dialect: str
    command: Callable[[Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    options: dict[str, object] = field(default_factory=dict)
    db: str | None = None


@dataclass
class Running:
    target: Target
    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path
    db_url: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def rss_kb(self) -> int:
        return rss_kb(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)


def agentchat_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Limits raised so the bench measures the server, not its abuse guards; the outbox bound is default."""
    env = {
        "AGENTCHAT_PUBLISH_RATE": "100000000",
        "AGENTCHAT_PUBLISH_BURST": "100000000",
        "AGENTCHAT_MAX_CONNECTIONS_PER_CLIENT": "100000",
        "AGENTCHAT_MAX_STREAMS_PER_CONNECTION": "1000",
        "AGENTCHAT_MAX_STREAMS_PER_CHANNEL": "1000",
        # Bench clients are agents taking turns with no person: the loop brake would stop them.
        "AGENTCHAT_NAMESPACES": '{"*": {"loop_budget": null}}',
    }
    env.update(extra or {})
    return env


def agentchat_command(db: str) -> Callable[[Path], list[str]]:
    def build(workdir: Path) -> list[str]:
        url = db.replace("{workdir}", str(workdir))
        return [
            *[str(AGENTCHAT), "serve", "--port", "0", "--db", url, "--keys", BENCH_KEY],
            *["--log-level", "WARNING"],
        ]

    return build


def _spawn(cmd: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_DIR, env=env, preexec_fn=pin(SERVER_CPUS)
        )


async def start(target: Target, db_url: str | None = None, wait_s: float = 30.0) -> Running:
    """Start `target` pinned to the server CPU and wait for its listening line."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-{target.name}-"))
    log = workdir / "server.log"
    env = dict(os.environ)
    env.update(target.env)
    cmd = target.command(workdir)
    if db_url is not None:
        cmd = [db_url if part == "{db}" else part for part in cmd]
    proc = _spawn(cmd, log, env)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_text(errors="replace"))
        if match:
            running = Running(target, proc, int(match.group(1)), workdir, log, db_url)
            await asyncio.sleep(0.3)
            return running
        if proc.poll() is not None:
            break
        await asyncio.sleep(0.05)
    text = log.read_text(errors="replace")[-2000:]
    stop_proc(proc)
    raise RuntimeError(f"{target.name} did not start: {text}")


def stop_proc(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def stop(running: Running, keep_log: Path | None = None) -> None:
    stop_proc(running.proc)
    if keep_log is not None:
        keep_log.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(running.log, keep_log)
    shutil.rmtree(running.workdir, ignore_errors=True)


# agentchat's bytes per delivery for a 100-byte message (msgpack frame: serial, id, name, client_id,
# kind, ts and the data); the per-tick floor pads its frames to it so both move the same bytes.
AGENTCHAT_FRAME_BYTES = 215


def peer_targets(node: bool) -> list[Target]:
    """The peers, each in the bench environment (never the main virtualenv)."""
    py = str(BENCH_PYTHON)

    def floor(mode: str, *extra: str) -> Callable[[Path], list[str]]:
        return lambda _w: [py, "-m", "bench.peers.floor", "--mode", mode, "--port", "0", *extra]

    targets = [
        Target(
            "floor-tick",
            f"per-tick floor (aiohttp, frames padded to {AGENTCHAT_FRAME_BYTES} bytes)",
            "floor",
            floor("tick", "--pad-to", str(AGENTCHAT_FRAME_BYTES)),
        ),
        Target(
            "floor-coalesce",
            "coalescing floor (aiohttp)",
            "floor",
            floor("coalesce"),
        ),
        Target(
            "floor-write",
            "one-write floor (aiohttp)",
            "floor",
            floor("write"),
        ),
        Target(
            "python-socketio",
            "python-socketio 5 on aiohttp",
            "socketio",
            lambda _w: [py, "-m", "bench.peers.sio_server", "--port", "0"],
        ),
    ]
    if node:
        targets.append(
            Target(
                "node-socket.io",
                "Node socket.io 4",
                "socketio",
                lambda _w: ["node", str(BENCH_DIR / "peers" / "sio_server.js"), "0"],
            )
        )
    if shutil.which("redis-server"):
        targets.append(
            Target(
                "redis",
                "Redis pub/sub",
                "redis",
                lambda w: [py, "-m", "bench.peers.redis_peer", "--dir", str(w)],
            )
        )
    return targets


# Wire format of agentchat's load clients; bench/run.py --format changes it.
AGENTCHAT_FORMAT = {"format": "msgpack"}


def agentchat_target(
    name: str,
    label: str,
    ephemeral: bool = True,
    db: str = "sqlite+aiosqlite:///{workdir}/bench.db",
    env: dict[str, str] | None = None,
    wire: str | None = None,
) -> Target:
    """agentchat as a target; `wire` overrides the load clients' format (msgpack or json)."""
    fmt = {"format": wire} if wire else AGENTCHAT_FORMAT
    return Target(
        name,
        label,
        "agentchat",
        agentchat_command(db),
        env=agentchat_env(env),
        options={"key": BENCH_KEY, "ephemeral": ephemeral, **fmt},
        db=db,
    )
