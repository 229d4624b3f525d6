"""Reconnects: resume after a cut socket, dead paths, server restarts and lost continuity."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agentchat import Backoff, Client, ContinuityLost
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, Relay, cut_connection, messages_until, next_message
from tests.wire import UNIT

FAST = Backoff(initial=0.02, maximum=0.2)


async def test_cut_socket_resumes_session_without_gap_or_duplicate(server: TestServer) -> None:
    """A reader whose socket is cut resumes its session and sees every message exactly once, in order."""
    async with (
        Client(server.url, token=server.token("writer")) as writer,
        Client(server.url, token=server.token("reader"), backoff=FAST) as reader,
    ):
        room = writer.channel("room:lobby")
        subscription = reader.channel("room:lobby").subscribe()
        await subscription.start()
        session = reader.session_id
        serials = [await room.publish(n) for n in range(10)]
        assert (await next_message(subscription)).serial == serials[0]
        cut_connection(reader)
        serials += [await room.publish(n) for n in range(10, 20)]
        got = await messages_until(subscription, lambda m: m.serial == serials[-1])
        assert [m.serial for m in got] == serials[1:]
        assert reader.reconnects == 1 and reader.resumed and reader.session_id == session


async def test_requests_made_while_disconnected_complete_after_reconnect(server: TestServer) -> None:
    """A publish issued while the link is down is sent after the reconnect, once."""
    async with Client(server.url, token=server.token("ana"), backoff=FAST) as client:
        room = client.channel("room:lobby")
        await room.attach()
        cut_connection(client)
        serial = await room.publish("sent during the outage", id="outage-1")
        assert serial == 1
        page = await room.history()
        assert [m.id for m in page.messages] == ["outage-1"]
        assert client.reconnects == 1


async def test_presence_is_entered_again_when_the_session_is_lost(make_server: Callable[..., Any]) -> None:
    """Without a resumable session the client re-enters presence with its latest data."""
    server = await make_server(resume_window=0, presence_grace=0)
    async with (
        Client(server.url, token=server.token("planner", kind="agent"), backoff=FAST) as agent,
        Client(server.url, token=server.token("ana")) as watcher,
    ):
        presence = watcher.channel("room:lobby").presence
        await agent.channel("room:lobby").presence.enter({"status": "idle"})
        await agent.channel("room:lobby").presence.update({"status": "thinking"})
        async with asyncio.timeout(WAIT):
            await presence.wait_for(lambda members: len(members) == 1)
            cut_connection(agent)
            await presence.wait_for(lambda members: not members)
            back = await presence.wait_for(lambda members: len(members) == 1)
        assert back[0].data == {"status": "thinking"}
        assert agent.reconnects == 1 and not agent.resumed


async def test_silent_path_is_detected_by_heartbeat(make_server: Callable[..., Any]) -> None:
    """When frames stop arriving for 2 x heartbeat_interval the client reconnects and resumes."""
    server = await make_server(heartbeat_interval=0.2)
    async with Relay(int(server.url.rsplit(":", 1)[1])) as relay:
        async with Client(relay.url, token=server.token("ana"), backoff=FAST) as client:
            subscription = client.channel("room:lobby").subscribe()
            await subscription.start()
            relay.freeze()
            async with Client(server.url, token=server.token("bob")) as other:
                serial = await other.channel("room:lobby").publish("after the freeze")
            message = await next_message(subscription)
            assert message.serial == serial
            assert relay.connections == 2 and client.resumed


async def test_idle_client_keeps_its_connection_with_pings(make_server: Callable[..., Any]) -> None:
    """An idle client pings often enough that the server never times it out."""
    # One fifth of a unit: short enough to pass several intervals, long enough for a busy machine.
    interval = UNIT / 5
    server = await make_server(heartbeat_interval=interval)
    async with Client(server.url, token=server.token("ana")) as client:
        await client.channel("room:lobby").attach()
        # Nothing to await here: the point is that time passes with no reconnect.
        await asyncio.sleep(4 * interval)
        assert client.reconnects == 0 and client.connected


async def test_server_restart_keeps_channel_continuity(tmp_path: Path) -> None:
    """After a server restart (session gone) the channel resumes from its position via history."""
    first = TestServer(tmp_path)
    await first.start()
    port = int(first.url.rsplit(":", 1)[1])
    keys = first.settings.keys
    async with Client(first.url, token_provider=lambda: first.token("reader"), backoff=FAST) as reader:
        subscription = reader.channel("room:lobby").subscribe()
        await subscription.start()
        async with Client(first.url, token=first.token("writer")) as writer:
            before = await writer.channel("room:lobby").publish("before")
        assert (await next_message(subscription)).serial == before
        await first.stop()
        second = TestServer(tmp_path, port=port, keys=keys)
        await second.start()
        try:
            async with Client(second.url, token=second.token("writer")) as writer:
                after = [await writer.channel("room:lobby").publish(n) for n in range(3)]
            got = await messages_until(subscription, lambda m: m.serial == after[-1])
            assert [m.serial for m in got] == after
            assert not reader.resumed
        finally:
            await reader.close()
            await second.stop()


async def test_continuity_lost_when_history_is_reset(tmp_path: Path) -> None:
    """A channel whose history is gone raises ContinuityLost once, then continues live."""
    first = TestServer(tmp_path / "a")
    (tmp_path / "a").mkdir()
    await first.start()
    port = int(first.url.rsplit(":", 1)[1])
    keys = first.settings.keys
    async with Client(first.url, token_provider=lambda: first.token("reader"), backoff=FAST) as reader:
        subscription = reader.channel("room:lobby").subscribe()
        await subscription.start()
        async with Client(first.url, token=first.token("writer")) as writer:
            for n in range(3):
                await writer.channel("room:lobby").publish(n)
        assert [m.data for m in await messages_until(subscription, lambda m: m.data == 2)] == [0, 1, 2]
        await first.stop()
        (tmp_path / "b").mkdir()
        second = TestServer(tmp_path / "b", port=port, keys=keys)
        await second.start()
        try:
            with pytest.raises(ContinuityLost) as lost:
                await next_message(subscription)
            assert lost.value.channel == "room:lobby"
            async with Client(second.url, token=second.token("writer")) as writer:
                serial = await writer.channel("room:lobby").publish("fresh start")
            message = await next_message(subscription)
            assert message.serial == serial and message.data == "fresh start"
        finally:
            await reader.close()
            await second.stop()
