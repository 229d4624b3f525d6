"""The room list from the server's directory: rooms created on another page, titles and topics set live,
and "New room" without the right to create one."""

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
from tests.browser_helpers import SentFrames, rest
from tests.test_browser import (  # noqa: F401 (fixtures)
    TIMEOUT,
    TIMEOUT_MS,
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


async def go(page: Page, typed: str) -> None:
    await page.locator("#room-input").fill(typed)
    await page.locator("#room-input").press("Enter")


async def test_a_room_created_on_one_page_is_listed_on_the_other(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A room Bob creates is listed with his title on Ana's page when she looks for one and after a reload."""
    frames = SentFrames()

    async def watch(page: Page) -> None:
        page.on("websocket", frames.watch)

    ana = await visitors.open("ana")
    bob = await visitors.open("bob", setup=watch)
    await go(bob, "Release Planning")
    await expect(bob.locator("#room-title")).to_have_text("Release Planning")
    created = await frames.reply("room_set", TIMEOUT, channel="room:release-planning", create=True)
    assert created["type"] == "ack" and created["room"]["title"] == "Release Planning", created

    await ana.locator("#room-input").focus()  # looking for a room asks the directory again
    await expect(ana.locator('#room-list a[data-channel="room:release-planning"]')).to_have_text(
        "Release Planning"
    )
    await ana.reload()
    link = ana.locator('#room-list a[data-channel="room:release-planning"]')
    await expect(link).to_have_text("Release Planning")
    await link.click()
    await expect(ana.locator("#room-title")).to_have_text("Release Planning")
    await expect(ana.locator('#people-list [data-name="bob"]')).to_have_count(1)
    room = (await rest(http, visitors.server, "ana", "GET", "/v1/channels/room:release-planning/room"))[
        "room"
    ]
    assert (room["title"], room["updated_by"]) == (
        "Release Planning",
        await bob.evaluate("window.agentchatApp.me()"),
    )


async def test_title_and_topic_changes_reach_everyone_in_the_room_live(visitors: Visitors) -> None:
    """Setting the room's title and topic in its dialog updates the other page's header and list at once."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await go(ana, "Design Review")
    await go(bob, "Design Review")
    await expect(bob.locator('#people-list [data-name="ana"]')).to_have_count(1)

    await ana.locator("#room-edit").click()
    await expect(ana.locator("#room-dialog-title")).to_have_value("Design Review")
    await ana.locator("#room-dialog-title").fill("Design Review (weekly)")
    await ana.locator("#room-dialog-topic").fill("Screens for Friday's demo")
    await ana.locator("#room-dialog-save").click()
    await expect(ana.locator("#room-dialog")).to_be_hidden()
    for page in (ana, bob):
        await expect(page.locator("#room-title")).to_have_text("Design Review (weekly)")
        await expect(page.locator("#room-topic")).to_have_text("Screens for Friday's demo")
        link = page.locator('#room-list a[data-channel="room:design-review"]')
        await expect(link).to_have_text("Design Review (weekly)")
        await expect(link).to_have_attribute("title", "room:design-review: Screens for Friday's demo")
    await expect(bob).to_have_title("Design Review (weekly) · agentchat")

    # Clearing the topic clears it everywhere.
    await bob.locator("#room-edit").click()
    await bob.locator("#room-dialog-topic").fill("")
    await bob.locator("#room-dialog-save").click()
    await expect(ana.locator("#room-topic")).to_be_hidden()


@pytest.fixture
async def production(tmp_path: Path) -> AsyncIterator[Any]:
    """A server without --dev: the page's token comes from the embedding site, with its rights."""
    async with server_testing.TestServer(tmp_path) as running:
        yield running


async def test_without_the_manage_right_a_new_room_opens_with_its_title_kept_here(
    production: Any, browser: Browser
) -> None:
    """Without `manage` a new room still opens, titled as typed here; the dialog says why it cannot save."""
    problems: list[str] = []
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("pageerror", lambda err: problems.append(f"uncaught {err}"))
    page.on("console", lambda msg: msg.type in ("error", "warning") and problems.append(msg.text))
    caps = {"room:*": ["subscribe", "publish", "presence", "history"]}
    await page.expose_function("siteToken", lambda: production.token("ana", capabilities=caps))
    await page.add_init_script("window.agentchatConfig = { name: 'Ana', token: () => window.siteToken() };")
    await page.goto(f"{production.url}/#room:lobby")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")

    await go(page, "Design Review")
    await expect(page.locator("#room-title")).to_have_text("Design Review")
    assert page.url.endswith("#room%3Adesign-review")
    await send(page, "first words here")
    await expect(message(page, "first words here")).to_have_count(1)
    await page.reload()
    await expect(page.locator("#room-title")).to_have_text("Design Review")
    await expect(page.locator('#room-list a[data-channel="room:design-review"]')).to_have_text(
        "Design Review"
    )

    await page.locator("#room-edit").click()
    await page.locator("#room-dialog-topic").fill("a topic")
    await page.locator("#room-dialog-save").click()
    await expect(page.locator("#room-dialog-hint")).to_have_text(
        "You may not change this room's title or topic: it needs the manage right."
    )
    await expect(page.locator("#room-dialog-hint")).to_have_class(re.compile(r"\berror\b"))
    assert problems == [], problems
    await context.close()
