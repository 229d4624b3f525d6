"""The bench environment: a separate virtualenv for peers and load generator, Node modules, versions."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
BENCH_VENV = BENCH_DIR / ".venv"
BENCH_PYTHON = BENCH_VENV / "bin" / "python"
MAIN_BIN = REPO_DIR / ".venv" / "bin"
AGENTCHAT = MAIN_BIN / "agentchat"
# Peers come from the package registry; the main virtualenv (used by the tests) is never touched.
BENCH_REQUIREMENTS = [
    "python-socketio>=5.11,<6",
    "aiohttp>=3.10,<4",
    "uvloop>=0.19",
    "msgpack>=1.0",
    "PyJWT>=2.8",
    "py-spy>=0.3",
]


def _run(cmd: list[str], cwd: Path | None = None) -> None:
    print("bench: $", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True)


def ensure_python_env() -> Path:
    """Create bench/.venv with the peers and the load generator's packages if it is missing or stale."""
    stamp = BENCH_VENV / ".installed"
    wanted = "\n".join(BENCH_REQUIREMENTS)
    if BENCH_PYTHON.exists() and stamp.exists() and stamp.read_text() == wanted:
        return BENCH_PYTHON
    if not BENCH_PYTHON.exists():
        _run([sys.executable, "-m", "venv", str(BENCH_VENV)])
    _run(
        [str(BENCH_PYTHON), "-m", "pip", "install", "-q", "--disable-pip-version-check", *BENCH_REQUIREMENTS]
    )
    stamp.write_text(wanted)
    return BENCH_PYTHON


def ensure_node_env() -> bool:
    """Install socket.io into bench/node_modules when npm is present; False when Node peers are skipped."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        print("bench: node/npm not found, Node socket.io is skipped", flush=True)
        return False
    if (BENCH_DIR / "node_modules" / "socket.io" / "package.json").exists():
        return True
    try:
        _run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"], cwd=BENCH_DIR)
    except (subprocess.CalledProcessError, OSError) as exc:
        print(f"bench: npm install failed ({exc}), Node socket.io is skipped", flush=True)
        return False
    return True


def _output(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "?"


def _pkg_version(python: Path, name: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    return _output([str(python), "-c", code]) or "?"


def fsync_ms(samples: int = 100) -> str:
    """p50/p99 of write(4 KiB) + fsync in the temp directory, where the bench's SQLite files live."""
    import tempfile
    import time

    with tempfile.TemporaryDirectory() as tmp:
        fd = os.open(os.path.join(tmp, "probe"), os.O_WRONLY | os.O_CREAT)
        try:
            times = []
            for _ in range(samples):
                os.write(fd, b"x" * 4096)
                t0 = time.perf_counter()
                os.fsync(fd)
                times.append((time.perf_counter() - t0) * 1000)
        finally:
            os.close(fd)
    times.sort()
    return f"p50 {times[samples // 2]:.2f} ms, p99 {times[int(samples * 0.99) - 1]:.2f} ms"


def machine_info() -> dict[str, str]:
    """nproc, CPU model, RAM and kernel of this machine."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "ram": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "kernel": platform.release(),
        "fsync": fsync_ms(),
    }


def commit() -> str:
    """The measured source: the checked-out commit, marked when the server or bench has changes."""
    head = _output(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"])
    dirty = _output(
        ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--untracked-files=no", "channels", "bench"]
    )
    return f"commit {head}{' with uncommitted changes in channels/ or bench/' if dirty else ''}"


def versions(node: bool) -> dict[str, str]:
    """Versions of everything measured, read from the environments that run them."""
    main_py = MAIN_BIN / "python"
    out = {
        "Python": platform.python_version(),
        "aiohttp": _pkg_version(main_py, "aiohttp"),
        "uvloop": _pkg_version(main_py, "uvloop"),
        "msgpack": _pkg_version(main_py, "msgpack"),
        "agentchat": _pkg_version(main_py, "agentchat") + f" ({commit()})",
        "python-socketio": _pkg_version(BENCH_PYTHON, "python-socketio"),
        "python-engineio": _pkg_version(BENCH_PYTHON, "python-engineio"),
        "redis-server": _output(["redis-server", "--version"]).split(" sha=")[0],
        "gcc": _output(["gcc", "-dumpfullversion"]),
        "aiohttp (bench env)": _pkg_version(BENCH_PYTHON, "aiohttp"),
    }
    if node:
        out["node"] = _output(["node", "--version"])
        pkg = BENCH_DIR / "node_modules" / "socket.io" / "package.json"
        if pkg.exists():
            import json

            out["socket.io (node)"] = json.loads(pkg.read_text()).get("version", "?")
    psql = _output(["psql", "--version"])
    if psql and psql != "?":
        out["PostgreSQL client"] = psql
    return out
