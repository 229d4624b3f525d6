"""The SDK Client and Channel against a real in-process server over loopback."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from agentchat import (
    Backoff,
    Client,
    ConflictError,
    ConnectionClosed,
    Member,
    RequestError,
)
from agentchat.connection import websocket_url
from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, messages_until, next_message


def test_websocket_url_accepts_http_and_ws_bases() -> None:
    """http(s) and ws(s) bases, with or without the endpoint path, map to /v1/ws with a format."""
    assert websocket_url("http://h:1", "msgpack") == "ws://h:1/v1/ws?format=msgpack"
    assert websocket_url("https://h/chat/", "json") == "wss://h/chat/v1/ws?format=json"
    assert websocket_url("ws://h:1/v1/ws?format=json", "msgpack") == "ws://h:1/v1/ws?format=msgpack"
    with pytest.raises(ValueError):
        websocket_url("ftp://h", "json")


@pytest.mark.parametrize("fmt", ["msgpack", "json"])
async def test_publish_subscribe_history_round_trip(server: TestServer, fmt: str) -> None:
    """A published message comes back to a subscriber in order and is in history."""
    async with Client(server.url, token=server.token("ana"), format=fmt) as client:  # type: ignore[arg-type]
        room = client.channel("room:lobby")
        async with room.subscribe() as subscription:
            first = await room.publish("hello", name="chat")
            second = await room.publish({"text": "hi @bob"}, reply_to=first)
            got = [await next_message(subscription), await next_message(subscription)]
        assert [m.serial for m in got] == [first, second]
        assert got[0].data == "hello" and got[0].name == "chat" and got[0].client_id == "ana"
        assert got[1].reply_to == first and got[1].mentions == {"bob"} and got[1].text == "hi @bob"
        newest_first = await room.history(limit=1)
        assert [m.serial for m in newest_first.messages] == [second] and newest_first.has_more
        oldest_first = await room.history(after=0, direction="forwards")
        assert [m.data for m in oldest_first.messages] == ["hello", {"text": "hi @bob"}]
        assert (await room.history(before=second)).messages[0].serial == first
        assert client.client_id == "ana" and client.kind == "human" and client.connected


async def test_publish_id_dedupes_and_if_serial_conflicts(server: TestServer) -> None:
    """The same id is stored once; if_serial refuses a stale turn with the channel's last serial."""
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:turns")
        serial = await room.publish("once", id="fixed-1")
        assert await room.publish("once", id="fixed-1") == serial
        assert len((await room.history()).messages) == 1
        assert await room.publish("next", if_serial=serial) == serial + 1
        with pytest.raises(ConflictError) as conflict:
            await room.publish("late", if_serial=serial)
        assert conflict.value.code == Code.CONFLICT and conflict.value.last_serial == serial + 1
        assert await room.publish_many([{"data": "a"}, {"data": "b"}]) == [serial + 2, serial + 3]


async def test_ephemeral_messages_reach_event_feeds_only(server: TestServer) -> None:
    """Ephemeral messages arrive on `events()`, are not yielded by subscriptions nor stored."""
    async with (
        Client(server.url, token=server.token("ana")) as ana,
        Client(server.url, token=server.token("bob")) as bob,
    ):
        feed = bob.channel("room:lobby").events()
        async with bob.channel("room:lobby").subscribe() as subscription:
            await ana.channel("room:lobby").publish("typing…", ephemeral=True)
            durable = await ana.channel("room:lobby").publish("done")
            async with asyncio.timeout(WAIT):
                event = await anext(feed)
                while event.type != "message":
                    event = await anext(feed)
            assert event.frame["data"] == "typing…" and event.frame["serial"] is None
            assert (await next_message(subscription)).serial == durable
        assert [m.data for m in (await ana.channel("room:lobby").history()).messages] == ["done"]


async def test_presence_enter_update_leave_get_and_live_members(server: TestServer) -> None:
    """Presence changes show in `get()` and in the live member set of another client."""
    async with (
        Client(server.url, token=server.token("planner", kind="agent")) as agent,
        Client(server.url, token=server.token("ana")) as human,
    ):
        watched = human.channel("room:lobby").presence

        def status_is(status: str | None) -> bool:
            return any(m.client_id == "planner" and m.data.get("status") == status for m in watched.members)

        async with asyncio.timeout(WAIT):
            await watched.wait_for(lambda members: True)
            presence = agent.channel("room:lobby").presence
            await presence.enter({"kind": "agent", "status": "idle"})
            await watched.wait_for(lambda _: status_is("idle"))
            await presence.update({"kind": "agent", "status": "thinking"})
            await watched.wait_for(lambda _: status_is("thinking"))
            members = await human.channel("room:lobby").presence.get()
            assert [(m.client_id, m.kind) for m in members] == [("planner", "agent")]
            assert isinstance(members[0], Member) and members[0].connection_id
            await presence.leave()
            await watched.wait_for(lambda members: not members)
        assert await presence.get() == []


async def test_occupancy_and_detach(server: TestServer) -> None:
    """Occupancy counts attached connections; detach ends local views and frees the slot."""
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:lobby")
        subscription = room.subscribe()
        await subscription.start()
        assert (await room.occupancy())["subscribers"] == 1
        await room.detach()
        assert not room.attached
        with pytest.raises(StopAsyncIteration):
            await next_message(subscription)
        assert (await room.occupancy())["subscribers"] == 0


async def test_subscribe_after_serial_replays_then_continues(server: TestServer) -> None:
    """`subscribe(after=n)` yields every message after n, then live ones, without gap."""
    async with Client(server.url, token=server.token("ana")) as writer:
        room = writer.channel("room:lobby")
        for n in range(5):
            await room.publish(n)
        async with Client(server.url, token=server.token("bob")) as reader:
            subscription = reader.channel("room:lobby").subscribe(after=2)
            await subscription.start()
            await room.publish(5)
            got = await messages_until(subscription, lambda m: m.data == 5)
            assert [m.data for m in got] == [2, 3, 4, 5]
            # A second view on the same, already attached channel fills from history.
            late = reader.channel("room:lobby").subscribe(after=0)
            got = await messages_until(late, lambda m: m.data == 5)
            assert [m.data for m in got] == [0, 1, 2, 3, 4, 5]


async def test_slow_subscription_catches_up_from_history(server: TestServer) -> None:
    """A consumer past its buffer bound loses nothing: it refills from history, in order."""
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:lobby")
        subscription = room.subscribe(max_buffer=5)
        await subscription.start()
        serials = [await room.publish(n) for n in range(30)]
        got = await messages_until(subscription, lambda m: m.serial == serials[-1])
        assert [m.serial for m in got] == serials


async def test_refused_requests_raise_request_errors(server: TestServer) -> None:
    """A request outside the token's capabilities fails with its wire code; the client goes on."""
    token = server.token("guest", capabilities={"room:*": ["subscribe", "history"]})
    async with Client(server.url, token=token) as client:
        with pytest.raises(RequestError) as refused:
            await client.channel("room:lobby").publish("hi")
        assert refused.value.code == Code.FORBIDDEN
        assert (await client.channel("room:lobby").history()).messages == []
        with pytest.raises(RequestError):
            await client.channel("other:x").attach()


async def test_bad_token_is_fatal_on_connect(server: TestServer) -> None:
    """An invalid token stops the client with ConnectionClosed instead of retrying forever."""
    client = Client(server.url, token="not-a-jwt")
    with pytest.raises(ConnectionClosed):
        await client.connect()
    await client.close()


async def test_client_id_mismatch_is_refused(server: TestServer) -> None:
    """A client that expects one client_id refuses a token for another."""
    client = Client(server.url, token=server.token("ana"), client_id="bob")
    with pytest.raises(ConnectionClosed):
        await client.connect()
    await client.close()


async def test_token_provider_renews_on_auth_renew(server: TestServer) -> None:
    """A short-lived token is renewed from the provider on `auth_renew` without reconnecting."""
    calls = 0
    renewed = asyncio.Event()

    async def provider() -> str:
        nonlocal calls
        calls += 1
        if calls >= 3:
            renewed.set()
        return server.token("ana", ttl=6)  # auth_renew comes half-way: every 3 s

    async with Client(server.url, token_provider=provider) as client:
        async with asyncio.timeout(WAIT):
            await renewed.wait()
        assert client.reconnects == 0 and client.connected
        assert await client.channel("room:lobby").publish("still here") == 1


async def test_close_ends_subscriptions_and_refuses_requests(server: TestServer) -> None:
    """After close, iteration ends and new requests raise ConnectionClosed."""
    client = Client(server.url, token=server.token("ana"))
    await client.connect()
    subscription = client.channel("room:lobby").subscribe()
    await subscription.start()
    await client.close()
    with pytest.raises(ConnectionClosed):
        await next_message(subscription)
    with pytest.raises(ConnectionClosed):
        await client.channel("room:lobby").publish("x")


async def test_low_level_request_and_closing_views(server: TestServer) -> None:
    """`request` sends any frame and returns its reply; closing a view ends its iteration only."""
    async with Client(server.url, token=server.token("ana")) as client:
        await client.wait_connected()
        assert (await client.request({"type": "ping"}))["type"] == "ack"
        room = client.channel("room:lobby")
        subscription = await room.subscribe().start()
        feed = await room.events().start()
        subscription.close()
        feed.close()
        with pytest.raises(StopAsyncIteration):
            await next_message(subscription)
        with pytest.raises(StopAsyncIteration):
            await anext(feed)
        assert room.attached and await room.publish("still attached") == 1


async def test_a_failing_token_provider_is_retried(server: TestServer) -> None:
    """A token provider that fails (its service is down) is asked again with backoff; the client connects."""
    calls = 0

    def provider() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RuntimeError("token service unavailable")
        return server.token("ana")

    async with Client(server.url, token_provider=provider, backoff=Backoff(0.01, 0.05)) as client:
        assert client.connected and calls == 3


async def test_a_dropped_subscription_is_collected(server: TestServer) -> None:
    """A subscription nobody holds any more is freed: the client keeps views only weakly."""
    async with Client(server.url, token=server.token("ana")) as client:
        room = client.channel("room:lobby")
        subscription = await room.subscribe()
        feed = await room.streams()
        gone = [weakref.ref(subscription), weakref.ref(feed)]
        del subscription, feed
        gc.collect()
        assert [ref() for ref in gone] == [None, None]
        assert await room.publish("still delivered to the channel") == 1
