"""Presence in the web app after a lost session: a page whose session could not be resumed enters again
naming the lost one (`replaces`), so nobody is listed twice while the old entry would still live."""

# The fixtures come from test_browser.py by import, so test parameters shadow the imported names.
# ruff: noqa: F811

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Browser, Route, expect

from tests.browser_helpers import rest
from tests.server_process import ServerProcess
from tests.test_browser import LOBBY, UNIT, Visitors, browser, http  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


@pytest.fixture
async def node(tmp_path: Path, redis_url: str) -> AsyncIterator[ServerProcess]:
    """One dev-mode node on SQLite whose presence lives in Redis: it outlives a kill -9 of the node, as
    on a cluster, for `presence_ttl` (long here, so only `replaces` can remove an old entry in time)."""
    bus = f"{redis_url}?prefix=webpres-{secrets.token_hex(4)}"
    running = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'node.db'}", bus=bus, dev="true", presence_ttl=120 * UNIT
    )
    await running.start()
    yield running
    await running.stop()


async def listed(http: aiohttp.ClientSession, node: ServerProcess) -> list[str]:
    """The client ids of the lobby's presence entries, as the server lists them (one per connection)."""
    body = await rest(http, node, "inspector", "GET", f"/v1/channels/{LOBBY}/presence")
    return sorted(m["client_id"] for m in body["members"])


async def test_a_person_is_listed_once_after_a_lost_session(
    browser: Browser, node: ServerProcess, http: aiohttp.ClientSession
) -> None:
    """After kill -9 and a restart the pages replace their lost sessions' entries: each person listed once."""
    people = Visitors(browser, node)
    release = asyncio.Event()

    async def hold_token(route: Route) -> None:
        await release.wait()  # no request reaches a dead node: the pages wait for the restart
        await route.continue_()

    try:
        ana = await people.open("ana")
        bob = await people.open("bob")
        ids = sorted([await page.evaluate("window.agentchatApp.me()") for page in (ana, bob)])
        assert await listed(http, node) == ids
        before = {
            page: await page.evaluate("window.agentchatApp.client.session.session_id") for page in (ana, bob)
        }

        for page in (ana, bob):
            await page.route("**/v1/dev/token", hold_token)
        await node.kill()
        for page in (ana, bob):
            await expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
        await node.start()
        release.set()

        for page in (ana, bob):
            await expect(page.locator("#conn")).to_have_attribute("data-state", "connected")
            assert await page.evaluate("window.agentchatApp.client.lostSession") == before[page]
        await bob.wait_for_function(
            "ids => { const members = window.agentchatApp.channel.presence();"
            " return members.length === 2 && ids.every((id) => members.some((m) => m.client_id === id)); }",
            arg=ids,
        )
        assert await listed(http, node) == ids
        await expect(bob.locator("#people-list li")).to_have_count(2)
        await expect(bob.locator("#people-count")).to_have_text("2")
    finally:
        await people.close()
    assert people.outside() == [], f"requests left 127.0.0.1: {people.outside()}"
    assert people.problems == [], f"the pages logged errors or warnings: {people.problems}"
