"""Helpers shared by the web app's browser tests (tests/test_web_*.py); fixtures live in test_browser.py."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from agentchat_server.store import Append, NewMessage

LOBBY = "room:lobby"


async def publish(
    http: aiohttp.ClientSession,
    server: Any,
    client_id: str,
    data: Any,
    *,
    channel: str = LOBBY,
    reply_to: int | None = None,
    kind: str = "human",
) -> int:
    """Publishes one durable message through REST as `client_id`; returns its serial."""
    headers = {"Authorization": f"Bearer {server.token(client_id, kind=kind)}"}
    body: dict[str, Any] = {"data": data}
    if reply_to is not None:
        body["reply_to"] = reply_to
    url = f"{server.url}/v1/channels/{channel}/messages"
    async with http.post(url, json=body, headers=headers) as response:
        assert response.status == 201, await response.text()
        return int((await response.json())["serials"][0])


async def store_messages(server: Any, channel: str, messages: list[tuple[int, str, str]]) -> None:
    """Writes (ts ms, client_id, text) messages straight into the Store, as if sent at those times."""
    batch = [
        NewMessage(f"old-{n}", "chat", text, json.dumps(text), client_id, "human", ts)
        for n, (ts, client_id, text) in enumerate(messages)
    ]
    results = await server.broker.store.commit([Append(channel, batch)])
    assert results[0] is not None and len(results[0].serials) == len(messages), results


class SentFrames:
    """Records the JSON frames a page sends over its WebSockets (attach with `page.on("websocket", ...)`)."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    def watch(self, ws: Any) -> None:
        ws.on("framesent", lambda payload: self.frames.append(json.loads(payload)))

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f.get("type") == kind]
