"""Read state in the web app: read marks sent as messages scroll into view, and the divider, the jump
button, the title and the room list's badges from the server's counts, surviving reloads."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser_helpers import SentFrames, publish, rest
from tests.test_browser import (  # noqa: F401 (fixtures)
    LOBBY,
    TIMEOUT,
    Visitors,
    browser,
    http,
    message,
    rest_publish,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser


async def counts(
    http: aiohttp.ClientSession, server: object, client_id: str, channel: str = LOBBY
) -> dict[str, int]:
    """`client_id`'s read mark and counts in `channel`, as the server has them."""
    body = await rest(http, server, client_id, "GET", f"/v1/unread?channels={channel}")
    entry = body["channels"][0]
    return {"last_read": entry["last_read"], "unread": entry["unread"], "mentions": entry["mentions"]}


def badge(page: Page, channel: str, kind: str) -> object:
    """A badge ("unread" or "mention") of the room list's entry for `channel`."""
    return page.locator(f'#room-list li:has(a[data-channel="{channel}"]) .badge.{kind}')


async def test_messages_scrolled_into_view_are_marked_read_on_the_server(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Messages scrolled into view move the read mark on the server; after a reload nothing is new."""
    server = visitors.server
    await rest_publish(http, server, "archivist", [f"note {n:03d}" for n in range(1, 61)])
    frames = SentFrames()

    async def watch(page: Page) -> None:
        page.on("websocket", frames.watch)

    ana = await visitors.open("ana", setup=watch)
    ana_id = await ana.evaluate("window.agentchatApp.me()")
    assert (await frames.reply("read", TIMEOUT, serial=60))["type"] == "ack"
    assert await counts(http, server, ana_id) == {"last_read": 60, "unread": 0, "mentions": 0}

    await ana.locator("#timeline").evaluate("e => { e.scrollTop = 0; }")
    await publish(http, server, "bob", "while you read old notes")
    await publish(http, server, "bob", f"@{ana_id} look at this")
    await expect(ana.locator("#jump-unread .jump-count")).to_have_text("2 new messages")
    assert await counts(http, server, ana_id) == {"last_read": 60, "unread": 2, "mentions": 1}

    await ana.locator("#jump-unread").click()
    await expect(message(ana, "look at this")).to_be_in_viewport()
    assert (await frames.reply("read", TIMEOUT, serial=62))["type"] == "ack"
    assert await counts(http, server, ana_id) == {"last_read": 62, "unread": 0, "mentions": 0}
    await ana.reload()
    await expect(message(ana, "look at this")).to_have_count(1)
    await expect(ana.locator("#messages .unread-divider")).to_have_count(0)
    await expect(ana).to_have_title("room:lobby · agentchat")


async def test_room_badges_come_from_the_server_live_and_after_a_reload(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A room read and left gets the server's unread and mention badges, live and after a reload."""
    frames = SentFrames()

    async def watch(page: Page) -> None:
        page.on("websocket", frames.watch)

    await publish(http, visitors.server, "bob", "good morning")
    ana = await visitors.open("ana", setup=watch)
    ana_id = await ana.evaluate("window.agentchatApp.me()")
    assert (await frames.reply("read", TIMEOUT))["type"] == "ack"  # ana read the lobby
    await ana.locator("#room-input").fill("Design Review")
    await ana.locator("#room-input").press("Enter")
    await expect(ana.locator("#room-title")).to_have_text("Design Review")

    await publish(http, visitors.server, "bob", "first while ana is away")
    await publish(http, visitors.server, "bob", f"@{ana_id} second, for you")
    await expect(badge(ana, LOBBY, "unread")).to_have_text("2")
    await expect(badge(ana, LOBBY, "mention")).to_have_text("@1")
    await expect(badge(ana, "room:design-review", "unread")).to_have_count(0)

    await ana.reload()
    await expect(ana.locator("#room-title")).to_have_text("Design Review")
    await expect(badge(ana, LOBBY, "unread")).to_have_text("2")
    await expect(badge(ana, LOBBY, "mention")).to_have_text("@1")

    await ana.locator(f'#room-list a[data-channel="{LOBBY}"]').click()
    divider = ana.locator("#messages .unread-divider")
    await expect(divider).to_have_count(1)
    assert "first while ana is away" in await divider.evaluate("e => e.nextElementSibling.textContent")
    await expect(badge(ana, LOBBY, "unread")).to_have_count(0)
    assert (await frames.reply("read", TIMEOUT, channel=LOBBY, serial=3))["type"] == "ack"
    assert await counts(http, visitors.server, ana_id) == {"last_read": 3, "unread": 0, "mentions": 0}
    await ana.locator('#room-list a[data-channel="room:design-review"]').click()
    await expect(ana.locator("#room-title")).to_have_text("Design Review")
    await ana.reload()
    await expect(ana.locator('#room-list a[data-channel="room:lobby"]')).to_have_count(1)
    await expect(badge(ana, LOBBY, "unread")).to_have_count(0)
    await expect(badge(ana, LOBBY, "mention")).to_have_count(0)


async def test_clicking_a_person_mentions_them_as_the_server_counts_mentions(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """Clicking a person in the presence list inserts their client id: the server counts it as a mention."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    bob_id = await bob.evaluate("window.agentchatApp.me()")
    await bob.evaluate(  # bob's tab is in the background: he reads nothing, his counts stay
        """() => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => true});
            document.dispatchEvent(new Event("visibilitychange"));
        }"""
    )
    await ana.locator(f'#people-list [data-client="{bob_id}"] .person-button').click()
    await expect(ana.locator("#composer-input")).to_have_value(f"@{bob_id} ")
    await ana.locator("#composer-input").press_sequentially("can you look?")
    await ana.locator("#composer-input").press("Enter")
    await expect(message(bob, "can you look?").locator(".mention.me")).to_have_text(f"@{bob_id}")
    await expect(bob).to_have_title("(1) room:lobby · agentchat")
    assert (await counts(http, visitors.server, bob_id))["mentions"] == 1
