"""Every command and code block of README.md and docs/*.md works verbatim: each runnable block is
run by a test here, or listed with the reason it is not (a new block fails until it is one or the
other). Substitutions are few and named where they happen: a free loopback port for 8080, a
throwaway database for the documented one."""

# The browser fixture comes from test_browser.py by import, so test parameters shadow its name.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.cluster_helpers import free_port
from tests.conftest import need
from tests.snippets import ROOT, block, commands, runnable_blocks
from tests.test_browser import browser  # noqa: F401 (fixture)
from tests.wire import UNIT, Wire

BIN = Path(sys.executable).parent
DOC_URL = "http://127.0.0.1:8080"

# Each runnable block: the test that runs it, or why none does.
CHECKED: dict[tuple[str, str], str] = {
    ("README.md", "make run     #"): "test_make_run_and_the_readme_bot_work_verbatim",
    ("README.md", 'bot = Bot("helper"'): "test_make_run_and_the_readme_bot_work_verbatim",
    ("README.md", ".venv/bin/agentchat bot mymodule:bot"): "test_make_run_and_the_readme_bot_work_verbatim",
    ("README.md", "new WebSocket"): "test_the_readme_raw_client_runs_in_a_browser_console",
    ("README.md", 'pip install ".[postgres,redis]"'): "test_running_it_for_real_works_verbatim",
    ("README.md", "make lint types"): "the CI's own commands (.ci/run runs `make test`)",
    ("docs/configuration.md", "AGENTCHAT_NAMESPACES="): "test_the_namespace_settings_example_loads",
    ("docs/scaling.md", "--bus"): "several nodes: tests/test_cluster.py starts nodes with these flags",
    ("docs/web.md", "window.agentchatConfig"): "a page of the reader's own application",
    ("docs/web.md", "new AgentChat("): "test_the_agentchat_js_examples_run_in_a_browser",
    ("docs/web.md", "lobby.openStream("): "test_the_agentchat_js_examples_run_in_a_browser",
    ("docs/web.md", "applyEvent, countReply"): "test_the_agentchat_js_examples_run_in_a_browser",
    ("docs/web.md", "pytest -q tests/test_browser.py"): "runs part of this suite: recursion",
    ("docs/web.md", "lobby.answer("): "agent rooms: run by tests/test_web_agentrooms.py",
    # docs/sdk.md: run by tests/test_snippets_sdk.py.
    ("docs/sdk.md", "asyncio.run(main())"): "sdk: test_the_quick_start_program_answers_a_mention",
    ("docs/sdk.md", "room.streams()"): "sdk: test_the_stream_examples_run",
    ("docs/sdk.md", "model_tokens()"): "sdk: test_the_stream_examples_run",
    ("docs/sdk.md", "await room.edit(serial"): "sdk: test_the_chat_thread_and_read_examples_run",
    ("docs/sdk.md", "thread=root"): "sdk: test_the_chat_thread_and_read_examples_run",
    ("docs/sdk.md", "Timeline("): "sdk: test_the_timeline_example_keeps_messages_current",
    ("docs/sdk.md", "await room.mark_read(64)"): "sdk: test_the_chat_thread_and_read_examples_run",
    ("docs/sdk.md", "create=True"): "sdk: test_the_chat_thread_and_read_examples_run",
    ("docs/sdk.md", 'Bot("scout"'): "sdk: test_the_bot_example_answers",
    ("docs/sdk.md", "pool=True,"): "sdk: test_the_agent_room_bot_example_asks_then_answers",
    ("docs/sdk.md", "ChatModel(LLMSettings.from_env())"): "sdk: test_the_model_adapter_example_streams",
    ("docs/sdk.md", "python -m agentchat demo"): "sdk: test_the_demo_and_bot_commands_run",
    ("docs/sdk.md", "model.events("): "tests/test_sdk_llm.py: test_the_tool_call_example_runs",
    ("docs/agui.md", "send_agui(client"): "tests/test_agui.py: test_the_docs_examples_run",
    ("docs/agui.md", "FramesToAgui()"): "tests/test_agui.py: test_the_docs_examples_run",
    ("docs/sdk.md", "team.claim(task)"): "sdk: test_the_agent_room_examples_run",
    ("docs/sdk.md", 'run.tool_call("call_1"'): "sdk: test_the_agent_room_examples_run",
    ("docs/sdk.md", "mine.run_updates"): "sdk: test_the_agent_room_examples_run",
    ("docs/sdk.md", "asked.wait()"): "sdk: test_the_agent_room_examples_run",
}


def test_every_runnable_block_is_checked() -> None:
    """Each sh, python, js and html block of README.md and docs/*.md is run by a test here or listed
    with a reason; each listed test exists."""
    unlisted, ambiguous = [], []
    for found in runnable_blocks():
        name = str(found.path.relative_to(ROOT))
        keys = [key for key in CHECKED if key[0] == name and key[1] in found.text]
        if not keys:
            unlisted.append(f"{found.where}: {found.text.splitlines()[0]}")
        elif len(keys) > 1:
            ambiguous.append(f"{found.where}: {keys}")
    assert unlisted == [] and ambiguous == []
    from tests import test_snippets_sdk

    missing = [
        test
        for test in CHECKED.values()
        if (test.startswith("test_") and test not in globals())
        or (test.startswith("sdk: ") and not hasattr(test_snippets_sdk, test[5:]))
    ]
    assert missing == []
    for name, containing in CHECKED:
        block(name, containing)  # each entry finds exactly one block


# --- README -----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def checkout(tmp_path: Path) -> AsyncIterator[Path]:
    """The repository's Makefile and this virtualenv in a fresh folder: `make run` there builds
    nothing (its stamp is newer than pyproject.toml) and keeps its data in that folder's ./data."""
    folder = tmp_path / "clone"
    folder.mkdir()
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(ROOT / name, folder / name)
    (folder / ".venv").symlink_to(BIN.parent)
    need(
        (BIN.parent / ".runtime").exists() or (BIN.parent / ".installed").exists(),
        "not run from make's .venv",
    )
    need(shutil.which("make") is not None, "make is not installed")
    yield folder


async def started(proc: asyncio.subprocess.Process, last: str) -> list[str]:
    """The server's stdout lines up to the one starting with `last`."""
    assert proc.stdout is not None
    lines: list[str] = []
    async with asyncio.timeout(UNIT * 20):
        while not lines or not lines[-1].startswith(last):
            line = (await proc.stdout.readline()).decode()
            assert line, f"the server stopped: {lines}"
            lines.append(line.strip())
    return lines


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM the process group and wait (make runs the server as its child)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        async with asyncio.timeout(UNIT * 10):
            await proc.wait()


async def dev_token(url: str, client_id: str, kind: str = "human") -> str:
    async with (
        aiohttp.ClientSession() as http,
        http.post(url + "/v1/dev/token", json={"client_id": client_id, "kind": kind}) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return str((await resp.json())["token"])


async def members_include(wire: Wire, client_id: str) -> None:
    """Wait until `client_id` is present in the attached channel."""
    async with asyncio.timeout(UNIT * 10):
        while True:
            frame = await wire.inbox.get()
            members = frame.get("members", []) + ([frame["member"]] if "member" in frame else [])
            if any(m["client_id"] == client_id for m in members):
                return


async def answer_from(wire: Wire, client_id: str) -> dict[str, Any]:
    """The next durable message from `client_id`."""
    async with asyncio.timeout(UNIT * 10):
        while True:
            frame = await wire.expect("message")
            if frame["client_id"] == client_id:
                return frame


async def test_make_run_and_the_readme_bot_work_verbatim(tmp_path: Path) -> None:
    """`make run PORT=…` serves the app with the demo agents and prints the bot command; the
    README's bot, saved as mymodule.py and started with the README's command, answers `@helper`."""
    async with checkout(tmp_path) as folder:
        quick = commands(block("README.md", "make run     #").text)
        assert quick[0] == "make run"
        port = free_port()
        server = await asyncio.create_subprocess_shell(
            f"{quick[0]} PORT={port}",
            cwd=folder,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        bot: asyncio.subprocess.Process | None = None
        try:
            lines = await started(server, "run a bot against it")
            url = f"http://127.0.0.1:{port}"
            key = (folder / "data" / "dev.key").read_text().strip()
            assert (
                lines[-1]
                == f"run a bot against it: .venv/bin/agentchat bot mymodule:bot --url {url} --keys {key}"
            )
            (folder / "mymodule.py").write_text(block("README.md", 'bot = Bot("helper"').text)
            (run_bot,) = commands(block("README.md", ".venv/bin/agentchat bot mymodule:bot").text)
            bot = await asyncio.create_subprocess_shell(
                run_bot.replace(DOC_URL, url),
                cwd=folder,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
                start_new_session=True,
            )
            wire = await Wire.open(url.replace("http", "ws") + "/v1/ws", await dev_token(url, "ana"))
            try:
                await wire.request({"type": "attach", "channel": "room:lobby"})
                await members_include(wire, "helper")
                await wire.request({"type": "publish", "channel": "room:lobby", "data": "@helper hi"})
                reply = await answer_from(wire, "helper")
                assert (reply["status"], reply["data"]) == ("complete", "You said: @helper hi ")
            finally:
                await wire.close()
        finally:
            if bot is not None:
                await stop(bot)
            await stop(server)


async def test_running_it_for_real_works_verbatim(pg_url: str, tmp_path: Path) -> None:
    """The production commands: the extras exist, the exported key is accepted, `agentchat token`
    mints a token with it (no server needed) that `agentchat serve` on PostgreSQL accepts.
    Substituted: the database (a throwaway one), 0.0.0.0 (loopback only in tests), the port."""
    install, export, serve, token = commands(block("README.md", 'pip install ".[postgres,redis]"').text)
    extras = re.findall(r"\[(.*?)\]", install)[0].split(",")
    pyproject = (ROOT / "pyproject.toml").read_text()
    # test_packaging installs the wheel; here: the extras it names exist.
    assert all(re.search(rf"^{extra} = \[", pyproject, re.M) for extra in extras)
    documented = "postgresql+asyncpg://postgres@127.0.0.1/agentchat"
    assert documented in serve
    port = free_port()
    serve = (
        serve.replace(documented, pg_url)
        .replace("--host 0.0.0.0", "--host 127.0.0.1")
        .replace("--port 8080", f"--port {port}")
    )
    env = {k: v for k, v in os.environ.items() if k != "AGENTCHAT_KEYS"}
    env["PATH"] = f"{BIN}:{env['PATH']}"
    need(shutil.which("openssl") is not None, "openssl is not installed")
    script = f'{export}\necho "minted $({token})"\nexec {serve}'
    server = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        lines = await started(server, "agentchat listening on")
        minted = next(line for line in lines if line.startswith("minted "))
        url = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
            assert resp.status == 200
        wire = await Wire.open(url.replace("http", "ws") + "/v1/ws", minted.split()[-1])
        try:
            reply = await wire.request({"type": "attach", "channel": "room:lobby"})
            assert reply["type"] == "attached", reply
        finally:
            await wire.close()
    finally:
        await stop(server)


def test_the_namespace_settings_example_loads() -> None:
    """The configuration page's AGENTCHAT_NAMESPACES example is accepted and means what it says."""
    first = commands(block("docs/configuration.md", "AGENTCHAT_NAMESPACES=").text)[0]
    code = (
        "from agentchat_server.settings import Settings; s = Settings();"
        "print(s.policy('team:a').reply_policy, s.policy('ops:x').loop_budget,"
        " s.policy('room:x').loop_budget)"
    )
    out = subprocess.run(
        ["bash", "-c", f'{first}; exec {sys.executable} -c "{code}"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["addressed", "None", "10"]


# --- in a browser -----------------------------------------------------------------------------


@pytest.fixture
async def dev_server(tmp_path: Path) -> AsyncIterator[Any]:
    from agentchat_server.testing import TestServer

    async with TestServer(tmp_path, dev=True) as running:
        yield running


class Console:
    """What a page logs: each console call's arguments as JSON values, awaitable as they arrive."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []
        self.errors: list[str] = []
        self._changed = asyncio.Condition()

    async def record(self, message: Any) -> None:
        try:
            args = [await arg.json_value() for arg in message.args]
        except Exception:  # a value that is not JSON (a function, a DOM node): not ours to check
            return
        async with self._changed:
            self.calls.append(args)
            self._changed.notify_all()

    async def wait_for(self, wanted: Any, timeout: float) -> list[Any]:
        """The first logged call `wanted` accepts, waiting for it."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for args in self.calls:
                    if wanted(args):
                        return args
                assert not self.errors, self.errors
                await self._changed.wait()


async def run_in_page(browser: Any, url: str, script: str, module: bool = False) -> Console:
    """Open the app at `url` and run a block as its browser console would (or as a module)."""
    page = await browser.new_page()
    console = Console()
    page.on("console", lambda message: asyncio.ensure_future(console.record(message)))
    page.on("pageerror", lambda exc: console.errors.append(str(exc)))
    await page.goto(url + "/")
    if module:
        await page.add_script_tag(content=script, type="module")
    else:
        await page.evaluate(f"(async () => {{ {script} }})()")
    return console


def frame_with(ref: int) -> Any:
    return lambda args: bool(args) and isinstance(args[0], dict) and args[0].get("ref") == ref


async def test_the_readme_raw_client_runs_in_a_browser_console(browser: Any, dev_server: Any) -> None:
    """The README's raw client, run in the console of a dev server's page, connects, attaches and
    gets its publish acked with a serial."""
    console = await run_in_page(browser, dev_server.url, block("README.md", "new WebSocket").text)
    (ack,) = await console.wait_for(frame_with(2), UNIT * 10)
    assert ack["type"] == "ack" and ack["serials"][0] >= 1, ack
    (attached,) = await console.wait_for(frame_with(1), UNIT * 10)
    assert attached["type"] == "attached", attached
    assert console.calls[0][0]["type"] == "connected"


async def test_the_agentchat_js_examples_run_in_a_browser(browser: Any, dev_server: Any) -> None:
    """docs/web.md's agentchat.js examples, run as one module on a dev server's page: the client
    connects, reads history, attaches, publishes, reacts, replies in a thread, edits, marks read,
    names a room, and streams an answer that ends as one message.
    Substituted: the stream replies to serial 1 (the page's first message), not 42."""
    first = block("docs/web.md", "new AgentChat(").text
    chat = block("docs/web.md", "applyEvent, countReply").text
    second = block("docs/web.md", "lobby.openStream(").text.replace("reply_to: 42", "reply_to: 1")
    console = await run_in_page(browser, dev_server.url, "\n".join((first, chat, second)), module=True)
    final = await console.wait_for(lambda args: args[:1] == ["final"], UNIT * 20)
    assert final[1:] == ["complete", "Hello!"]
    await console.wait_for(lambda args: args[:3] == [1, "ana", "hello @planner"], UNIT * 10)
