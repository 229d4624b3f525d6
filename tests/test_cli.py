"""The agentchat command: token minting and running a bot against a real server process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from agentchat_server.auth import Authenticator
from tests.server_process import ServerProcess
from tests.wire import UNIT, Wire

KEY = "main:" + "s" * 32


def test_token_command_mints_a_verifiable_token() -> None:
    """`agentchat token` prints a token for the client, kind and capabilities asked for."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentchat_server",
            "token",
            "--client-id",
            "ana",
            "--kind",
            "agent",
            "--ttl",
            "600",
            "--cap",
            "room:*=subscribe,publish",
            "--keys",
            KEY,
            "--json",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    minted = json.loads(out)
    identity = Authenticator([KEY]).verify(minted["token"])
    assert (identity.client_id, identity.kind) == ("ana", "agent")
    assert identity.can("room:x", "publish") and not identity.can("room:x", "history")
    assert not identity.can("admin:x", "subscribe")


def test_token_command_without_key_says_so() -> None:
    """Without an API key the command fails with a clear message, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "agentchat_server", "token", "--client-id", "ana"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode != 0 and "no API key" in result.stderr
    assert "Traceback" not in result.stderr


async def test_bot_command_runs_an_example_bot(tmp_path: Path) -> None:
    """`agentchat bot agentchat.examples.echo:bot` joins the room and answers a mention."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    await server.start()
    bot = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "agentchat_server",
        "bot",
        "agentchat.examples.echo:bot",
        "--url",
        server.url,
        "--keys",
        server.key,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    wire = await Wire.open(server.ws_url, server.token("ana"))
    try:
        await wire.request({"type": "attach", "channel": "room:lobby"})
        async with asyncio.timeout(UNIT * 4):
            while True:  # wait until the bot is present, then talk to it
                frame = await wire.inbox.get()
                members = frame.get("members", []) + ([frame["member"]] if "member" in frame else [])
                if any(m["client_id"] == "echo" for m in members):
                    break
        await wire.request({"type": "publish", "channel": "room:lobby", "data": "@echo ping"})
        async with asyncio.timeout(UNIT * 4):
            while True:
                frame = await wire.expect("message")
                if frame["client_id"] == "echo":
                    assert "ping" in frame["data"]
                    break
    finally:
        bot.terminate()
        await bot.wait()
        await wire.close()
        await server.stop()


async def test_a_busy_port_gets_one_clear_line(tmp_path: Path) -> None:
    """Starting on a port in use prints one line saying what to do (no traceback) and exits 1."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentchat_server", "serve", "--port", str(port),
            "--db", f"sqlite+aiosqlite:///{tmp_path / 'busy.db'}", "--log-level", "WARNING",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        async with asyncio.timeout(UNIT * 4):
            _, err = await done.communicate()
    assert done.returncode == 1
    text = err.decode()
    assert f"port {port}" in text and "make run PORT=" in text and "Traceback" not in text


async def test_dev_mode_keeps_a_key_and_prints_the_bot_command(tmp_path: Path) -> None:
    """`serve --dev` without keys makes one key beside the database, keeps it across restarts,
    and prints the `agentchat bot` command that uses it; requests are not logged one by one."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'dev' / 'a.db'}"
    printed = []
    for _ in range(2):
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "agentchat_server", "serve", "--dev", "--port", "0", "--db", db,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert server.stdout is not None and server.stderr is not None
        lines = []
        async with asyncio.timeout(UNIT * 4):
            while not lines or not lines[-1].startswith("run a bot"):
                lines.append((await server.stdout.readline()).decode().strip())
        url = lines[0].split()[-1]
        async with aiohttp.ClientSession() as http:
            for _ in range(3):
                async with http.get(url + "/healthz") as resp:
                    assert resp.status == 200
        server.terminate()
        _, err = await server.communicate()
        assert "GET /healthz" not in err.decode()  # no access log by default
        printed.append(lines[-1].split("--keys ")[1])
    assert printed[0] == printed[1] == (tmp_path / "dev" / "dev.key").read_text().strip()
