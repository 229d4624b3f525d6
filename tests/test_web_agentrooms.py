"""Agent rooms in the web app, in Chromium over a real server, with agents played by raw protocol
clients: run cards (collapsed reasoning and tool calls, the answer, sub-runs) live and after a reload,
approvals answered by a click, claims, the loop brake, and failed versus cancelled endings."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.browser_helpers import LOBBY, history
from tests.room_helpers import member, ok, record, refused, said
from tests.snippets import block
from tests.test_browser import (  # noqa: F401 (fixtures)
    TIMEOUT,
    Visitors,
    browser,
    http,
    message,
    rest_publish,
    send,
    server,
    server_settings,
    visitors,
)
from tests.test_snippets import run_in_page
from tests.wire import Wire

pytestmark = pytest.mark.browser

FAST = {"room_sweep_interval": 0.05}


@pytest.fixture
async def wires(server: Any) -> AsyncIterator[Callable[..., Any]]:
    """Opens raw protocol connections attached to the lobby (agents by default); closes them after."""
    opened: list[Wire] = []

    async def open_wire(client_id: str, kind: str = "agent", present: bool = False) -> Wire:
        wire = await member(server, client_id, kind=kind, channel=LOBBY)
        if present:
            enter = {"type": "presence", "channel": LOBBY, "action": "enter", "data": {"kind": kind}}
            await ok(wire, enter)
        opened.append(wire)
        return wire

    yield open_wire
    for wire in opened:
        await wire.close()


async def lane(wire: Wire, run_id: str, kind: str, chunks: list[str], end: bool = True, **fields: Any) -> str:
    """Opens a lane of a run, appends its chunks (each acked), and ends it unless told not to."""
    opened = await ok(
        wire, {"type": "stream_open", "channel": LOBBY, "run_id": run_id, "lane": kind, **fields}
    )
    stream_id = str(opened["stream_id"])
    for i, chunk in enumerate(chunks):
        await ok(wire, {"type": "stream_append", "stream_id": stream_id, "i": i, "d": chunk})
    if end:
        await ok(wire, {"type": "stream_end", "stream_id": stream_id, "chunks": len(chunks)})
    return stream_id


async def start_run(wire: Wire, **fields: Any) -> str:
    """Starts a run in the lobby; its id."""
    return str((await ok(wire, {"type": "run_start", "channel": LOBBY, **fields}))["run_id"])


def card(page: Page, run_id: str) -> Any:
    """The card of one run."""
    return page.locator(f'.run-card[data-run-id="{run_id}"]')


def request_box(page: Page, request_id: str) -> Any:
    """The block of one input request (in a run's card, or its own card)."""
    return page.locator(f'.input-request[data-request-id="{request_id}"]')


async def check_weather_card(page: Page, run_id: str) -> None:
    """The finished weather run: completed, reasoning and tool call collapsed, the answer in markdown."""
    run = card(page, run_id)
    await expect(run.locator(":scope > .run-head .run-status")).to_have_text("completed")
    await expect(run.locator(":scope > .run-head .author")).to_have_text("planner")
    reasoning = run.locator(":scope > .run-body > details.lane-reasoning")
    await expect(reasoning).not_to_have_attribute("open", "")
    await expect(reasoning.locator("summary")).to_have_text("Reasoning")
    tool = run.locator(':scope > .run-body > details.lane-tool-call[data-tool="weather"]')
    await expect(tool).not_to_have_attribute("open", "")
    await expect(tool.locator(".tool-args")).not_to_be_visible()
    await tool.locator("summary").click()
    await expect(tool.locator(".tool-args")).to_have_text('{\n  "city": "Oslo"\n}')
    await expect(tool.locator(".tool-result")).to_have_text('{\n  "temp_c": 4\n}')
    await reasoning.locator("summary").click()
    await expect(reasoning.locator(".reasoning-text")).to_have_text("I need the weather tool")
    await expect(run.locator(":scope > .run-body > .lane-text strong")).to_have_text("4 °C")
    sub = run.locator(":scope > .subruns > .run-card")
    await expect(sub.locator(".run-status")).to_have_text("completed")
    await expect(sub.locator(".lane-text")).to_have_text("Oslo is in Norway.")
    # Records of the run are the card, never bubbles of their own.
    await expect(page.locator("#messages .msg")).to_have_count(1)


async def test_a_run_renders_as_a_card_that_a_reload_rebuilds(
    visitors: Visitors, wires: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """A run with reasoning, a tool call, its result, a sub-run and a markdown answer is one card, live
    and after a reload; the @mention the person typed became the question's `to`."""
    planner = await wires("planner", present=True)
    ana = await visitors.open("ana")
    await expect(ana.locator('#people-list [data-client="planner"]')).to_have_count(1)
    await send(ana, "@planner weather in Oslo?")
    await expect(message(ana, "weather in Oslo")).to_have_count(1)
    question = await record(planner, "message", TIMEOUT, data="@planner weather in Oslo?")
    assert question["to"] == ["planner"]

    run_id = await start_run(planner, reply_to=question["serial"])
    await expect(card(ana, run_id).locator(".run-status")).to_have_text("running")
    await lane(planner, run_id, "reasoning", ["I need ", "the weather tool"])
    call = {"id": "call_1", "name": "weather"}
    await lane(planner, run_id, "tool_call", ['{"city":', ' "Oslo"}'], tool_call=call)
    await said(planner, {"temp_c": 4}, LOBBY, run_id=run_id, lane="tool_result", tool_call={"id": "call_1"})
    sub_id = await start_run(planner, parent=run_id)
    await lane(planner, sub_id, "text", ["Oslo is ", "in Norway."])
    await ok(planner, {"type": "run_end", "run_id": sub_id, "status": "completed"})
    text_id = await lane(planner, run_id, "text", ["It is ", "**4 °C**"], end=False)
    live = card(ana, run_id).locator(":scope > .run-body > .lane-text")
    await expect(live.locator("strong")).to_have_text("4 °C")  # streamed, not yet ended
    await ok(planner, {"type": "stream_end", "stream_id": text_id, "chunks": 2})
    await ok(planner, {"type": "run_end", "run_id": run_id, "status": "completed"})
    await check_weather_card(ana, run_id)

    await ana.reload()
    await check_weather_card(ana, run_id)
    stored = await history(http, visitors.server)
    assert [m["name"] for m in stored if m.get("run_id") == run_id][0::5] == [
        "agentchat.run",
        "agentchat.run",
    ]


async def test_approvals_and_questions_are_answered_from_the_card(
    visitors: Visitors, wires: Callable[..., Any]
) -> None:
    """Approve on a run's request reaches the asking agent and both pages say who answered; a choice, a
    text and a JSON question are answered by their controls; a late answer is told who answered first."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    run_id = await start_run(planner)
    asked = await ok(
        planner,
        {
            "type": "ask",
            "channel": LOBBY,
            "prompt": "Deploy v2 to production?",
            "shape": {"kind": "approval"},
            "run_id": run_id,
        },
    )
    box = request_box(ana, asked["request_id"])
    await expect(box.locator(".prompt")).to_have_text("Deploy v2 to production?")
    await expect(card(ana, run_id).locator(".run-status")).to_have_text("needs input")
    await box.locator("button.approve").click()
    answer = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=asked["request_id"])
    assert answer["data"] == {"outcome": "approve"} and answer["client_id"].startswith("ana-")
    await expect(box.locator(".answer-line")).to_have_text("you approved")
    await expect(request_box(bob, asked["request_id"]).locator(".answer-line")).to_have_text("ana approved")
    await expect(card(bob, run_id).locator(".run-status")).to_have_text("running")
    # Bob's page answers the closed request anyway (as a click that lost the race would): 40907 says who won.
    await bob.evaluate(
        "id => agentchatApp.view.answer(agentchatApp.channel.agents.requests.get(id), 'deny')",
        asked["request_id"],
    )
    await expect(request_box(bob, asked["request_id"]).locator(".problem")).to_have_text(
        "Already answered by ana."
    )

    choice = await ok(
        planner,
        {
            "type": "ask",
            "channel": LOBBY,
            "prompt": "Which colour?",
            "shape": {"kind": "choice", "options": ["red", "blue"]},
        },
    )
    await request_box(bob, choice["request_id"]).locator("button.option", has_text="blue").click()
    picked = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=choice["request_id"])
    assert picked["data"] == {"outcome": "data", "data": "blue"} and picked["client_id"].startswith("bob-")
    await expect(request_box(ana, choice["request_id"]).locator(".answer-line")).to_have_text(
        "bob chose blue"
    )

    question = await ok(
        planner, {"type": "ask", "channel": LOBBY, "prompt": "Release name?", "shape": {"kind": "text"}}
    )
    text_box = request_box(ana, question["request_id"])
    await text_box.locator(".answer-input").fill("Aurora")
    await text_box.locator(".answer-input").press("Enter")
    named = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=question["request_id"])
    assert named["data"] == {"outcome": "data", "data": "Aurora"}
    await expect(request_box(bob, question["request_id"]).locator(".answer-line")).to_have_text(
        "ana answered: Aurora"
    )

    shaped = {"type": "ask", "channel": LOBBY, "prompt": "Scale to?", "shape": {"kind": "json"}}
    scale = await ok(planner, shaped)
    json_box = request_box(bob, scale["request_id"])
    await json_box.locator(".answer-input").fill("{nope")
    await json_box.locator("button.primary").click()
    await expect(json_box.locator(".problem")).to_have_text("That is not valid JSON.")
    await expect(json_box.locator(".answer-input")).to_have_value("{nope")  # kept, to be fixed
    await json_box.locator(".answer-input").fill('{"replicas": 3}')
    await json_box.locator("button.primary").click()
    scaled = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=scale["request_id"])
    assert scaled["data"] == {"outcome": "data", "data": {"replicas": 3}}
    await expect(request_box(ana, scale["request_id"]).locator(".answer-line")).to_have_text(
        'bob answered: {"replicas":3}'
    )

    await bob.reload()
    await expect(request_box(bob, asked["request_id"]).locator(".answer-line")).to_have_text("ana approved")
    await expect(request_box(bob, choice["request_id"]).locator(".answer-line")).to_have_text(
        "you chose blue"
    )


@pytest.mark.parametrize("server_settings", [FAST], ids=["fast-sweep"])
async def test_an_expired_request_shows_as_expired(visitors: Visitors, wires: Callable[..., Any]) -> None:
    """A request whose deadline passes shows as expired, with no buttons left."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    asked = await ok(
        planner,
        {
            "type": "ask",
            "channel": LOBBY,
            "prompt": "Quick: ship?",
            "shape": {"kind": "approval"},
            "deadline": 1,
        },
    )
    box = request_box(ana, asked["request_id"])
    await expect(box.locator("button.approve")).to_have_count(1)
    await expect(box.locator(".answer-line")).to_have_text("expired")
    await expect(box.locator("button")).to_have_count(0)


async def test_a_claim_shows_who_is_on_it_until_it_is_done(
    visitors: Visitors, wires: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """A held claim says "planner is on it" under the message (after a reload too); the claimed reply
    makes it done and the line goes."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    await send(ana, "who takes this task?")
    task = await record(planner, "message", TIMEOUT, data="who takes this task?")
    assert "to" not in task  # no @mention: addressed to nobody
    claim = await ok(planner, {"type": "claim", "channel": LOBBY, "serial": task["serial"]})
    note = message(ana, "who takes this task?").locator(".claim-note")
    await expect(note).to_have_text("planner is on it")
    await ana.reload()
    await expect(note).to_have_text("planner is on it")
    await said(planner, "done: taken care of", LOBBY, reply_to=task["serial"], claim=claim["token"])
    await expect(message(ana, "done: taken care of")).to_have_count(1)
    await expect(note).to_have_count(0)


async def test_the_loop_brake_notice_renders(visitors: Visitors, wires: Callable[..., Any]) -> None:
    """Two agents answering each other past the loop budget are braked; the room shows the notice."""
    ping = await wires("ping")
    pong = await wires("pong")
    ana = await visitors.open("ana")
    for turn in range(10):
        await said(ping if turn % 2 == 0 else pong, f"turn {turn}", LOBBY)
    await refused(ping, {"type": "publish", "channel": LOBBY, "data": "one more"}, 42907)
    notice = ana.locator("#messages .notice.loop-brake")
    text = "Agents paused after 10 turns without a person; say something to let them continue."
    await expect(notice).to_have_text(text)
    await ana.reload()
    await expect(notice).to_have_text(text)


async def test_failed_and_cancelled_endings_say_why_and_who(
    visitors: Visitors, wires: Callable[..., Any]
) -> None:
    """A failed stream and a failed run show the error; a run stopped from its card says who stopped it."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    bob = await visitors.open("bob")
    stream = await ok(planner, {"type": "stream_open", "channel": LOBBY})
    await ok(
        planner, {"type": "stream_append", "stream_id": stream["stream_id"], "i": 0, "d": "partial answer"}
    )
    error = {"message": "model unavailable", "code": "upstream_503"}
    await ok(
        planner, {"type": "stream_end", "stream_id": stream["stream_id"], "status": "failed", "error": error}
    )
    await expect(message(ana, "partial answer").locator(".status")).to_have_text("failed: model unavailable")

    failing = await start_run(planner)
    await ok(
        planner,
        {"type": "run_end", "run_id": failing, "status": "failed", "error": {"message": "tool crashed"}},
    )
    await expect(card(bob, failing).locator(".run-status")).to_have_text("failed: tool crashed")

    stopped = await start_run(planner)
    await card(ana, stopped).locator(".stop").click()
    await expect(card(ana, stopped).locator(".run-status")).to_have_text("cancelled by you")
    await expect(card(bob, stopped).locator(".run-status")).to_have_text("cancelled by ana")
    await expect(card(bob, stopped).locator(".stop")).to_have_count(0)
    await bob.reload()
    await expect(card(bob, stopped).locator(".run-status")).to_have_text("cancelled by ana")
    await expect(card(bob, failing).locator(".run-status")).to_have_text("failed: tool crashed")


@pytest.mark.parametrize("server_settings", [{"stream_grace": 0.2}], ids=["short-grace"])
async def test_a_run_whose_agent_vanished_shows_as_interrupted(
    visitors: Visitors, wires: Callable[..., Any]
) -> None:
    """A running run whose writer's connection is gone past the grace ends aborted: "interrupted"."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    run_id = await start_run(planner)
    await lane(planner, run_id, "text", ["half an ans"], end=False)
    await expect(card(ana, run_id).locator(".lane-text")).to_have_text("half an ans")
    planner.cut()
    await expect(card(ana, run_id).locator(".run-status")).to_have_text("interrupted")
    await expect(card(ana, run_id).locator(".stop")).to_have_count(0)


async def test_the_agent_rooms_example_runs_in_a_browser(
    browser: Any, server: Any, wires: Callable[..., Any]
) -> None:
    """docs/web.md's agent-rooms example, run as a module on a page after the first example (its
    `client` and `lobby`): its message is addressed to the agent, it sees the claim, approves the run's
    request, and sees the run end with its text and state."""
    planner = await wires("planner")
    script = "\n".join(
        (block("docs/web.md", "new AgentChat(").text, block("docs/web.md", "lobby.answer(").text)
    )
    console = await run_in_page(browser, server.url, script, module=True)
    question = await record(planner, "message", TIMEOUT, data="@planner deploy v2?")
    assert question["to"] == ["planner"]
    token = (await ok(planner, {"type": "claim", "channel": LOBBY, "serial": question["serial"]}))["token"]
    await console.wait_for(lambda args: args == ["claim", "planner", "held"], TIMEOUT)
    run_id = await start_run(planner, reply_to=question["serial"], claim=token)
    await ok(planner, {"type": "run_state", "run_id": run_id, "snapshot": {"steps": ["check"]}})
    await ok(
        planner,
        {
            "type": "run_state",
            "run_id": run_id,
            "delta": [{"op": "add", "path": "/steps/-", "value": "deploy"}],
        },
    )
    await lane(planner, run_id, "text", ["Deploying ", "v2"])
    ask = {
        "type": "ask",
        "channel": LOBBY,
        "prompt": "Deploy v2?",
        "shape": {"kind": "approval"},
        "run_id": run_id,
    }
    asked = await ok(planner, ask)
    answer = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=asked["request_id"])
    assert (answer["client_id"], answer["data"]) == ("ana", {"outcome": "approve"})
    await console.wait_for(lambda args: args == ["request", "Deploy v2?", "answered", "approve"], TIMEOUT)
    await ok(planner, {"type": "run_end", "run_id": run_id, "status": "completed"})
    ended = ["run", "completed", "text:Deploying v2", '{"steps":["check","deploy"]}']
    await console.wait_for(lambda args: args == ended, TIMEOUT)
    await console.wait_for(lambda args: args == ["claim", "planner", "done"], TIMEOUT)


async def test_an_answer_being_typed_survives_the_run_streaming_on(
    visitors: Visitors, wires: Callable[..., Any]
) -> None:
    """While a person types the answer to a run's question, the run's text streams on: the box keeps
    its text and the focus, and sending it reaches the agent."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    run_id = await start_run(planner)
    asked = await ok(
        planner,
        {
            "type": "ask",
            "channel": LOBBY,
            "prompt": "Which region?",
            "shape": {"kind": "text"},
            "run_id": run_id,
        },
    )
    answer_box = request_box(ana, asked["request_id"]).locator(".answer-input")
    await answer_box.fill("eu-no")
    text_id = await lane(planner, run_id, "text", ["While you decide, ", "I prepare the rest."], end=False)
    await expect(card(ana, run_id).locator(".lane-text")).to_have_text(
        "While you decide, I prepare the rest."
    )
    await expect(answer_box).to_have_value("eu-no")
    await expect(answer_box).to_be_focused()
    await answer_box.press_sequentially("rth")
    await answer_box.press("Enter")
    answer = await record(planner, "agentchat.input_answer", TIMEOUT, request_id=asked["request_id"])
    assert answer["data"] == {"outcome": "data", "data": "eu-north"}
    await ok(planner, {"type": "stream_end", "stream_id": text_id, "chunks": 2})


async def test_a_reload_mid_run_rebuilds_the_card_and_it_goes_on(
    visitors: Visitors, wires: Callable[..., Any]
) -> None:
    """Reloaded while a run writes its answer, the page rebuilds the card from history and the run's
    snapshots (finished parts, shared state, the answer so far), then follows the run to its end."""
    planner = await wires("planner")
    ana = await visitors.open("ana")
    run_id = await start_run(planner)
    await lane(planner, run_id, "reasoning", ["Checking the calendar"])
    call = {"id": "call_7", "name": "calendar"}
    await lane(planner, run_id, "tool_call", ['{"day": "friday"}'], tool_call=call)
    await said(
        planner, ["10:00", "14:00"], LOBBY, run_id=run_id, lane="tool_result", tool_call={"id": "call_7"}
    )
    await ok(planner, {"type": "run_state", "run_id": run_id, "snapshot": {"slots": ["10:00"]}})
    add = {"op": "add", "path": "/slots/-", "value": "14:00"}
    await ok(planner, {"type": "run_state", "run_id": run_id, "delta": [add]})
    text_id = await lane(planner, run_id, "text", ["Free at ", "10:00 "], end=False)
    await expect(card(ana, run_id).locator(".lane-text")).to_have_text("Free at 10:00")
    await ana.reload()
    run = card(ana, run_id)
    state = run.locator("details.lane-state")
    await state.locator("summary").click()  # the run's snapshot brought its state and deltas
    await expect(state.locator(".run-state")).to_have_text(
        '{\n  "slots": [\n    "10:00",\n    "14:00"\n  ]\n}'
    )
    await expect(run.locator(".run-status")).to_have_text("running")
    await expect(run.locator(".lane-text")).to_have_text("Free at 10:00")
    await expect(run.locator("details.lane-reasoning")).to_have_count(1)
    await expect(run.locator('details.lane-tool-call[data-tool="calendar"] .tool-state')).to_have_text("done")
    await ok(planner, {"type": "stream_append", "stream_id": text_id, "i": 2, "d": "and 14:00."})
    await expect(run.locator(".lane-text")).to_have_text("Free at 10:00 and 14:00.")
    await ok(planner, {"type": "stream_end", "stream_id": text_id, "chunks": 3})
    await ok(planner, {"type": "run_end", "run_id": run_id, "status": "completed"})
    await expect(run.locator(".run-status")).to_have_text("completed")
    await expect(run.locator(".lane-text")).to_have_count(1)


async def test_a_long_running_run_above_the_first_page_keeps_paging_whole(
    visitors: Visitors, wires: Callable[..., Any], http: aiohttp.ClientSession
) -> None:
    """A run started before the newest page shows (from its snapshot) at its place with the request it
    made there, answerable; scrolling up still brings every older message once, in order around it."""
    planner = await wires("planner")
    run_id = await start_run(planner)
    ask = {
        "type": "ask",
        "channel": LOBBY,
        "prompt": "Go on?",
        "shape": {"kind": "approval"},
        "run_id": run_id,
    }
    asked = await ok(planner, ask)
    await rest_publish(http, visitors.server, "archivist", [f"note {n:03d}" for n in range(1, 79)])
    ana = await visitors.open("ana")
    await expect(card(ana, run_id).locator(".run-status")).to_have_text("needs input")
    await request_box(ana, asked["request_id"]).locator("button.approve").click()  # asked above the page
    await record(planner, "agentchat.input_answer", TIMEOUT, request_id=asked["request_id"])
    await expect(card(ana, run_id).locator(".run-status")).to_have_text("running")
    timeline = ana.locator("#timeline")
    for _ in range(5):
        if await ana.locator("#timeline-top").get_attribute("data-state") == "start":
            break
        shown = await ana.locator("#messages .msg").count()
        await timeline.evaluate("e => { e.scrollTop = 0; }")
        await ana.wait_for_function("n => document.querySelectorAll('#messages .msg').length > n", arg=shown)
    await expect(ana.locator("#timeline-top")).to_have_attribute("data-state", "start")
    order = await ana.locator("#messages > .msg, #messages > .run-card").evaluate_all(
        "els => els.map(e => e.dataset.runId || e.querySelector('.text').textContent)"
    )
    assert order == [run_id] + [f"note {n:03d}" for n in range(1, 79)]
