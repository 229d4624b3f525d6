"""Threads in the web app: the root's reply count and last reply, the thread panel paging its history and
posting into it, live replies and answers, links to threads, and a reply sent to a reply's root."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser_helpers import history, publish, react
from tests.test_browser import (  # noqa: F401 (fixtures)
    LOBBY,
    Visitors,
    agents,
    browser,
    http,
    message,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser


def in_thread(page: Page, text: str) -> Any:
    """The durable messages of the thread panel whose text contains `text`."""
    return page.locator("#thread-messages .msg[data-serial]").filter(has=page.locator(".text", has_text=text))


async def reply_in_thread(page: Page, text: str) -> None:
    await page.locator("#thread-input").fill(text)
    await page.locator("#thread-input").press("Enter")


async def test_a_thread_opens_from_its_root_pages_its_replies_and_takes_new_ones(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """The root's summary opens a panel paging 60 replies and posting into the thread, seen live elsewhere."""
    server = visitors.server
    root = await publish(
        http, server, "carol", "Where do we keep the launch checklist?", display_name="Carol"
    )
    for n in range(1, 61):
        await publish(http, server, "dave", f"reply {n:02d}", thread=root, display_name="Dave")
    await publish(http, server, "erin", "a top-level line after the thread")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")

    summary = message(ana, "launch checklist").locator(".replies")
    await expect(summary.locator(".replies-count")).to_have_text("60 replies")
    # The page knows Dave's name once it saw a message of his: until then his client id stands for him.
    await expect(summary.locator(".replies-last")).to_contain_text("last reply by dave")
    await expect(message(ana, "reply 0")).to_have_count(0)  # replies stay out of the room's timeline
    await expect(message(ana, "a top-level line")).to_have_count(1)

    await summary.click()
    await expect(ana.locator("#thread")).to_be_visible()
    assert ana.url.endswith(f"#room%3Alobby/thread/{root}")
    await expect(ana.locator("#thread-count")).to_have_text("60 replies")
    await expect(summary.locator(".replies-last")).to_contain_text("last reply by Dave")
    await expect(in_thread(ana, "launch checklist")).to_have_count(1)
    await expect(in_thread(ana, "reply 60")).to_be_in_viewport()
    await expect(in_thread(ana, "reply ")).to_have_count(50)  # the newest page first
    await ana.locator("#thread-timeline").evaluate("e => { e.scrollTop = 0; }")
    await expect(in_thread(ana, "reply ")).to_have_count(60)
    texts = await ana.locator("#thread-messages .msg[data-serial] .text").all_text_contents()
    assert texts == ["Where do we keep the launch checklist?"] + [f"reply {n:02d}" for n in range(1, 61)]

    await reply_in_thread(ana, "It is in the wiki, section 4")
    await expect(in_thread(ana, "section 4")).to_have_count(1)
    await expect(message(ana, "section 4")).to_have_count(0)
    bob_summary = message(bob, "launch checklist").locator(".replies")
    await expect(bob_summary.locator(".replies-count")).to_have_text("61 replies")
    await expect(bob_summary.locator(".replies-last")).to_contain_text("last reply by ana")
    stored = [
        m
        for m in await history(http, server, thread=str(root))
        if m["data"] == "It is in the wiki, section 4"
    ]
    assert [m["thread"] for m in stored] == [root]

    # Bob opens it too and reacts to ana's reply there: ana's panel shows it live.
    await bob_summary.click()
    await expect(in_thread(bob, "section 4")).to_have_count(1)
    answer = in_thread(bob, "section 4")
    await answer.hover()
    await answer.locator(".react-button").click()
    await bob.locator('.picker-option[data-reaction="👀"]').click()
    await expect(in_thread(ana, "section 4").locator('.reaction[data-reaction="👀"]')).to_have_count(1)
    # A reaction from elsewhere (another device, an agent) reaches the panel live too.
    await react(http, server, "dave", stored[0]["serial"], "✅")
    await expect(in_thread(bob, "section 4").locator('.reaction[data-reaction="✅"]')).to_have_count(1)

    await ana.reload()
    await expect(ana.locator("#thread")).to_be_visible()
    await expect(in_thread(ana, "section 4")).to_have_count(1)
    await ana.locator("#thread-close").click()
    await expect(ana.locator("#thread")).to_be_hidden()
    assert ana.url.endswith("#room%3Alobby")


async def test_an_agent_answers_in_the_thread_and_the_root_counts_it(
    visitors: Visitors, agents: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """A stream opened with `thread` shows live in the thread panel only; its end counts on the root."""
    root = await publish(http, visitors.server, "carol", "@planner what should we test?")
    planner = await agents("planner", status="streaming")
    ana = await visitors.open("ana")
    await message(ana, "what should we test").hover()
    await message(ana, "what should we test").locator(".thread-button").click()
    await expect(ana.locator("#thread-count")).to_have_text("No replies yet")

    opened = await planner.request(type="stream_open", channel=LOBBY, name="answer", thread=root)
    assert opened["type"] == "ack", opened
    await planner.append(opened["stream_id"], 0, ["The ", "reconnects ", "first."])
    live = ana.locator(f'#thread-live [data-stream-id="{opened["stream_id"]}"]')
    await expect(live).to_contain_text("The reconnects first.")
    await expect(ana.locator(f'#live [data-stream-id="{opened["stream_id"]}"]')).to_have_count(0)
    ended = await planner.request(type="stream_end", stream_id=opened["stream_id"], chunks=3)
    assert ended["type"] == "ack", ended
    await expect(in_thread(ana, "The reconnects first.")).to_have_attribute("data-status", "complete")
    await expect(message(ana, "what should we test").locator(".replies-count")).to_have_text("1 reply")
    await expect(ana.locator("#thread-count")).to_have_text("1 reply")


async def test_a_link_to_a_reply_opens_its_roots_thread(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """#room:lobby/thread/<a reply's serial> shows the thread of that reply's root."""
    root = await publish(http, visitors.server, "carol", "the root")
    reply = await publish(http, visitors.server, "dave", "a reply", thread=root)
    ana = await visitors.open("ana", room=f"room:lobby/thread/{reply}")
    await expect(in_thread(ana, "the root")).to_have_count(1)
    await expect(in_thread(ana, "a reply")).to_have_count(1)
    assert ana.url.endswith(f"/thread/{root}")


async def test_a_reply_sent_to_a_reply_goes_to_the_real_roots_thread(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A reply refused for a root that is a reply (40004) goes to the real root's thread, posted once."""
    root = await publish(http, visitors.server, "carol", "the real root")
    reply = await publish(http, visitors.server, "dave", "an answer in its thread", thread=root)
    held: list[str] = []

    async def hold_root_fetch(ws: WebSocketRoute) -> None:
        # The page cannot check the root before its message goes out: it learns from the server.
        upstream = ws.connect_to_server()

        def from_page(payload: str | bytes) -> None:
            frame = json.loads(payload)
            if (
                frame.get("type") == "history"
                and frame.get("before") == reply + 1
                and frame.get("limit") == 1
            ):
                held.append(str(payload))
                return
            upstream.send(payload)

        ws.on_message(from_page)

    async def setup(page: Page) -> None:
        await page.route_web_socket(re.compile(r"/v1/ws"), hold_root_fetch)

    ana = await visitors.open("ana", room=f"room:lobby/thread/{reply}", setup=setup)
    await expect(ana.locator("#thread")).to_be_visible()
    await reply_in_thread(ana, "posted in the wrong place")
    await expect(in_thread(ana, "posted in the wrong place")).to_have_count(1)
    await expect(in_thread(ana, "the real root")).to_have_count(1)
    assert ana.url.endswith(f"/thread/{root}")
    assert held, "the root fetch was held back"
    stored = [m for m in await history(http, visitors.server) if m["data"] == "posted in the wrong place"]
    assert [m["thread"] for m in stored] == [root]
