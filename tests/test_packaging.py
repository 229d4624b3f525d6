"""The installed package works outside the source tree: web app, demo agents, console script."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp

from tests.wire import UNIT, Wire

ROOT = Path(__file__).resolve().parent.parent
# Left-over build products (setuptools builds in ./build) must not leak into what is tested.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "node_modules",
    "data",
    "results",
    "__pycache__",
    ".*_cache",
)


def clean_source(tmp_path: Path) -> Path:
    """A copy of the source tree without build products, as a fresh clone has it."""
    target = tmp_path / "source"
    shutil.copytree(ROOT, target, ignore=NOT_SOURCE)
    return target


def test_wheel_contains_everything_a_user_runs(tmp_path: Path) -> None:
    """The wheel ships the server, the SDK with its examples, the web app, and the agentchat script."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(clean_source(tmp_path)),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("agentchat-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "agentchat_server/app.py",
        "agentchat_server/protocol/__init__.py",
        "agentchat/__init__.py",
        "agentchat/examples/scripted.py",
        "agentchat_server/web/index.html",
        "agentchat_server/web/agentchat.js",
        "agentchat_server/web/app.js",
        "agentchat_server/web/style.css",
    ):
        assert required in names, required
    # Nothing under the names other projects own (Django Channels, the OpenAI Agents SDK).
    assert not any(n.startswith(("tests/", "bench/", "channels/", "agents/", "web/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "agentchat = agentchat_server.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


async def test_installed_package_serves_app_and_demo(tmp_path: Path) -> None:
    """Installed elsewhere and started from another directory, the server serves the app and runs the demo."""
    target = tmp_path / "site"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--target",
        str(target),
        str(clean_source(tmp_path)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    run_dir = tmp_path / "elsewhere"
    run_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "AGENTCHAT_KEYS": "demo:" + "k" * 32}
    server = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import agentchat_server as s; assert 'site' in s.__file__, s.__file__; "
        "from agentchat_server.cli import main; main()",
        "serve",
        "--dev",
        "--demo",
        "--port",
        "0",
        "--log-level",
        "WARNING",
        cwd=run_dir,
        env=env,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stdout is not None
        async with asyncio.timeout(UNIT * 4):
            line = (await server.stdout.readline()).decode()
        assert line.startswith("agentchat listening on "), line
        url = line.split()[-1]
        assert (run_dir / "data" / "agentchat.db").exists()
        async with aiohttp.ClientSession() as http:
            for path in ("/", "/agentchat.js", "/app.js", "/style.css"):
                async with http.get(url + path) as resp:
                    assert resp.status == 200, path
            async with http.post(url + "/v1/dev/token", json={"client_id": "visitor"}) as resp:
                token = (await resp.json())["token"]
        wire = await Wire.open(url.replace("http", "ws") + "/v1/ws", token)
        try:
            await wire.request({"type": "attach", "channel": "room:lobby"})
            agents: set[str] = set()
            async with asyncio.timeout(UNIT * 4):
                while agents != {"echo", "planner"}:
                    frame = await wire.inbox.get()
                    for member in frame.get("members", []) + ([frame["member"]] if "member" in frame else []):
                        if member["kind"] == "agent":
                            agents.add(member["client_id"])
            await wire.request({"type": "publish", "channel": "room:lobby", "data": "@echo hello"})
            async with asyncio.timeout(UNIT * 4):
                while True:
                    frame = await wire.expect("message")
                    if frame["client_id"] == "echo" and frame.get("serial"):
                        assert "hello" in frame["data"]
                        break
        finally:
            await wire.close()
    finally:
        server.terminate()
        await server.wait()
