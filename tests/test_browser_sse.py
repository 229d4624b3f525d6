"""A real browser EventSource resumes an SSE stream by itself with Last-Event-ID: no gap, no duplicate."""

from __future__ import annotations

from typing import Any

import pytest

from tests.test_browser import TIMEOUT_MS, browser, server, server_settings  # noqa: F401 (fixtures)
from tests.wire import Wire

pytestmark = pytest.mark.browser


async def test_eventsource_resumes_after_the_server_drops_it(server: Any, browser: Any) -> None:  # noqa: F811
    """Chromium's EventSource reconnects with Last-Event-ID and continues exactly after its last event."""
    page = await browser.new_page()
    await page.goto(server.url + "/")
    token = server.token("sse-reader")
    await page.evaluate(
        """token => {
            window.got = []; window.opens = 0;
            const es = new EventSource(`/v1/channels/room:sse/events?token=${token}`);
            es.onopen = () => { window.opens += 1; };
            es.onmessage = (e) => window.got.push([e.lastEventId, JSON.parse(e.data).data]);
        }""",
        token,
    )
    await page.wait_for_function("window.opens >= 1", timeout=TIMEOUT_MS)
    pub = await Wire.open(server.ws_url, server.token("pub"))
    try:
        for i in range(5):
            await pub.request({"type": "publish", "channel": "room:sse", "data": i})
        await page.wait_for_function("window.got.length >= 5", timeout=TIMEOUT_MS)
        # The server drops the stream; messages published meanwhile must arrive after the reconnect.
        dropped = [c for c in server.broker.sessions.connections() if c.unidirectional]
        assert dropped
        for conn in dropped:
            conn.close(1001, "test drops the stream")
        for i in range(5, 10):
            await pub.request({"type": "publish", "channel": "room:sse", "data": i})
        await page.wait_for_function("window.got.length >= 10 && window.opens >= 2", timeout=TIMEOUT_MS)
        got = await page.evaluate("window.got")
        assert [data for _, data in got] == list(range(10))
        assert [int(event_id.split(":")[1]) for event_id, _ in got] == list(range(1, 11))
    finally:
        await pub.close()
        await page.close()
