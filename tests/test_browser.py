"""End-to-end tests of the browser app (web/) in Debian's Chromium, driven by Playwright.

Agents are played by a raw protocol client over aiohttp, so the test decides when every chunk of a
stream is sent (a reload lands exactly mid-stream, then the stream goes on). Timeouts are multiples of
one unit (AGENTCHAT_TEST_UNIT seconds, default 1) so slow machines can scale them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

try:
    from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect
except ImportError:  # pragma: no cover - the skip rule below reports it
    async_playwright = None

try:
    # Imported as a module: a class named Test* in this namespace would be collected by pytest.
    from agentchat_server import testing as server_testing
except ImportError as exc:  # the server is part of this repository: never a reason to skip
    server_testing = None
    SERVER_IMPORT_ERROR = str(exc)

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--mute-audio",
]
UNIT = float(os.environ.get("AGENTCHAT_TEST_UNIT", "1"))
TIMEOUT = 10 * UNIT  # seconds, for Python-side waits
TIMEOUT_MS = TIMEOUT * 1000
ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
LOBBY = "room:lobby"


def _require(ok: bool, reason: str) -> None:
    """Skips the test when the browser is not installed here; in CI (CI=true) that is a failure."""
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(reason)


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def server_settings() -> dict[str, Any]:
    """Settings overrides for the server; a test changes them with parametrize("server_settings", ...)."""
    return {}


@pytest.fixture
async def server(tmp_path: Path, server_settings: dict[str, Any]) -> AsyncIterator[Any]:
    """A dev-mode server on a free loopback port, serving web/."""
    assert server_testing is not None, f"channels.testing is missing: {SERVER_IMPORT_ERROR}"
    async with server_testing.TestServer(tmp_path, dev=True, **server_settings) as running:
        yield running


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless; never a downloaded browser."""
    _require(async_playwright is not None, "the Python package playwright is not installed")
    _require(HAVE_CHROMIUM, f"{CHROMIUM} is missing (apt-get install chromium)")
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


class Visitors:
    """Opens the app as different people (one browser context each) and records every URL they load."""

    def __init__(self, browser: Browser, server: Any) -> None:
        self.browser = browser
        self.server = server
        self.urls: list[str] = []
        self.problems: list[str] = []
        self.contexts: list[BrowserContext] = []

    async def open(
        self,
        name: str,
        room: str = LOBBY,
        viewport: dict[str, int] | None = None,
        base: str | None = None,
        setup: Callable[[Page], Awaitable[None]] | None = None,
        typed: str | None = None,
        **options: Any,
    ) -> Page:
        """A new person opens the app in `room`, types `name` (or `typed`, which the app turns into
        `name`) in the welcome dialog, and is connected."""
        context = await self.browser.new_context(
            viewport=viewport or {"width": 1280, "height": 800}, **options
        )
        self.contexts.append(context)
        context.set_default_timeout(TIMEOUT_MS)
        context.on("request", lambda req: self.urls.append(req.url))
        page = await context.new_page()
        page.on("websocket", lambda ws: self.urls.append(ws.url))
        page.on("pageerror", lambda err: self.problems.append(f"{name}: uncaught {err}"))
        page.on(
            "console",
            lambda msg: (
                msg.type in ("error", "warning") and self.problems.append(f"{name}: {msg.type} {msg.text}")
            ),
        )
        if setup is not None:
            await setup(page)
        await page.goto(f"{base or self.server.url}/#{room}")
        await page.locator("#name-input").fill(typed or name)
        await page.locator("#name-submit").click()
        await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
        await expect(page.locator("#me-name")).to_have_text(name)
        await expect(page.locator(f'#people-list [data-name="{name}"]')).to_have_count(1)
        return page

    def outside(self) -> list[str]:
        """URLs that did not go to our server on 127.0.0.1."""
        return [u for u in self.urls if not re.match(r"^(https?|wss?)://127\.0\.0\.1:\d+/", u)]

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


@pytest.fixture
async def visitors(browser: Browser, server: Any) -> AsyncIterator[Visitors]:
    """Opens pages; afterwards asserts no page requested anything beyond 127.0.0.1 or logged an error."""
    people = Visitors(browser, server)
    try:
        yield people
    finally:
        await people.close()
    assert people.urls, "no request was recorded"
    assert people.outside() == [], f"requests left 127.0.0.1: {people.outside()}"
    assert people.problems == [], f"the pages logged errors or warnings: {people.problems}"


class Agent:
    """A raw protocol client (aiohttp WebSocket, JSON frames) playing an agent under the test's control."""

    def __init__(self, http: aiohttp.ClientSession, server: Any, client_id: str) -> None:
        self.http = http
        self.server = server
        self.client_id = client_id
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.next_ref = 1

    async def start(self, channel: str = LOBBY, status: str = "idle") -> Agent:
        url = self.server.ws_url
        url += ("&" if "?" in url else "?") + "format=json"
        self.ws = await self.http.ws_connect(url)
        token = self.server.token(self.client_id, kind="agent")
        await self.ws.send_json({"type": "connect", "token": token})
        connected = await asyncio.wait_for(self.ws.receive_json(), TIMEOUT)
        assert connected["type"] == "connected", connected
        self.reader = asyncio.create_task(self._read())
        self.pinger = asyncio.create_task(self._ping(connected.get("heartbeat_interval", 15)))
        attached = await self.request(type="attach", channel=channel)
        assert attached["type"] == "attached", attached
        await self.presence(channel, status)
        return self

    async def presence(self, channel: str, status: str) -> None:
        ack = await self.request(
            type="presence", channel=channel, action="enter", data={"kind": "agent", "status": status}
        )
        assert ack["type"] == "ack", ack

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            ref = frame.get("ref")
            if ref in self.replies and frame["type"] in ("ack", "nack", "attached", "detached"):
                self.replies.pop(ref).set_result(frame)
            else:
                self.events.put_nowait(frame)

    async def _ping(self, interval: float) -> None:
        # The protocol wants a frame from us at least every heartbeat interval; this is that, not a wait.
        while True:
            await asyncio.sleep(interval / 3)
            await self.ws.send_json({"type": "ping"})

    async def request(self, **frame: Any) -> dict[str, Any]:
        ref = self.next_ref
        self.next_ref += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.replies[ref] = future
        await self.ws.send_json({**frame, "ref": ref})
        return await asyncio.wait_for(future, TIMEOUT)

    async def next_event(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The next received frame (not a reply) for which `match` is true; others are dropped."""

        async def find() -> dict[str, Any]:
            while True:
                frame = await self.events.get()
                if match(frame):
                    return frame

        return await asyncio.wait_for(find(), TIMEOUT)

    async def open_stream(self, channel: str = LOBBY, reply_to: int | None = None) -> str:
        frame: dict[str, Any] = {"type": "stream_open", "channel": channel, "name": "answer"}
        if reply_to is not None:
            frame["reply_to"] = reply_to
        ack = await self.request(**frame)
        assert ack["type"] == "ack", ack
        return str(ack["stream_id"])

    async def append(self, stream_id: str, start: int, chunks: list[str]) -> None:
        for offset, chunk in enumerate(chunks):
            ack = await self.request(type="stream_append", stream_id=stream_id, i=start + offset, d=chunk)
            assert ack["type"] == "ack", ack

    async def close(self) -> None:
        self.pinger.cancel()
        await self.ws.close()
        self.reader.cancel()


@pytest.fixture
async def agents(http: aiohttp.ClientSession, server: Any) -> AsyncIterator[Callable[..., Any]]:
    started: list[Agent] = []

    async def start(client_id: str, channel: str = LOBBY, status: str = "idle") -> Agent:
        agent = await Agent(http, server, client_id).start(channel, status)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        await agent.close()


class Link:
    """A TCP proxy on 127.0.0.1 the test can cut: the browser's connections drop like on a network failure."""

    def __init__(self, target: str) -> None:
        self.host, port = target.rsplit("//", 1)[1].split(":")
        self.port = int(port.rstrip("/"))
        self.writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Link:
        self.listener = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.listener.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.cut()
        self.listener.close()

    def cut(self) -> None:
        """Resets every open connection (the browser sees an abnormal close, 1006)."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.host, self.port)
        self.writers.update((writer, up_writer))

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers.discard(writer)
        self.writers.discard(up_writer)


async def rest_history(
    http: aiohttp.ClientSession, server: Any, channel: str = LOBBY
) -> list[dict[str, Any]]:
    """The channel's newest messages through REST, oldest first."""
    headers = {"Authorization": f"Bearer {server.token('inspector')}"}
    url = f"{server.url}/v1/channels/{channel}/messages"
    async with http.get(url, params={"limit": "200"}, headers=headers) as response:
        assert response.status == 200, await response.text()
        body = await response.json()
    return sorted(body["messages"], key=lambda m: m["serial"])


async def rest_publish(http: aiohttp.ClientSession, server: Any, client_id: str, texts: list[str]) -> None:
    headers = {"Authorization": f"Bearer {server.token(client_id)}"}
    url = f"{server.url}/v1/channels/{LOBBY}/messages"
    for start in range(0, len(texts), 100):
        body = {"messages": [{"data": t} for t in texts[start : start + 100]]}
        async with http.post(url, json=body, headers=headers) as response:
            assert response.status == 201, await response.text()


def tokens(first: int, last: int) -> list[str]:
    """Distinct numbered chunks, so a duplicated or missing one is visible in the text."""
    return [f"w{n:03d} " for n in range(first, last)]


async def send(page: Page, text: str) -> None:
    await page.locator("#composer-input").fill(text)
    await page.locator("#composer-input").press("Enter")


def message(page: Page, text: str) -> Any:
    """The durable message bubbles (not pending, not streaming) whose own text contains `text`."""
    return page.locator("#messages .msg[data-serial]").filter(has=page.locator(".text", has_text=text))


async def timeline_text(page: Page) -> str:
    return str(await page.locator("#timeline").evaluate("e => e.textContent"))


# --- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_settings", [{"presence_grace": 1.0}], ids=["short-presence-grace"])
async def test_two_pages_see_each_others_messages_and_presence(visitors: Visitors) -> None:
    """Two people in the lobby see each other in presence, exchange messages once each, and see leaves."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await expect(ana.locator('#people-list [data-name="bob"]')).to_have_count(1)
    await expect(bob.locator('#people-list [data-name="ana"]')).to_have_count(1)

    await send(ana, "hello @bob, ready?")
    await expect(message(bob, "hello @bob, ready?")).to_have_count(1)
    await expect(message(bob, "hello @bob").locator(".mention.me")).to_have_text("@bob")
    await expect(message(ana, "hello @bob, ready?")).to_have_count(1)
    await expect(ana.locator("#live .msg")).to_have_count(0)

    hostile = '<img src=x onerror="window.__pwned=1"> <b>not bold</b>'
    await send(bob, hostile)
    await expect(message(ana, "not bold")).to_have_count(1)
    assert await message(ana, "not bold").locator(".text").text_content() == hostile
    assert await ana.locator("#messages img, #messages b").count() == 0
    assert await ana.evaluate("window.__pwned") is None

    await bob.context.close()
    await expect(ana.locator('#people-list [data-name="bob"]')).to_have_count(0)


async def test_reload_mid_stream_shows_every_token_once(
    visitors: Visitors, agents: Callable[..., Any], http: aiohttp.ClientSession, server: Any
) -> None:
    """A page reloaded in the middle of an agent's answer shows the same final text as history, once."""
    writer = await agents("writer", status="streaming")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await expect(bob.locator('#people-list [data-client="writer"] .agent-status')).to_have_text("streaming")

    await send(ana, "@writer count for us please")
    question = await writer.next_event(lambda f: f["type"] == "message" and "count for us" in str(f["data"]))
    stream_id = await writer.open_stream(reply_to=question["serial"])
    first, during, after = tokens(0, 30), tokens(30, 60), tokens(60, 90)
    await writer.append(stream_id, 0, first)
    live = f'#live [data-stream-id="{stream_id}"]'
    for page in (ana, bob):
        await expect(page.locator(live)).to_contain_text("w029")
        await expect(page.locator(f"{live} .reply-to")).to_contain_text("count for us")

    # The reload races the next chunks: the new page must pick the stream up with no gap and no double.
    session = await bob.evaluate("window.agentchatApp.client.session.session_id")
    reload = asyncio.create_task(bob.reload())
    await writer.append(stream_id, 30, during)
    await reload
    await expect(bob.locator("#conn")).to_have_attribute("data-state", "connected")
    assert await bob.evaluate("window.agentchatApp.client.resumed") is True
    assert await bob.evaluate("window.agentchatApp.client.session.session_id") == session
    await expect(bob.locator(live)).to_contain_text("w059")
    await writer.append(stream_id, 60, after)
    for page in (ana, bob):
        await expect(page.locator(live)).to_contain_text("w089")

    ended = await writer.request(type="stream_end", stream_id=stream_id, status="complete", chunks=90)
    assert ended["type"] == "ack", ended
    final = next(m for m in await rest_history(http, server) if m.get("stream_id") == stream_id)
    assert final["serial"] == ended["serial"]
    assert final["status"] == "complete"
    assert final["data"] == "".join(first + during + after)

    for page in (ana, bob):
        bubble = page.locator(f'#messages [data-serial="{final["serial"]}"]')
        await expect(bubble).to_have_attribute("data-status", "complete")
        await expect(page.locator(".msg.streaming")).to_have_count(0)
        assert await bubble.locator(".text").text_content() == final["data"]
        text = await timeline_text(page)
        doubled = [t for t in first + during + after if text.count(t.strip()) != 1]
        assert doubled == [], f"chunks shown other than once: {doubled}"
        await expect(message(page, "count for us")).to_have_count(1)


async def test_stop_button_cancels_a_live_stream(
    visitors: Visitors, agents: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """Stop on a live answer sends stream_cancel: the writer is told, the answer ends as cancelled."""
    writer = await agents("rambler", status="streaming")
    ana = await visitors.open("ana")
    stream_id = await writer.open_stream()
    await writer.append(stream_id, 0, ["It all began ", "a long time ", "ago, "])
    bubble = ana.locator(f'[data-stream-id="{stream_id}"]')
    await expect(bubble).to_contain_text("ago,")

    await bubble.locator(".stop").click()
    told = await writer.next_event(lambda f: f["type"] == "stream_cancelled" and f["stream_id"] == stream_id)
    assert told["by"] == await ana.evaluate("window.agentchatApp.me()")
    await expect(bubble).to_have_attribute("data-status", "cancelled")
    await expect(bubble.locator(".status.cancelled")).to_be_visible()
    await expect(bubble.locator(".stop")).to_have_count(0)
    await expect(ana.locator(".msg.streaming")).to_have_count(0)

    refused = await writer.request(type="stream_append", stream_id=stream_id, i=3, d="more")
    assert refused["type"] == "nack" and refused["code"] == 40401, refused
    stored = [m for m in await rest_history(http, visitors.server) if m.get("stream_id") == stream_id]
    assert [(m["status"], m["data"]) for m in stored] == [("cancelled", "It all began a long time ago, ")]


async def test_scrolling_up_loads_older_history_pages(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A long room shows its newest page first; scrolling up brings older pages, each message once."""
    await rest_publish(http, visitors.server, "archivist", [f"note {n:03d}" for n in range(1, 131)])
    ana = await visitors.open("ana")
    await expect(message(ana, "note 130")).to_have_count(1)
    assert await message(ana, "note 001").count() == 0

    timeline = ana.locator("#timeline")
    for _ in range(5):
        if await message(ana, "note 001").count():
            break
        shown = await ana.locator("#messages .msg").count()
        await timeline.evaluate("e => { e.scrollTop = 0; }")
        await ana.wait_for_function("n => document.querySelectorAll('#messages .msg').length > n", arg=shown)
    await expect(ana.locator("#timeline-top")).to_have_attribute("data-state", "start")
    serials = await ana.locator("#messages .msg").evaluate_all(
        "els => els.map(e => Number(e.dataset.serial))"
    )
    assert serials == list(range(1, 131))


async def test_reconnect_resumes_without_missing_a_message(visitors: Visitors) -> None:
    """After its connection drops, the page shows reconnecting, comes back and shows what it missed, once."""
    async with Link(visitors.server.url) as link:
        ana = await visitors.open("ana", base=link.url)
        bob = await visitors.open("bob")
        release = asyncio.Event()

        async def hold_token(route: Any) -> None:
            await release.wait()  # keeps ana away until bob has spoken
            await route.continue_()

        await ana.route("**/v1/dev/token", hold_token)
        link.cut()
        await expect(ana.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        await send(bob, "said while ana was away")
        await expect(message(bob, "said while ana was away")).to_have_count(1)
        release.set()
        await expect(ana.locator("#conn")).to_have_attribute("data-state", "connected")
        await expect(message(ana, "said while ana was away")).to_have_count(1)
        await send(ana, "back again")
        await expect(message(bob, "back again")).to_have_count(1)
        await expect(message(ana, "back again")).to_have_count(1)


async def test_token_renewal_keeps_the_page_connected(visitors: Visitors) -> None:
    """With a short-lived token the page answers auth_renew with a fresh token, which the server accepts."""
    fetched: list[str] = []
    renewed = asyncio.Event()
    auth_refs: set[int] = set()

    async def short_tokens(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        fetched.append(body["client_id"])
        await route.continue_(post_data=json.dumps({**body, "ttl": 10}))

    def watch(ws: Any) -> None:
        def sent(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "auth":
                auth_refs.add(frame["ref"])

        def received(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if frame.get("type") == "ack" and frame.get("ref") in auth_refs:
                renewed.set()

        ws.on("framesent", sent)
        ws.on("framereceived", received)

    async def setup(page: Page) -> None:
        await page.route("**/v1/dev/token", short_tokens)
        page.on("websocket", watch)

    ana = await visitors.open("ana", setup=setup)
    await asyncio.wait_for(renewed.wait(), 2 * TIMEOUT)  # auth_renew comes at half the token's 10 s life
    assert fetched == [await ana.evaluate("window.agentchatApp.me()")] * 2
    await expect(ana.locator("#conn")).to_have_attribute("data-state", "connected")
    await send(ana, "still here")
    await expect(message(ana, "still here")).to_have_count(1)


async def test_continuity_loss_reloads_the_room_and_says_so(visitors: Visitors) -> None:
    """When an attach cannot continue (e.g. the epoch changed) the page shows it and reloads the room."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    for n in range(3):
        await send(bob, f"line {n}")
    await expect(message(ana, "line 2")).to_have_count(1)
    # The server reports this on an attach when history was reset; the test hands the page that frame.
    await ana.evaluate(
        """() => {
            const channel = window.agentchatApp.channel;
            channel.receive({type: "attached", channel: channel.name, resumed: false,
                              position: {serial: channel.position.serial, epoch: "new-epoch"},
                              reason: {code: 80003, message: "channel epoch changed"}});
        }"""
    )
    await expect(ana.locator("#conn")).to_have_attribute("data-state", "lost")
    await expect(ana.locator("#conn-text")).to_have_text("continuity lost")
    await expect(ana.locator("#messages .notice")).to_contain_text("channel epoch changed")
    for n in range(3):
        await expect(message(ana, f"line {n}")).to_have_count(1)
    await send(bob, "after the loss")
    await expect(message(ana, "after the loss")).to_have_count(1)


@pytest.mark.parametrize("server_settings", [{"demo": True}], ids=["demo"])
async def test_demo_agents_answer_in_the_lobby(visitors: Visitors, http: aiohttp.ClientSession) -> None:
    """In demo mode the planner streams an answer into the page and echo replies to its mentions."""
    ana = await visitors.open("ana")
    for agent in ("planner", "echo"):
        await expect(ana.locator(f'#people-list [data-client="{agent}"][data-kind="agent"]')).to_have_count(1)

    await send(ana, "@planner hello, what should we do first?")
    answer = ana.locator('.msg[data-client="planner"]')
    await expect(answer.locator(".reply-to")).to_contain_text("what should we do first")
    await expect(answer).to_have_attribute("data-status", "complete", timeout=3 * TIMEOUT_MS)
    serial = int(await answer.get_attribute("data-serial") or 0)
    stored = next(m for m in await rest_history(http, visitors.server) if m["serial"] == serial)
    assert stored["client_id"] == "planner" and stored["stream_id"]
    assert await answer.locator(".text").text_content() == stored["data"]

    await send(ana, "@echo ping")
    await expect(ana.locator('.msg[data-client="echo"]')).to_have_count(1)
    await expect(ana.locator('#people-list [data-client="planner"] .agent-status')).to_have_text("idle")


async def test_rooms_are_separate_and_remembered(visitors: Visitors) -> None:
    """A typed name becomes a valid client id; a new room starts empty, keeps its talk, survives reload."""
    zoe = await visitors.open("Zoë Li!", typed="  Zoë  Li!  ")
    assert re.fullmatch(r"zoe-li-[0-9a-f]{4}", await zoe.evaluate("window.agentchatApp.me()"))
    bob = await visitors.open("bob")
    await zoe.locator("#room-input").fill("design review")
    await zoe.locator("#room-input").press("Enter")
    await expect(zoe.locator("#room-title")).to_have_text("design review")
    await expect(zoe.locator("#timeline-top")).to_have_attribute("data-state", "start")
    assert zoe.url.endswith("#room%3Adesign-review")
    await expect(zoe.locator('#people-list [data-name="bob"]')).to_have_count(0)
    await expect(bob.locator('#people-list [data-name="Zoë Li!"]')).to_have_count(0)

    await send(zoe, "only for designers")
    await expect(message(zoe, "only for designers")).to_have_count(1)
    await send(bob, "lobby talk")
    await expect(message(bob, "lobby talk")).to_have_count(1)

    await zoe.reload()
    await expect(zoe.locator("#room-title")).to_have_text("design review")
    await expect(message(zoe, "only for designers")).to_have_count(1)
    await expect(zoe.locator("#room-list a")).to_have_text(["design review", "room:lobby"])
    await zoe.locator("#room-list a", has_text="room:lobby").click()
    await expect(message(zoe, "lobby talk")).to_have_count(1)
    assert await message(zoe, "only for designers").count() == 0
    assert await message(bob, "only for designers").count() == 0
