"""Edits, deletes and reactions in the web app, between two pages over a real server, live and after a
reload; refusals (not a moderator, too many reactions, rate limited) are shown under the message."""

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
from tests.browser_helpers import SentFrames, history, publish, react
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

MINE = re.compile(r"\bmine\b")


def chip(page: Page, text: str, reaction: str) -> Any:
    """The reaction `reaction` under the message whose text contains `text`."""
    return message(page, text).locator(f'.reaction[data-reaction="{reaction}"]')


async def pick(page: Page, text: str, reaction: str, *, typed: bool = False) -> None:
    """Reacts to a message through its React button and the picker (typing the name when `typed`)."""
    bubble = message(page, text)
    await bubble.hover()
    await bubble.locator(".react-button").click()
    picker = page.locator(".picker")
    await expect(picker).to_be_visible()
    if typed:
        await picker.locator(".picker-search").fill(reaction)
    await picker.locator(f'.picker-option[data-reaction="{reaction}"]').click()
    await expect(picker).to_be_hidden()


async def test_edits_deletes_and_reactions_reach_the_other_page_live_and_after_a_reload(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Ana edits her message, both react, Bob deletes his: each page sees it live and after a reload."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await send(ana, "Typo in this mesage")
    await send(bob, "a line I regret")
    await expect(message(bob, "Typo in this mesage")).to_have_count(1)

    original = message(ana, "Typo in this mesage")
    await original.hover()
    await expect(original.locator(".edit-button")).to_be_visible()
    await original.locator(".edit-button").click()
    editor = original.locator(".editor-input")
    await expect(editor).to_have_value("Typo in this mesage")
    await editor.fill("Typo fixed in this message")
    await editor.press("Enter")
    for page in (ana, bob):
        edited = message(page, "Typo fixed in this message")
        await expect(edited.locator(".edited")).to_have_text("(edited)")
        await expect(message(page, "mesage")).to_have_count(0)
    # Only your own messages offer Edit.
    await message(bob, "Typo fixed").hover()
    await expect(message(bob, "Typo fixed").locator(".edit-button")).to_be_hidden()

    await pick(bob, "Typo fixed", "👍")
    await expect(chip(ana, "Typo fixed", "👍").locator(".reaction-count")).to_have_text("1")
    await expect(chip(ana, "Typo fixed", "👍")).to_have_attribute("title", "bob reacted with 👍")
    await expect(chip(ana, "Typo fixed", "👍")).not_to_have_class(MINE)
    await expect(chip(bob, "Typo fixed", "👍")).to_have_class(MINE)
    await chip(ana, "Typo fixed", "👍").click()  # joins bob's reaction
    for page, title in ((ana, "You and bob reacted with 👍"), (bob, "You and ana reacted with 👍")):
        await expect(chip(page, "Typo fixed", "👍").locator(".reaction-count")).to_have_text("2")
        await expect(chip(page, "Typo fixed", "👍")).to_have_attribute("title", title)
        await expect(chip(page, "Typo fixed", "👍")).to_have_class(MINE)

    regret = message(bob, "a line I regret")
    await regret.hover()
    await regret.locator(".delete-button").click()
    await regret.locator(".confirm-delete").click()
    await expect(ana.locator(".msg.deleted .deleted-note")).to_have_text("message deleted by bob")
    await expect(bob.locator(".msg.deleted .deleted-note")).to_have_text("message deleted by you")

    for page in (ana, bob):
        await page.reload()
        await expect(message(page, "Typo fixed in this message").locator(".edited")).to_have_count(1)
        await expect(chip(page, "Typo fixed", "👍").locator(".reaction-count")).to_have_text("2")
        await expect(chip(page, "Typo fixed", "👍")).to_have_class(MINE)  # my_reactions from history
        await expect(page.locator(".msg.deleted")).to_have_count(1)
        await expect(page.locator(".msg.deleted .actions .action:visible")).to_have_count(0)

    stored = await history(http, visitors.server, view="main")
    assert [(m["data"], bool(m.get("edited")), bool(m.get("deleted"))) for m in stored] == [
        ("Typo fixed in this message", True, False),
        (None, False, True),
    ]
    assert stored[0]["reactions"]["👍"]["count"] == 2


async def test_taking_back_a_reaction_and_short_names(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A typed short name is a reaction; clicking your own reaction takes it back, on both pages."""
    await publish(http, visitors.server, "carol", "ship it?")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await pick(ana, "ship it?", "lgtm", typed=True)
    await expect(chip(bob, "ship it?", "lgtm")).to_contain_text("lgtm1")
    await expect(chip(bob, "ship it?", "lgtm")).to_have_class(re.compile(r"\bnamed\b"))
    await pick(ana, "ship it?", "🚀")
    await expect(bob.locator(".reaction[data-reaction]")).to_have_count(2)
    await chip(ana, "ship it?", "lgtm").click()
    for page in (ana, bob):
        await expect(chip(page, "ship it?", "lgtm")).to_have_count(0)
        await expect(chip(page, "ship it?", "🚀")).to_have_count(1)
    # Someone reacting through REST (another device, an agent) shows live too.
    await react(http, visitors.server, "dave", 1, "🚀")
    await expect(chip(bob, "ship it?", "🚀").locator(".reaction-count")).to_have_text("2")


@pytest.mark.parametrize("server_settings", [{"max_reactions_per_message": 2}], ids=["two-reactions"])
async def test_a_message_full_of_reactions_says_so_under_it(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A reaction beyond the message's bound (42904) is refused with a sentence and no Retry."""
    await publish(http, visitors.server, "carol", "react to me")
    await react(http, visitors.server, "dave", 1, "👍")
    await react(http, visitors.server, "erin", 1, "👀")
    ana = await visitors.open("ana")
    await expect(message(ana, "react to me").locator(".reaction[data-reaction]")).to_have_count(2)
    await pick(ana, "react to me", "🎉")
    problem = message(ana, "react to me").locator(".problem")
    await expect(problem).to_have_text("This message has all the reactions it can hold.")
    await expect(problem.locator(".retry")).to_have_count(0)
    # Joining an existing reaction is within the bound, and clears the problem.
    await chip(ana, "react to me", "👍").click()
    await expect(chip(ana, "react to me", "👍").locator(".reaction-count")).to_have_text("2")
    await expect(problem).to_have_count(0)


@pytest.mark.parametrize(
    "server_settings", [{"publish_rate": 0.001, "publish_burst": 1}], ids=["one-publish"]
)
async def test_a_rate_limited_reaction_says_when_to_retry(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Once the read mark spent the publish budget, a reaction gets 42900 inline with the wait and Retry."""
    await publish(http, visitors.server, "carol", "a busy room")
    frames = SentFrames()

    async def watch(page: Page) -> None:
        page.on("websocket", frames.watch)

    ana = await visitors.open("ana", setup=watch)
    marked = await frames.reply("read", TIMEOUT)  # the read mark took the only publish token
    assert marked["type"] == "ack", marked
    await pick(ana, "a busy room", "👍")
    problem = message(ana, "a busy room").locator(".problem")
    await expect(problem).to_contain_text("Too many reactions at once; try again in")
    await expect(problem.locator(".retry")).to_have_count(1)
    await problem.locator(".retry").click()
    await expect(problem).to_contain_text("Too many reactions at once")


@pytest.fixture
async def production(tmp_path: Path) -> AsyncIterator[Any]:
    """A server without --dev: the page's token comes from the embedding site, with its rights."""
    async with server_testing.TestServer(tmp_path) as running:
        yield running


async def embedded(
    browser: Browser, server: Any, client_id: str, caps: dict[str, list[str]], problems: list[str]
) -> Page:
    """A page of an embedding site whose token for `client_id` has `caps`; errors land in `problems`."""
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(TIMEOUT_MS)
    page = await context.new_page()
    page.on("pageerror", lambda err: problems.append(f"uncaught {err}"))
    page.on("console", lambda msg: msg.type in ("error", "warning") and problems.append(msg.text))
    await page.expose_function("siteToken", lambda: server.token(client_id, capabilities=caps))
    await page.add_init_script(
        f"window.agentchatConfig = {{ name: '{client_id}', token: () => window.siteToken() }};"
    )
    await page.goto(f"{server.url}/#room:lobby")
    await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
    return page


async def test_deleting_others_messages_needs_the_moderate_right(
    production: Any, browser: Browser, http: aiohttp.ClientSession
) -> None:
    """Deleting another's message without `moderate` is refused inline; a moderator's delete shows."""
    caps = {"room:*": ["subscribe", "publish", "presence", "history"]}
    await publish(http, production, "bob", "bob's words")
    problems: list[str] = []
    ana = await embedded(browser, production, "ana", caps, problems)
    words = message(ana, "bob's words")
    await words.hover()
    await expect(words.locator(".edit-button")).to_be_hidden()
    await words.locator(".delete-button").click()
    await words.locator(".confirm-delete").click()
    await expect(words.locator(".problem")).to_have_text(
        "Only moderators can delete other people's messages."
    )
    await expect(words.locator(".text")).to_have_text("bob's words")

    headers = {"Authorization": f"Bearer {production.token('mod', capabilities={'room:*': ['moderate']})}"}
    async with http.delete(
        f"{production.url}/v1/channels/room:lobby/messages/1", headers=headers
    ) as response:
        assert response.status == 200, await response.text()
    await expect(ana.locator(".msg.deleted .deleted-note")).to_have_text("message deleted by mod")
    await expect(ana.locator(".msg.deleted .problem")).to_have_count(0)
    assert problems == [], problems
    await ana.context.close()
