"""A commit that races a channel's first reader on a node (it lands while the node loads the
channel) is part of that reader's starting position, and holds nothing back behind it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentchat_server.store import ChannelInfo
from agentchat_server.testing import TestServer
from tests.room_helpers import member, said
from tests.wire import UNIT, Wire


async def test_a_commit_landing_while_the_channel_loads_holds_nothing_back(
    make_server: Callable[..., Any],
) -> None:
    """The node has read the channel's position from the Store but does not serve it yet when a
    message commits: the reader's `attached` position includes that message and the next message
    reaches the reader at once, not after the node's wait for a hole (made long here)."""
    srv: TestServer = await make_server(reorder_wait=UNIT * 10)
    writer = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))  # writes, never attaches
    store = srv.broker.store
    read_position, landed = asyncio.Event(), asyncio.Event()
    original = store.channel

    async def channel(name: str) -> ChannelInfo:
        info = await original(name)
        read_position.set()
        await landed.wait()  # the commit lands between this read and the node serving the channel
        return info

    store.channel = channel  # type: ignore[method-assign]
    joining = asyncio.create_task(member(srv, "ana", kind="human"))
    try:
        async with asyncio.timeout(UNIT):
            await read_position.wait()
        first = await said(writer, "committed while the room loads")
    finally:
        landed.set()
        store.channel = original  # type: ignore[method-assign]
    reader = await joining
    attached = await reader.expect("attached")
    assert attached["position"]["serial"] == first  # the message precedes this reader's start
    second = await said(writer, "the next message")
    got = await reader.expect("message", timeout=UNIT)
    assert (first, got["serial"], got["data"]) == (1, second, "the next message")
    await reader.close()
    await writer.close()
