"""People in the web app: display names in any script, same names told apart, agents' hint, who stopped."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, Route, expect

from tests.browser_helpers import publish
from tests.test_browser import (  # noqa: F401 (fixtures)
    Visitors,
    agents,
    browser,
    http,
    message,
    send,
    server,
    server_settings,
    visitors,
)

pytestmark = pytest.mark.browser


async def test_display_names_in_any_script_are_shown_to_everyone(visitors: Visitors) -> None:
    """李雷 and Мария 🌸 keep their names as typed; their ids are ASCII slugs with a suffix."""
    requested: list[dict[str, Any]] = []

    async def record(page: Page) -> None:
        async def token(route: Route) -> None:
            requested.append(json.loads(route.request.post_data or "{}"))
            await route.continue_()

        await page.route("**/v1/dev/token", token)

    li = await visitors.open("李雷", setup=record)
    maria = await visitors.open("Мария 🌸", typed="  Мария   🌸 ")
    li_id = await li.evaluate("window.agentchatApp.me()")
    assert re.fullmatch(r"guest-[0-9a-f]{4}", li_id), li_id
    assert requested[0] == {"client_id": li_id, "kind": "human", "display_name": "李雷"}

    await expect(li.locator('#people-list [data-name="Мария 🌸"] .person-name')).to_have_text("Мария 🌸")
    await expect(li.locator('#people-list [data-name="Мария 🌸"] .avatar')).to_have_text(
        "\N{CYRILLIC CAPITAL LETTER EM}"
    )
    await send(maria, "Привет, @李雷!")
    bubble = message(li, "Привет")
    await expect(bubble.locator(".author")).to_have_text("Мария 🌸")
    await expect(bubble.locator(".mention.me")).to_have_text("@李雷")
    await expect(bubble).to_have_class(re.compile(r"\bmentions-me\b"))

    # Reloaded, the browser keeps its name and its id.
    await li.reload()
    await expect(li.locator("#me-name")).to_have_text("李雷")
    assert await li.evaluate("window.agentchatApp.me()") == li_id


async def test_two_people_with_one_name_are_told_apart(visitors: Visitors) -> None:
    """Two people called Ana get different ids; each sees only their own messages as theirs."""
    first = await visitors.open("Ana")
    second = await visitors.open("Ana", room="room:elsewhere")
    await second.evaluate("location.hash = '#room:lobby'")
    ids = [await page.evaluate("window.agentchatApp.me()") for page in (first, second)]
    assert ids[0] != ids[1] and all(re.fullmatch(r"ana-[0-9a-f]{4}", i) for i in ids), ids

    for page in (first, second):
        rows = page.locator('#people-list [data-name="Ana"] .person-name')
        await expect(rows).to_have_count(2)
        await expect(rows).to_have_text(sorted([f"Ana · {i}" for i in ids]))
    await send(first, "from the first Ana")
    await send(second, "from the second Ana")
    for page, mine, theirs in ((first, "first", "second"), (second, "second", "first")):
        await expect(message(page, f"from the {mine} Ana")).to_have_class(re.compile(r"\bmine\b"))
        await expect(message(page, f"from the {theirs} Ana")).not_to_have_class(re.compile(r"\bmine\b"))
        other = ids[1] if mine == "first" else ids[0]
        await expect(message(page, f"from the {theirs} Ana").locator(".author")).to_have_text(
            f"Ana · {other}"
        )


async def test_server_display_names_are_used_when_messages_carry_them(
    visitors: Visitors, http: aiohttp.ClientSession
) -> None:
    """A message from a token with a display name shows that name, with its client id on hover."""
    ana = await visitors.open("ana")
    await publish(http, visitors.server, "zoe-7a1c", "bonjour", display_name="Zoë")
    author = message(ana, "bonjour").locator(".author")
    await expect(author).to_have_text("Zoë")
    await expect(author).to_have_attribute("title", "Zoë · zoe-7a1c")
    # After a reload the name comes from history, which carries it too.
    await ana.reload()
    await expect(message(ana, "bonjour").locator(".author")).to_have_text("Zoë")


async def test_agent_hint_only_in_rooms_with_agents(visitors: Visitors, agents: Callable[..., Any]) -> None:
    """The composer suggests mentioning an agent only while an agent is present in the room."""
    ana = await visitors.open("ana", room="room:quiet")
    box = ana.locator("#composer-input")
    await expect(box).to_have_attribute("placeholder", "Message room:quiet")
    helper = await agents("helper", channel="room:quiet")
    await expect(box).to_have_attribute(
        "placeholder", "Message room:quiet (mention @helper to ask the agent)"
    )
    left = await helper.request(type="presence", channel="room:quiet", action="leave")
    assert left["type"] == "ack", left
    await expect(ana.locator('#people-list [data-kind="agent"]')).to_have_count(0)
    await expect(box).to_have_attribute("placeholder", "Message room:quiet")


async def test_a_cancelled_answer_says_who_stopped_it(visitors: Visitors, agents: Callable[..., Any]) -> None:
    """A stopped answer says 'stopped by bob', 'stopped by you', or 'stopped' when its writer cancelled it."""
    writer = await agents("planner", status="streaming")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    answers = []
    for text in ("half an answer", "another half", "its own stop"):
        stream_id = await writer.open_stream()
        await writer.append(stream_id, 0, [text])
        answers.append(stream_id)
        for page in (ana, bob):
            await expect(page.locator(f'[data-stream-id="{answers[-1]}"]')).to_contain_text(text)

    await bob.locator(f'[data-stream-id="{answers[0]}"] .stop').click()
    await ana.locator(f'[data-stream-id="{answers[1]}"] .stop').click()
    ended = await writer.request(type="stream_end", stream_id=answers[2], status="cancelled", chunks=1)
    assert ended["type"] == "ack", ended

    await expect(message(ana, "half an answer").locator(".status")).to_have_text("stopped by bob")
    await expect(message(ana, "another half").locator(".status")).to_have_text("stopped by you")
    await expect(message(ana, "its own stop").locator(".status")).to_have_text("stopped")
    await expect(message(bob, "half an answer").locator(".status")).to_have_text("stopped by you")
    await expect(message(bob, "another half").locator(".status")).to_have_text("stopped by ana")
