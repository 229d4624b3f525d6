"""Room names in the web app: what a typed name becomes, and the titles the room list keeps."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.test_browser import (  # noqa: F401 (fixtures)
    Visitors,
    browser,
    message,
    send,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser

# (typed, channel): the documented rule, case by case; None is a hash-made slug.
RULE = [
    ("Design Review", "room:design-review"),
    ("  design   review ", "room:design-review"),
    ("Zoë's Café!", "room:zoes-cafe"),
    ("Q3 planning (draft) #2", "room:q3-planning-draft-2"),
    ("release_1.2", "room:release_1.2"),
    ("--Ops--", "room:ops"),
    ("support:Queue-1", "support:Queue-1"),
    ("李雷的房间", None),
]


async def go(page: Page, typed: str) -> None:
    await page.locator("#room-input").fill(typed)
    await page.locator("#room-input").press("Enter")


async def test_the_room_name_rule(visitors: Visitors) -> None:
    """Typed names become channels by the documented rule; a name of no ASCII letters gets a stable slug."""
    ana = await visitors.open("ana")
    made = await ana.evaluate(
        "async (typed) => { const { roomFromTyped } = await import('/rooms.js');"
        " return typed.map((t) => roomFromTyped(t)); }",
        [typed for typed, _ in RULE],
    )
    for (typed, channel), room in zip(RULE, made, strict=True):
        assert room["title"] == " ".join(typed.split()), (typed, room)
        if channel is not None:
            assert room["channel"] == channel, (typed, room)
    hashed = made[-1]["channel"]
    assert hashed.startswith("room:r-") and len(hashed) > len("room:r-"), hashed
    again = await ana.evaluate("async () => (await import('/rooms.js')).roomFromTyped('李雷的房间').channel")
    assert again == hashed
    assert await ana.evaluate("async () => (await import('/rooms.js')).roomFromTyped('   ')") is None


async def test_typed_titles_are_shown_and_kept_for_their_channels(visitors: Visitors) -> None:
    """'Design Review' opens room:design-review titled as typed; titles survive reloads; others meet there."""
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    await go(ana, "Design Review")
    await expect(ana.locator("#room-title")).to_have_text("Design Review")
    await expect(ana.locator("#room-title")).to_have_attribute("title", "room:design-review")
    assert ana.url.endswith("#room%3Adesign-review")
    await expect(ana).to_have_title("Design Review · agentchat")
    await send(ana, "agenda first")

    # The room exists with its title on the server: bob, typing it his way, meets ana under her title.
    await go(bob, "design review")
    await expect(bob.locator("#room-title")).to_have_text("Design Review")
    await expect(message(bob, "agenda first")).to_have_count(1)

    await go(ana, "李雷的房间")
    await expect(ana.locator("#room-title")).to_have_text("李雷的房间")
    await expect(ana.locator("#room-list a")).to_have_text(["李雷的房间", "Design Review", "room:lobby"])
    await ana.reload()
    await expect(ana.locator("#room-title")).to_have_text("李雷的房间")
    await ana.locator("#room-list a", has_text="Design Review").click()
    await expect(ana.locator("#room-title")).to_have_text("Design Review")
    await expect(message(ana, "agenda first")).to_have_count(1)
    await expect(ana.locator("#room-list a").first).to_have_attribute("data-channel", "room:design-review")
