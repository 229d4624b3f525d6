"""Screenshots of the web app in use, for the README and docs/web.md: a room with people, agents, a live
answer, reactions, a thread, an edited message, a topic and room badges; the same room on a phone; an
open thread; an agent's run waiting for an approval. They land in tests/artifacts/; the ones in docs/
are copies."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import expect

from tests.browser_helpers import publish, quoted, react, rest
from tests.room_helpers import member, ok, record, said
from tests.test_browser import (  # noqa: F401 (fixtures)
    ARTIFACTS,
    LOBBY,
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
REVIEW = "room:design-review"


async def test_screenshots_of_the_app_in_use(
    visitors: Visitors, agents: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """Saves wide, phone and thread screenshots of a busy room (for the README and docs/web.md)."""
    server = visitors.server
    for channel, title, topic in (
        (LOBBY, "Lobby", "Launch week: the demo is on Friday"),
        (REVIEW, "Design Review", "Screens for the demo"),
        ("room:release-notes", "Release Notes", ""),
    ):
        body = {"title": title, "topic": topic} if topic else {"title": title}
        await rest(http, server, "admin", "PUT", f"/v1/channels/{quoted(channel)}/room", body)
    planner = await agents("planner", status="idle")
    echo = await agents("echo", status="idle")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob", viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    ana_id = await ana.evaluate("window.agentchatApp.me()")

    # Ana read Design Review earlier; three messages came since, one naming her.
    first = await publish(http, server, "carol", "Agenda: screens first", channel=REVIEW)
    await rest(http, server, ana_id, "PUT", f"/v1/channels/{quoted(REVIEW)}/read", {"serial": first})
    for text in ("The new onboarding screens are up", "Comments by Thursday please", f"@{ana_id} yours?"):
        await publish(http, server, "carol", text, channel=REVIEW, display_name="Carol")

    await send(bob, "@echo are you awake?")
    ping = await echo.next_event(lambda f: f["type"] == "message" and "awake" in str(f["data"]))
    reply = await echo.request(
        type="publish", channel=LOBBY, data="are you awake? (echo)", reply_to=ping["serial"], id="echo-1"
    )
    assert reply["type"] == "ack", reply
    await send(bob, "Morning! The demo is on Friday and the release notes are still open.")
    notes = message(ana, "release notes are still open")
    await expect(notes).to_have_count(1)
    root = int(await notes.get_attribute("data-serial") or 0)
    await publish(http, server, "carol", "I can take the changelog part", thread=root, display_name="Carol")
    await publish(http, server, "dave", "Screens are ready for it", thread=root, display_name="Dave")
    for who, reaction in ((ana_id, "👍"), ("carol", "👍"), ("dave", "🎉"), ("carol", "lgtm")):
        await react(http, server, who, root, reaction)
    await expect(notes.locator(".replies-count")).to_have_text("2 replies")

    await send(ana, "Dry run at 3 on Thursday")
    mine = message(ana, "Dry run at 3")
    await mine.hover()
    await mine.locator(".edit-button").click()
    await mine.locator(".editor-input").fill("Dry run at 4 on Thursday, in the big room")
    await mine.locator(".editor-input").press("Enter")
    await expect(message(ana, "Dry run at 4").locator(".edited")).to_have_count(1)

    await send(ana, "@planner can you sketch a plan for the launch checklist? @bob takes the notes.")
    question = await planner.next_event(
        lambda f: f["type"] == "message" and "launch checklist" in str(f["data"])
    )
    await planner.presence(LOBBY, "streaming")
    stream_id = await planner.open_stream(reply_to=question["serial"])
    answer = (
        "Here is a plan for Friday:\n"
        "1. Freeze the main branch on Wednesday evening.\n"
        "2. @bob drafts the release notes from the merged pull requests.\n"
        "3. Run the full test suite and the load test on staging.\n"
        "4. Dry-run the demo on Thursday"
    )
    await planner.append(stream_id, 0, re.findall(r"\S+\s*", answer))
    for page in (ana, bob):
        await expect(page.locator(f'[data-stream-id="{stream_id}"]')).to_contain_text("Dry-run the demo")
        await expect(page.locator('#people-list [data-client="planner"] .agent-status')).to_have_text(
            "streaming"
        )
    await ana.locator("#room-input").focus()  # the room list asks for its counts again
    badge = ana.locator(f'#room-list li:has(a[data-channel="{REVIEW}"]) .badge.unread')
    await expect(badge).to_have_text("3")

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await ana.locator("#composer-input").fill("Thanks! I will book the room for the dry run.")
    await ana.screenshot(path=str(ARTIFACTS / "screenshot.png"))
    await bob.screenshot(path=str(ARTIFACTS / "screenshot-phone.png"))
    await bob.locator("#people-toggle").click()
    await expect(bob.locator("#people")).to_be_in_viewport(ratio=1)
    await bob.screenshot(path=str(ARTIFACTS / "screenshot-phone-people.png"))

    await notes.locator(".replies").click()
    await expect(ana.locator("#thread-messages .msg[data-serial]")).to_have_count(3)
    await ana.locator("#thread-input").fill("I'll review the screens tonight")
    await ana.mouse.move(0, 0)  # no message hovered in the picture
    await ana.screenshot(path=str(ARTIFACTS / "thread.png"))
    assert (ARTIFACTS / "screenshot.png").stat().st_size > 10_000


async def test_screenshot_of_an_agent_run(visitors: Visitors, http: aiohttp.ClientSession) -> None:
    """Saves a run card (reasoning, a tool call opened with its result, a sub-run, the answer so far)
    waiting for an approval, beside a message another agent is on (for docs/web.md)."""
    server = visitors.server
    await rest(http, server, "admin", "PUT", f"/v1/channels/{quoted(LOBBY)}/room", {"title": "Lobby"})
    planner = await member(server, "planner", channel=LOBBY)
    writer = await member(server, "writer", channel=LOBBY)
    ana = await visitors.open("ana", viewport={"width": 1280, "height": 1180})
    await send(ana, "@planner can we ship v2 to production today?")
    question = await record(planner, "message", 10, data="@planner can we ship v2 to production today?")
    run_id = (await ok(planner, {"type": "run_start", "channel": LOBBY, "reply_to": question["serial"]}))[
        "run_id"
    ]

    async def lane(run: str, kind: str, text: str, **fields: Any) -> None:
        opened = await ok(
            planner, {"type": "stream_open", "channel": LOBBY, "run_id": run, "lane": kind, **fields}
        )
        await ok(planner, {"type": "stream_append", "stream_id": opened["stream_id"], "i": 0, "d": text})
        await ok(planner, {"type": "stream_end", "stream_id": opened["stream_id"], "chunks": 1})

    await lane(run_id, "reasoning", "The release needs green CI on main and no open blockers.")
    call = {"id": "call_1", "name": "ci_status"}
    await lane(run_id, "tool_call", '{"branch": "main", "checks": ["tests", "load"]}', tool_call=call)
    result = {"tests": "passed", "load": "passed", "blockers": 0}
    await said(planner, result, LOBBY, run_id=run_id, lane="tool_result", tool_call={"id": "call_1"})
    sub_id = (await ok(planner, {"type": "run_start", "channel": LOBBY, "parent": run_id}))["run_id"]
    await lane(sub_id, "text", "Release notes drafted from 14 merged pull requests.")
    await ok(planner, {"type": "run_end", "run_id": sub_id, "status": "completed"})
    await lane(
        run_id,
        "text",
        "CI is **green** on `main` and nothing blocks the release. Deploying needs your approval.",
    )
    ask = {
        "type": "ask",
        "channel": LOBBY,
        "prompt": "Deploy v2 to production?",
        "shape": {"kind": "approval"},
    }
    await ok(planner, {**ask, "run_id": run_id})
    await send(ana, "Can someone draft the announcement for after the deploy?")
    task = await record(
        writer, "message", 10, data="Can someone draft the announcement for after the deploy?"
    )
    await ok(writer, {"type": "claim", "channel": LOBBY, "serial": task["serial"]})

    card = ana.locator(f'.run-card[data-run-id="{run_id}"]')
    await expect(card.locator(":scope > .run-head .run-status")).to_have_text("needs input")
    await card.locator("details.lane-tool-call summary").click()
    await expect(card.locator(".tool-result")).to_contain_text('"blockers": 0')
    await expect(ana.locator(".claim-note")).to_have_text("writer is on it")
    await ana.mouse.move(0, 0)
    await ana.locator("#timeline").evaluate("e => { e.scrollTop = e.scrollHeight; }")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await ana.screenshot(path=str(ARTIFACTS / "runs.png"))
    assert (ARTIFACTS / "runs.png").stat().st_size > 10_000
    for wire in (planner, writer):
        await wire.close()
