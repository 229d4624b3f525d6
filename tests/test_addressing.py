"""Addressing over real sockets: `to` is validated, stored and sent; a reader may ask for messages
to it, to nobody, or from it only, live, on replay and in history (WebSocket and REST)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiohttp

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.room_helpers import ROOM, member, ok, refused, said
from tests.wire import UNIT, Wire


async def test_to_is_validated_stored_and_sent(server: TestServer, connect: Callable[..., Any]) -> None:
    """`to` names 1-32 distinct client ids; it comes back on live messages and in history."""
    ana = await connect("ana")
    await ana.request({"type": "attach", "channel": ROOM, "presence": False})
    serial = await said(ana, "plan this", to=["planner", "coder"])
    live = await ana.expect("message", serial=serial)
    assert live["to"] == ["planner", "coder"]
    page = await ok(ana, {"type": "history", "channel": ROOM})
    assert page["messages"][0]["to"] == ["planner", "coder"]
    for bad in ([], ["bad id!"], ["a", "a"], [f"c{i}" for i in range(33)], "planner"):
        await refused(ana, {"type": "publish", "channel": ROOM, "data": 1, "to": bad}, Code.INVALID_FRAME)
    ephemeral = {"type": "publish", "channel": ROOM, "data": "typing", "to": ["planner"], "ephemeral": True}
    await ok(ana, ephemeral)


async def test_a_reader_filtering_to_me_gets_only_its_messages(connect: Callable[..., Any]) -> None:
    """Live, a `to_me` reader gets messages to nobody, to it and its own, durable or ephemeral."""
    agent = await connect("planner", kind="agent")
    attached = await agent.request({"type": "attach", "channel": ROOM, "presence": False, "filter": "to_me"})
    assert attached["type"] == "attached"
    ana = await connect("ana")
    await said(ana, "for everyone")
    await said(ana, "for planner", to=["planner"])
    await said(ana, "for coder", to=["coder"])
    await said(agent, "mine, to coder", to=["coder"])
    await ok(
        ana, {"type": "publish", "channel": ROOM, "data": "psst coder", "to": ["coder"], "ephemeral": True}
    )
    await ok(
        ana,
        {"type": "publish", "channel": ROOM, "data": "psst planner", "to": ["planner"], "ephemeral": True},
    )
    await said(ana, "the end")
    seen = [await agent.expect("message") for _ in range(5)]
    assert [m["data"] for m in seen] == [
        "for everyone",
        "for planner",
        "mine, to coder",
        "psst planner",
        "the end",
    ]


async def test_replay_and_history_keep_the_filter(server: TestServer, connect: Callable[..., Any]) -> None:
    """Attaching with a position and `to_me` replays only the reader's messages; `history` and REST
    history take `filter=to_me`; an unknown filter is refused."""
    ana = await connect("ana")
    for text, to in (
        ("all", None),
        ("coder", ["coder"]),
        ("planner", ["planner"]),
        ("both", ["coder", "planner"]),
    ):
        await said(ana, text, **({"to": to} if to else {}))
    agent = await member(server, "planner", to_me=True, position=0)
    replay = await agent.messages(3)
    assert [m["data"] for m in replay] == ["all", "planner", "both"]
    page = await ok(agent, {"type": "history", "channel": ROOM, "filter": "to_me", "direction": "forwards"})
    assert [m["data"] for m in page["messages"]] == ["all", "planner", "both"]
    headers = {"Authorization": f"Bearer {server.token('coder')}"}
    url = f"{server.url}/v1/channels/{ROOM}/messages"
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.get(url, params={"filter": "to_me", "direction": "forwards"}) as resp:
            assert [m["data"] for m in (await resp.json())["messages"]] == ["all", "coder", "both"]
        async with http.get(url, params={"filter": "mine"}) as resp:
            assert resp.status == 400
    await refused(agent, {"type": "history", "channel": ROOM, "filter": "x"}, Code.INVALID_FRAME)
    wire: Wire = await connect("late")
    await refused(wire, {"type": "attach", "channel": ROOM, "filter": "nobody"}, Code.INVALID_FRAME)


async def test_server_sent_events_keep_the_filter(server: TestServer, connect: Callable[..., Any]) -> None:
    """`GET …/events?filter=to_me` replays and streams only the reader's messages; a bad filter is 400."""
    ana = await connect("ana")
    for text, to in (("all", None), ("bob", ["bob"]), ("sse", ["sse"])):
        await said(ana, text, **({"to": to} if to else {}))
    url = f"{server.url}/v1/channels/{ROOM}/events"
    params = {"token": server.token("sse"), "after": "0", "filter": "to_me"}
    seen: list[Any] = []
    async with aiohttp.ClientSession() as http:
        async with http.get(url, params={**params, "filter": "them"}) as resp:
            assert resp.status == 400
        async with http.get(url, params=params) as resp:
            async with asyncio.timeout(UNIT):
                async for raw in resp.content:
                    line = raw.decode()
                    if line.startswith("data: ") and '"type":"message"' in line:
                        seen.append(json.loads(line[6:])["data"])
                        if len(seen) == 2:
                            break
    assert seen == ["all", "sse"]


async def test_an_addressed_message_mentions_its_addressees_only(
    server: TestServer, connect: Callable[..., Any]
) -> None:
    """Unread mention counts follow the one mention rule: a message with `to` names its addressees
    (not the @names in its text), published, streamed or edited."""
    ana = await connect("ana")
    await said(ana, "@cy look at this", to=["bob"])
    sid = (await ok(ana, {"type": "stream_open", "channel": ROOM, "to": ["bob"]}))["stream_id"]
    await ok(ana, {"type": "stream_append", "stream_id": sid, "i": 0, "d": "@cy streamed"})
    await ok(ana, {"type": "stream_end", "stream_id": sid})
    edited = await said(ana, "plain", to=["bob"])
    await ok(ana, {"type": "edit", "channel": ROOM, "serial": edited, "data": "@cy edited"})
    for reader, mentions in (("bob", 3), ("cy", 0)):
        wire = await connect(reader)
        page = await ok(wire, {"type": "unread", "channels": [ROOM]})
        assert page["channels"][0]["mentions"] == mentions, reader
