"""The timeline's comforts: reply quotes and replying, day separators, and unread messages while away."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser_helpers import SentFrames, publish, store_messages
from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    LOBBY,
    Visitors,
    browser,
    http,
    message,
    rest_history,
    rest_publish,
    send,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser


async def test_reply_quotes_show_author_and_excerpt_even_for_unloaded_originals(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A reply shows who and what it quotes; an original outside the loaded page is fetched by serial."""
    server = visitors.server
    await publish(http, server, "carol", "The *launch* checklist lives in the wiki, section 4.")
    await rest_publish(http, server, "archivist", [f"note {n:03d}" for n in range(2, 80)])
    await publish(http, server, "dave", "I will take section 4", reply_to=1)
    await publish(http, server, "erin", "me too", reply_to=79)

    frames = SentFrames()

    async def watch(page: Page) -> None:
        page.on("websocket", frames.watch)

    ana = await visitors.open("ana", setup=watch)
    far = message(ana, "I will take section 4").locator(".reply-to")
    await expect(far.locator(".reply-author")).to_have_text("carol")
    await expect(far.locator(".reply-text")).to_have_text(
        "The launch checklist lives in the wiki, section 4."
    )
    assert await message(ana, "lives in the wiki").count() == 0, "the original is not in the loaded page"
    fetches = [f for f in frames.of_type("history") if f.get("after") == 0]
    assert [(f["limit"], f["direction"]) for f in fetches] == [(1, "forwards")]

    near = message(ana, "me too").locator(".reply-to")
    await expect(near).to_contain_text("archivist")
    await expect(near.locator(".reply-text")).to_have_text("note 079")
    assert [f for f in frames.of_type("history") if f.get("after") == 78] == [], "79 was in the page"

    await ana.reload()
    await expect(far.locator(".reply-author")).to_have_text("carol")
    await expect(far.locator(".reply-text")).to_contain_text("launch checklist")


async def test_clicking_a_quote_scrolls_to_its_original(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Clicking a reply's quote brings the original message into view when it is loaded."""
    server = visitors.server
    await rest_publish(http, server, "archivist", [f"note {n:03d}" for n in range(1, 41)])
    await publish(http, server, "bob", "replying to an early note", reply_to=3)
    ana = await visitors.open("ana")
    original = message(ana, "note 003")
    await expect(original).to_have_count(1)
    await expect(original).not_to_be_in_viewport()
    await message(ana, "replying to an early note").locator(".reply-to").click()
    await expect(original).to_be_in_viewport()
    await expect(original).to_have_class(re.compile(r"\bflash\b"))


async def test_reply_button_sends_a_reply_to_that_message(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Reply on a message, then Enter: the message is published with reply_to and shows its quote."""
    serial = await publish(http, visitors.server, "bob", "Who takes the **release notes**?")
    ana = await visitors.open("ana")
    question = message(ana, "Who takes the")
    await question.hover()
    await question.locator(".reply-button").click()
    await expect(ana.locator("#replying")).to_be_visible()
    await expect(ana.locator("#replying-author")).to_have_text("bob")
    await expect(ana.locator("#replying-text")).to_have_text("Who takes the release notes?")
    await send(ana, "I do")
    answer = message(ana, "I do")
    await expect(answer.locator(".reply-to .reply-author")).to_have_text("bob")
    await expect(ana.locator("#replying")).to_be_hidden()
    stored = [m for m in await rest_history(http, visitors.server) if m["data"] == "I do"]
    assert [m.get("reply_to") for m in stored] == [serial]

    await send(ana, "and a plain line")
    await expect(message(ana, "and a plain line")).to_have_count(1)
    await expect(message(ana, "and a plain line").locator(".reply-to")).to_have_count(0)
    stored = [m for m in await rest_history(http, visitors.server) if m["data"] == "and a plain line"]
    assert [m.get("reply_to") for m in stored] == [None]

    # A message grouped under its sender's previous one has Reply too, on hover.
    await publish(http, visitors.server, "bob", "and the changelog?")
    second = await publish(http, visitors.server, "bob", "also the blog post")
    follow_up = message(ana, "also the blog post")
    await expect(follow_up).to_have_class(re.compile(r"\bcont\b"))
    await follow_up.hover()
    await follow_up.locator(".reply-button").click()
    await expect(ana.locator("#replying-text")).to_have_text("also the blog post")
    await send(ana, "blog is mine")
    await expect(message(ana, "blog is mine").locator(".reply-text")).to_have_text("also the blog post")
    stored = [m for m in await rest_history(http, visitors.server) if m["data"] == "blog is mine"]
    assert [m.get("reply_to") for m in stored] == [second]


async def test_days_are_separated_and_every_time_shows_its_full_date(visitors: Visitors) -> None:
    """Messages from several days get one separator per day; hovering any time shows date and time."""
    now = datetime.now(UTC)
    older = now - timedelta(days=3)
    yesterday = now - timedelta(days=1)
    ms = lambda d: int(d.timestamp() * 1000)  # noqa: E731
    await store_messages(
        visitors.server,
        LOBBY,
        [
            (ms(older), "bob", "from three days ago"),
            (ms(older) + 60_000, "bob", "still three days ago"),
            (ms(yesterday), "carol", "from yesterday"),
            (ms(now) - 60_000, "dave", "from today"),
        ],
    )
    ana = await visitors.open("ana", timezone_id="UTC", locale="en-GB")
    await send(ana, "and now")
    await expect(message(ana, "and now")).to_have_count(1)
    days = ana.locator("#messages .day")
    await expect(days).to_have_text([f"{older:%A}, {older.day} {older:%B %Y}", "Yesterday", "Today"])
    firsts = await days.evaluate_all("els => els.map(e => e.nextElementSibling.textContent)")
    for first, text in zip(firsts, ("from three days ago", "from yesterday", "from today"), strict=True):
        assert text in first, firsts
    titles = await ana.locator("#messages .msg time").evaluate_all("els => els.map(e => e.title)")
    assert len(titles) == 5
    assert older.strftime("%-d %B %Y") in titles[0] and older.strftime("%A") in titles[0]
    assert all(str(now.year) in t or str(older.year) in t for t in titles), titles
    assert all(":" in t for t in titles), titles


async def test_scrolled_up_reader_gets_a_divider_and_counts_instead_of_a_jump(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Scrolled up, new messages do not move the view: a divider, '3 new messages', mentions apart, title."""
    await rest_publish(http, visitors.server, "archivist", [f"note {n:03d}" for n in range(1, 41)])
    ana = await visitors.open("ana")
    timeline = ana.locator("#timeline")
    await timeline.evaluate("e => { e.scrollTop = 0; }")
    await expect(ana.locator("#jump-bottom")).to_be_visible()
    await expect(ana.locator("#jump-unread")).to_be_hidden()
    assert not (await ana.title()).startswith("(")

    # The server counts mentions by client id (protocol/mentions.py): that is what the button shows.
    ana_id = await ana.evaluate("window.agentchatApp.me()")
    for text in ("first new line", "second new line", f"@{ana_id} please look"):
        await publish(http, visitors.server, "bob", text)
    await expect(message(ana, "please look")).to_have_count(1)
    jump = ana.locator("#jump-unread")
    await expect(jump.locator(".jump-count")).to_have_text("3 new messages")
    await expect(jump.locator(".jump-mentions")).to_have_text("1 mention")
    await expect(ana).to_have_title("(3) room:lobby · agentchat")
    assert await timeline.evaluate("e => e.scrollTop") == 0
    divider = ana.locator("#messages .unread-divider")
    await expect(divider).to_have_count(1)
    assert "first new line" in await divider.evaluate("e => e.nextElementSibling.textContent")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await ana.mouse.move(0, 0)  # no message hovered in the picture
    await ana.screenshot(path=str(ARTIFACTS / "unread.png"))

    await jump.click()
    await expect(divider).to_be_in_viewport()
    await timeline.evaluate("e => { e.scrollTop = 0; }")
    await ana.locator("#jump-bottom").click()
    await expect(ana).to_have_title("room:lobby · agentchat")
    await expect(jump).to_be_hidden()
    await expect(ana.locator("#jump-bottom")).to_be_hidden()

    # At the bottom, new messages keep the view there and count nothing.
    await publish(http, visitors.server, "bob", "while you watch")
    await expect(message(ana, "while you watch")).to_be_in_viewport()
    await expect(ana).to_have_title("room:lobby · agentchat")


async def test_a_hidden_tab_counts_new_messages_in_its_title(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """While the tab is hidden its title counts new messages; showing it again clears the count."""
    ana = await visitors.open("ana")

    async def set_hidden(hidden: bool) -> None:
        await ana.evaluate(
            """(hidden) => {
                Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
                document.dispatchEvent(new Event("visibilitychange"));
            }""",
            hidden,
        )

    await set_hidden(True)
    await publish(http, visitors.server, "bob", "while you were away")
    await publish(http, visitors.server, "bob", "and again")
    await expect(ana).to_have_title("(2) room:lobby · agentchat")
    await expect(message(ana, "and again")).to_be_in_viewport()
    await expect(ana.locator("#messages .unread-divider")).to_have_count(1)
    await set_hidden(False)
    await expect(ana).to_have_title("room:lobby · agentchat")
