"""Tokens and refusals in the web app: a page without dev mode, an embedding site's token, inline errors."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, expect

from agentchat_server import testing as server_testing
from tests.test_browser import (  # noqa: F401 (fixtures)
    LOBBY,
    TIMEOUT_MS,
    Agent,
    Visitors,
    browser,
    http,
    message,
    send,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser

# What an embedding site might give its people: talk in rooms, but neither cancel streams nor post
# in room:announcements.
PERSON_CAPS = {
    "room:*": ["subscribe", "publish", "presence", "history"],
    "room:announcements": ["subscribe", "presence", "history"],
}


@pytest.fixture
async def production(tmp_path: Path) -> AsyncIterator[Any]:
    """A server started without --dev: POST /v1/dev/token does not exist."""
    async with server_testing.TestServer(tmp_path) as running:
        yield running


async def new_page(browser: Browser, problems: list[str]) -> Page:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("pageerror", lambda err: problems.append(f"uncaught {err}"))
    page.on(
        "console",
        lambda msg: msg.type in ("error", "warning") and problems.append(f"{msg.type} {msg.text}"),
    )
    return page


async def test_without_dev_mode_the_page_says_how_to_get_a_token(production: Any, browser: Browser) -> None:
    """On a server without --dev the page explains the token hook instead of retrying for ever."""
    problems: list[str] = []
    page = await new_page(browser, problems)
    await page.goto(f"{production.url}/#room:lobby")
    await page.locator("#name-input").fill("ana")
    await page.locator("#name-submit").click()
    help_panel = page.locator("#no-token")
    await expect(help_panel).to_be_visible()
    await expect(help_panel).to_contain_text("window.agentchatConfig")
    await expect(help_panel).to_contain_text("agentchat serve --dev")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "closed")
    await expect(page.locator("#conn-text")).to_contain_text("not in dev mode")
    await expect(page.locator("#composer")).to_be_hidden()
    # The browser itself reports the dev endpoint's 404; nothing else may go wrong.
    assert [p for p in problems if "404" not in p] == [], problems
    await page.context.close()


async def test_an_embedding_site_hands_the_page_its_tokens(
    production: Any, browser: Browser, http: aiohttp.ClientSession
) -> None:
    """window.agentchatConfig gives the name and tokens; refusals of its rights show inline, without Retry."""
    problems: list[str] = []
    page = await new_page(browser, problems)
    asked: list[str] = []

    def mint() -> str:
        asked.append("token")
        return str(production.token("ana-site-7", capabilities=PERSON_CAPS))

    await page.expose_function("siteToken", mint)
    await page.add_init_script(
        "window.agentchatConfig = { name: 'Ана', token: async () => await window.siteToken() };"
    )
    await page.goto(f"{production.url}/#room:lobby")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    await expect(page.locator("#name-dialog")).not_to_be_visible()
    await expect(page.locator("#me-name")).to_have_text("Ана")
    await expect(page.locator('#people-list [data-name="Ана"]')).to_have_count(1)
    assert await page.evaluate("window.agentchatApp.me()") == "ana-site-7"
    assert asked == ["token"]

    await send(page, "hello from the embedding site")
    await expect(message(page, "hello from the embedding site")).to_have_class(re.compile(r"\bmine\b"))

    # Stop needs the cancel right, which this token lacks: the refusal is shown under the answer.
    writer = await Agent(http, production, "writer").start(LOBBY, "streaming")
    try:
        stream_id = await writer.open_stream()
        await writer.append(stream_id, 0, ["a long ", "answer "])
        bubble = page.locator(f'[data-stream-id="{stream_id}"]')
        await expect(bubble).to_contain_text("a long answer")
        await bubble.locator(".stop").click()
        await expect(bubble.locator(".problem")).to_have_text("You are not allowed to stop this answer.")
        await expect(bubble.locator(".stop")).to_be_enabled()
    finally:
        await writer.close()

    await page.evaluate("location.hash = '#room:announcements'")
    await expect(page.locator("#room-title")).to_have_text("room:announcements")
    await expect(page.locator("#timeline-top")).to_have_attribute("data-state", "start")
    await send(page, "may I post here?")
    pending = page.locator("#live .msg.failed")
    await expect(pending.locator(".problem")).to_have_text("You are not allowed to post in this room.")
    await expect(pending.locator(".retry")).to_have_count(0)
    assert problems == [], problems
    await page.context.close()


@pytest.mark.parametrize(
    "server_settings",
    [{"max_message_bytes": 1024, "publish_rate": 0.001, "publish_burst": 1}],
    ids=["small-limits"],
)
async def test_refused_sends_say_the_limit_and_retry_only_when_it_can_help(visitors: Visitors) -> None:
    """Too large: the size and the limit, no Retry. Rate limited: the wait, with a Retry that tries again."""
    ana = await visitors.open("ana")
    await send(ana, "x" * 2000)
    too_big = ana.locator("#live .msg.failed").first
    await expect(too_big.locator(".problem")).to_have_text("Message is 2 kB; the limit is 1 kB.")
    await expect(too_big.locator(".retry")).to_have_count(0)

    # The typing signal above used the connection's only publish token: this send is rate limited.
    await send(ana, "a normal line")
    limited = ana.locator("#live .msg.failed", has_text="a normal line")
    await expect(limited.locator(".problem")).to_contain_text("Too many messages; you can send again in")
    await expect(limited.locator(".retry")).to_have_count(1)
    await limited.locator(".retry").click()
    await expect(limited.locator(".problem")).to_contain_text("Too many messages")
    await expect(limited.locator(".retry")).to_have_count(1)
