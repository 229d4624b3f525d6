"""Helpers for agent-room tests over real sockets: members that attach, publish and wait for records."""

from __future__ import annotations

import asyncio
from typing import Any

from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

ROOM = "team:alpha"
FAST = {"room_sweep_interval": 0.05}  # deadlines are announced within a twentieth of a second


async def member(
    srv: TestServer,
    client_id: str,
    *,
    kind: str = "agent",
    channel: str = ROOM,
    to_me: bool = False,
    position: int | None = None,
    capabilities: dict[str, list[str]] | None = None,
) -> Wire:
    """A connection of `client_id` attached to `channel` (presence off)."""
    wire = await Wire.open(srv.ws_url, srv.token(client_id, kind=kind, capabilities=capabilities))
    frame: dict[str, Any] = {"type": "attach", "channel": channel, "presence": False}
    if to_me:
        frame["filter"] = "to_me"
    if position is not None:
        frame["position"] = {"serial": position, "epoch": None}
    reply = await wire.request(frame)
    assert reply["type"] == "attached", reply
    return wire


async def say(wire: Wire, data: Any, channel: str = ROOM, **fields: Any) -> dict[str, Any]:
    """Publish one durable message; the `ack` or `nack`."""
    return await wire.request({"type": "publish", "channel": channel, "data": data, **fields})


async def said(wire: Wire, data: Any, channel: str = ROOM, **fields: Any) -> int:
    """Publish one durable message that must be accepted; its serial."""
    reply = await say(wire, data, channel, **fields)
    assert reply["type"] == "ack", reply
    return int(reply["serials"][0])


async def record(wire: Wire, name: str, timeout: float = UNIT, **match: Any) -> dict[str, Any]:
    """The next durable message named `name` (and matching fields) this wire receives."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await wire.inbox.get()
            if (
                frame["type"] == "message"
                and frame.get("serial") is not None
                and frame["name"] == name
                and all(frame.get(k) == v for k, v in match.items())
            ):
                return frame


async def ok(wire: Wire, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a request that must be acked; the ack."""
    reply = await wire.request(frame)
    assert reply["type"] == "ack", reply
    return reply


async def refused(wire: Wire, frame: dict[str, Any], code: int) -> dict[str, Any]:
    """Send a request that must be refused with `code`; the nack."""
    reply = await wire.request(frame)
    assert reply["type"] == "nack" and reply["code"] == code, reply
    return reply


def drain(wire: Wire) -> list[dict[str, Any]]:
    """Everything waiting in the inbox now."""
    frames = []
    while not wire.inbox.empty():
        frames.append(wire.inbox.get_nowait())
    return frames


async def seen(wire: Wire, *wanted: dict[str, Any], timeout: float = UNIT) -> list[dict[str, Any]]:
    """Wait until a frame matching each of `wanted` (its fields, `type` included) has arrived, in
    any order; the matching frames, in the order of `wanted`. Other frames are dropped."""
    found: list[dict[str, Any] | None] = [None] * len(wanted)
    async with asyncio.timeout(timeout):
        while None in found:
            frame = await wire.inbox.get()
            for n, fields in enumerate(wanted):
                if found[n] is None and all(frame.get(k) == v for k, v in fields.items()):
                    found[n] = frame
                    break
    return [f for f in found if f is not None]
