"""Helpers shared by the web app's browser tests (tests/test_web_*.py); fixtures live in test_browser.py."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
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
    thread: int | None = None,
    kind: str = "human",
    display_name: str | None = None,
) -> int:
    """Publishes one durable message through REST as `client_id` (with a display name in its token
    when given); returns its serial."""
    token = server.token(client_id, kind=kind, display_name=display_name)
    headers = {"Authorization": f"Bearer {token}"}
    body: dict[str, Any] = {"data": data}
    if reply_to is not None:
        body["reply_to"] = reply_to
    if thread is not None:
        body["thread"] = thread
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
    """Records the JSON frames a page sends over its WebSockets, and those it receives (attach with
    `page.on("websocket", frames.watch)`); refs are matched per connection."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []
        self._sent: list[tuple[int, dict[str, Any]]] = []
        self._received: list[tuple[int, dict[str, Any]]] = []
        self._sockets = 0
        self.changed = asyncio.Event()

    def watch(self, ws: Any) -> None:
        self._sockets += 1
        n = self._sockets
        ws.on("framesent", lambda payload: self._add(self._sent, n, payload))
        ws.on("framereceived", lambda payload: self._add(self._received, n, payload))

    def _add(self, into: list[tuple[int, dict[str, Any]]], n: int, payload: str | bytes) -> None:
        frame = json.loads(payload)
        into.append((n, frame))
        if into is self._sent:
            self.frames.append(frame)
        self.changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        """The sent frames of one type."""
        return [f for f in self.frames if f.get("type") == kind]

    async def reply(self, kind: str, timeout: float, **match: Any) -> dict[str, Any]:
        """The first reply (ack or nack) to a sent frame of type `kind` (with the fields in `match`),
        waiting for it."""
        async with asyncio.timeout(timeout):
            while True:
                wanted = {
                    (n, f.get("ref"))
                    for n, f in self._sent
                    if f.get("type") == kind and all(f.get(k) == v for k, v in match.items())
                }
                for n, frame in self._received:
                    if frame.get("type") in ("ack", "nack") and (n, frame.get("ref")) in wanted:
                        return frame
                self.changed.clear()
                await self.changed.wait()


async def rest(
    http: aiohttp.ClientSession,
    server: Any,
    client_id: str,
    method: str,
    path: str,
    body: Any = None,
    *,
    expect: int = 200,
    **token: Any,
) -> Any:
    """One REST call as `client_id` (token options as `server.token`): asserts the status and
    returns the body."""
    headers = {"Authorization": f"Bearer {server.token(client_id, **token)}"}
    async with http.request(method, f"{server.url}{path}", json=body, headers=headers) as response:
        assert response.status == expect, await response.text()
        return await response.json()


def quoted(text: str) -> str:
    """A path segment: a channel name or a reaction, URL-encoded."""
    return urllib.parse.quote(text, safe="")


async def react(
    http: aiohttp.ClientSession, server: Any, client_id: str, serial: int, reaction: str, channel: str = LOBBY
) -> int | None:
    """Adds `client_id`'s reaction to message `serial` through REST; the event's serial (None: unchanged)."""
    path = f"/v1/channels/{quoted(channel)}/messages/{serial}/reactions/{quoted(reaction)}"
    body = await rest(http, server, client_id, "PUT", path)
    return None if body["serial"] is None else int(body["serial"])


async def edit(
    http: aiohttp.ClientSession, server: Any, client_id: str, serial: int, data: Any, channel: str = LOBBY
) -> int:
    """Edits `client_id`'s message `serial` through REST; the edit event's serial."""
    path = f"/v1/channels/{quoted(channel)}/messages/{serial}"
    return int((await rest(http, server, client_id, "PATCH", path, {"data": data}))["serial"])


async def history(
    http: aiohttp.ClientSession, server: Any, channel: str = LOBBY, **params: str
) -> list[dict[str, Any]]:
    """A channel's messages through REST, oldest first (`params`: view, thread, ...)."""
    query = urllib.parse.urlencode({"limit": "200", **params})
    body = await rest(http, server, "inspector", "GET", f"/v1/channels/{quoted(channel)}/messages?{query}")
    return sorted(body["messages"], key=lambda m: m["serial"])
