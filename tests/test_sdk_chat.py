"""The SDK's group chat against a real in-process server over loopback: edits, deletes, reactions,
threads, read marks and unread counts, the room directory, display names."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from agentchat import (
    AlreadyExistsError,
    Backoff,
    Client,
    LiveEvent,
    Message,
    MessageDeleted,
    MessageNotFound,
    Reaction,
    ReadMark,
    RequestError,
    Timeline,
    TooManyReactions,
)
from agentchat.events import ChannelEvent, RoomChanged
from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.sdk_helpers import WAIT, Relay, messages_until, next_message

ROOM = "room:chat"
MEMBER = {"room:*": ["subscribe", "publish", "history", "presence", "stream"]}


def client(server: TestServer, client_id: str, **token: Any) -> Client:
    return Client(server.url, token=server.token(client_id, **token))


async def test_edit_delete_react_unreact_return_event_serials(server: TestServer) -> None:
    """Each call returns its event's serial (None for a reaction already so); history shows the
    current version with `rev`, `edited`, `reactions`, `my_reactions` and the tombstone."""
    async with client(server, "ana") as ana, client(server, "bob") as bob:
        mine, theirs = ana.channel(ROOM), bob.channel(ROOM)
        first = await mine.publish("helo @bob")
        edit = await mine.edit(first, "hello @bob")
        assert edit == first + 1
        assert await theirs.react(first, "👍") == first + 2
        assert await theirs.react(first, "👍") is None
        assert await theirs.react(first, "+1") == first + 3
        assert await theirs.unreact(first, "+1") == first + 4
        assert await theirs.unreact(first, "+1") is None
        (current,) = (await theirs.history(view="main")).messages
        assert (current.data, current.rev) == ("hello @bob", first + 4)
        assert current.edited is not None and current.edited.by == "ana" and current.edited.ts >= current.ts
        assert current.reactions == {"👍": Reaction(1, ("bob",))} and current.my_reactions == ("👍",)
        assert current.mentions == {"bob"}
        assert (await mine.history(view="main")).messages[0].my_reactions == ()
        deleted = await mine.delete(first)
        assert await mine.delete(first) == deleted
        (tomb,) = (await theirs.history(view="main")).messages
        assert (tomb.data, tomb.reactions, tomb.edited, tomb.rev) == (None, {}, None, deleted)
        assert tomb.deleted is not None and tomb.deleted.by == "ana" and tomb.client_id == "ana"
        events = (await theirs.history(after=first, direction="forwards")).messages
        assert [(m.action, m.target, m.name) for m in events][:2] == [
            ("edit", first, "edit"),
            ("react", first, "react"),
        ]


async def test_group_chat_refusals_raise_their_error_classes(make_server: Callable[..., Any]) -> None:
    """A missing target, a deleted one, full reactions, another's message and a bad reaction raise
    MessageNotFound, MessageDeleted, TooManyReactions and RequestError with their codes."""
    srv: TestServer = await make_server(max_reactions_per_message=1)
    async with client(srv, "ana") as ana, client(srv, "bob") as bob:
        mine, theirs = ana.channel(ROOM), bob.channel(ROOM)
        first = await mine.publish("one")
        with pytest.raises(MessageNotFound) as missing:
            await mine.edit(999, "x")
        assert missing.value.code == Code.MESSAGE_NOT_FOUND and missing.value.serial == 999
        event = await theirs.react(first, "a")
        assert event is not None
        with pytest.raises(MessageNotFound):
            await mine.edit(event, "an edit of an event")
        with pytest.raises(TooManyReactions) as full:
            await mine.react(first, "b")
        assert full.value.code == Code.TOO_MANY_REACTIONS
        with pytest.raises(RequestError) as forbidden:
            await theirs.edit(first, "words in ana's name")
        assert forbidden.value.code == Code.FORBIDDEN
        with pytest.raises(RequestError) as bad:
            await theirs.react(first, "<script>")
        assert bad.value.code in (Code.INVALID_VALUE, Code.INVALID_FRAME)
        await mine.delete(first)
        with pytest.raises(MessageDeleted):
            await mine.edit(first, "back")
        with pytest.raises(MessageDeleted):
            await theirs.react(first, "a")


async def test_a_timeline_fed_live_matches_history(server: TestServer) -> None:
    """Events and replies a subscriber applies with Timeline give what history shows afterwards."""
    async with client(server, "ana") as ana, client(server, "bob") as bob:
        mine, theirs = ana.channel(ROOM), bob.channel(ROOM)
        before = await mine.publish("before anyone watched")
        await theirs.react(before, "eyes")
        timeline = Timeline(ROOM, me="bob")
        timeline.extend((await theirs.history(view="main")).messages)
        async with theirs.subscribe() as live:
            root = await mine.publish("root")
            other = await mine.publish("other")
            await mine.edit(root, "root, edited")
            await theirs.react(root, "👍")
            await mine.react(root, "👍")
            await theirs.react(before, "+1")
            reply = await theirs.publish("a reply", thread=root)
            await theirs.edit(reply, "a reply, edited")
            await mine.delete(other)
            last = await theirs.unreact(root, "👍")
            async for message in live:
                timeline.add(message)
                if message.serial == last:
                    break
        expected = (await theirs.history(direction="forwards")).messages
        held = [m for m in expected if not m.is_event]
        assert [m.serial for m in timeline] == [m.serial for m in held]
        for want in held:
            got = timeline.get(want.serial or 0)
            assert got is not None
            assert (got.data, got.rev, got.reactions, got.my_reactions) == (
                want.data,
                want.rev,
                want.reactions,
                want.my_reactions,
            )
            assert (got.deleted, got.replies) == (want.deleted, want.replies)
            assert (got.edited is None) == (want.edited is None)


async def test_threads_in_publish_stream_and_history(server: TestServer) -> None:
    """`thread=` makes replies (published and streamed); history pages a thread or the main view;
    a reply to a reply is refused with the real root, a missing root with MessageNotFound."""
    async with client(server, "ana") as ana, client(server, "bot", kind="agent") as bot:
        room, bots = ana.channel(ROOM), bot.channel(ROOM)
        streams = bots.streams()
        root = await room.publish("question")
        replies = [await room.publish(f"r{i}", thread=root) for i in range(3)]
        async with bots.stream(thread=root, reply_to=replies[-1]) as stream:
            await stream.append("streamed answer")
        async with asyncio.timeout(WAIT):
            update = await anext(streams)
            while not update.done:
                update = await anext(streams)
        assert update.thread == root and update.message is not None and update.message.thread == root
        thread = await room.history(thread=root, direction="forwards", limit=2)
        assert [m.serial for m in thread] == replies[:2] and thread.has_more
        every = [m.serial async for m in room.messages(thread=root, direction="forwards", page_size=1)]
        assert every == [*replies, stream.serial]
        await room.react(root, "eyes")
        main = await room.history(view="main")
        assert [m.serial for m in main] == [root] and main.messages[0].replies is not None
        assert main.messages[0].replies.count == 4
        with pytest.raises(RequestError) as nested:
            await room.publish("x", thread=replies[0])
        assert nested.value.code == Code.INVALID_VALUE and nested.value.details["thread"] == root
        with pytest.raises(MessageNotFound):
            await room.publish("x", thread=999)
        with pytest.raises(MessageNotFound):
            await bots.stream(thread=999).open()


async def test_read_marks_and_unread_counts(server: TestServer) -> None:
    """`mark_read` never moves back and refuses the future; `unread` counts others' top-level
    messages and mentions after the mark, by channel or as a page of one's marks."""
    async with client(server, "ana") as ana, client(server, "bob") as bob:
        mine, theirs = ana.channel(ROOM), bob.channel(ROOM)
        first = await mine.publish("hello")
        await mine.publish("@bob look")
        await mine.publish("in a thread, @bob", thread=first)
        await theirs.publish("my own")
        (entry,) = await bob.unread([ROOM])
        assert (entry.channel, entry.last_read, entry.unread, entry.mentions, entry.capped) == (
            ROOM,
            0,
            2,
            2,
            False,
        )
        assert await theirs.mark_read(first + 1) == ReadMark(first + 1, True)
        assert await theirs.mark_read(first) == (first + 1, False)
        with pytest.raises(RequestError) as future:
            await theirs.mark_read(first + 10)
        assert future.value.code == Code.INVALID_VALUE and future.value.details["last_serial"] == first + 3
        page = await bob.unread()
        mark = page.get(ROOM)
        assert mark is not None and (mark.last_read, mark.unread, mark.mentions) == (first + 1, 0, 1)
        assert not page.has_more and page.get("room:other") is None
        with pytest.raises(RequestError) as refused:
            async with client(server, "cy", capabilities={"room:other": ["subscribe"]}) as cy:
                await cy.unread([ROOM])
        assert refused.value.code == Code.FORBIDDEN


async def test_the_room_directory(server: TestServer) -> None:
    """`set_room` creates (once) and updates rooms with `manage`, `room` reads one (None when
    unknown), `rooms` pages by name under a prefix, `directory` iterates every page."""
    async with client(server, "ana") as ana, client(server, "bob", capabilities=MEMBER) as bob:
        made = await ana.set_room("room:design-review", title="Design Review", create=True)
        assert (made.channel, made.title, made.topic, made.updated_by) == (
            "room:design-review",
            "Design Review",
            None,
            "ana",
        )
        with pytest.raises(AlreadyExistsError):
            await ana.set_room("room:design-review", title="Again", create=True)
        updated = await ana.set_room("room:design-review", topic="weekly")
        assert (updated.title, updated.topic) == ("Design Review", "weekly")
        with pytest.raises(RequestError) as case:
            await ana.set_room("room:Design", title="x")
        assert case.value.code == Code.INVALID_VALUE and case.value.details["canonical"] == "room:design"
        with pytest.raises(RequestError) as forbidden:
            await bob.set_room("room:bobs", title="Bob's", create=True)
        assert forbidden.value.code == Code.FORBIDDEN
        for name in ("room:a", "room:b", "other:c"):
            await ana.channel(name).publish("hi")
        assert await bob.room("room:nowhere") is None
        found = await bob.room("room:a")
        assert found is not None and found.last_serial == 1 and found.last_ts is not None
        page = await bob.rooms(limit=2)
        assert [r.channel for r in page] == ["room:a", "room:b"] and page.has_more and page.next == "room:b"
        rest = await bob.rooms(after=page.next)
        assert [r.channel for r in rest] == ["room:design-review"] and not rest.has_more
        assert [r.channel async for r in ana.directory(prefix="room:", page_size=1)] == [
            "room:a",
            "room:b",
            "room:design-review",
        ]


async def test_a_room_update_arrives_live_as_an_event(server: TestServer) -> None:
    """Attached readers get RoomChanged with the new title and topic, and the `room` live frame."""
    async with client(server, "ana") as ana, client(server, "bob") as bob:
        channel = bob.channel("room:news")
        changes: asyncio.Queue[RoomChanged] = asyncio.Queue()

        def on_event(event: ChannelEvent) -> None:
            if isinstance(event, RoomChanged):
                changes.put_nowait(event)

        channel.listen(on_event)
        feed = await channel.events().start()
        await ana.set_room("room:news", title="News", topic="what happened", create=True)
        async with asyncio.timeout(WAIT):
            change = await changes.get()
            live: LiveEvent = await anext(feed)
            while live.type != "room":
                live = await anext(feed)
        assert (change.channel, change.room.title, change.room.topic, change.room.updated_by) == (
            "room:news",
            "News",
            "what happened",
            "ana",
        )
        assert live.frame["title"] == "News"


async def test_calls_whose_replies_a_drop_ate_are_sent_again_safely(server: TestServer) -> None:
    """An edit and a room creation whose replies were lost are sent again after the reconnect: the
    edit is stored once, and the creation answers the room this client made, not "exists"."""
    async with (
        Relay(int(server.url.rsplit(":", 1)[1])) as relay,
        Client(relay.url, token=server.token("ana"), backoff=Backoff(0.01, 0.05)) as ana,
        client(server, "bob") as bob,
    ):
        room = ana.channel(ROOM)
        first = await room.publish("v1")
        watched = await bob.channel(ROOM).subscribe()
        changes: asyncio.Queue[RoomChanged] = asyncio.Queue()
        bob.channel("room:fresh").listen(
            lambda e: changes.put_nowait(e) if isinstance(e, RoomChanged) else None
        )
        await bob.channel("room:fresh").attach()
        relay.hold_replies()
        edit = asyncio.create_task(room.edit(first, "v2"))
        made = asyncio.create_task(ana.set_room("room:fresh", title="Fresh", create=True))
        event = await next_message(watched)
        async with asyncio.timeout(WAIT):
            await changes.get()
        relay.cut()
        async with asyncio.timeout(WAIT):
            assert await edit == event.serial
            fresh = await made
        assert (fresh.channel, fresh.title, fresh.updated_by) == ("room:fresh", "Fresh", "ana")
        assert ana.reconnects == 1 and ana.resumed
        stored = await bob.channel(ROOM).history(after=first, direction="forwards")
        assert [(m.action, m.target) for m in stored] == [("edit", first)]


async def test_set_room_reply_carries_the_last_activity(server: TestServer) -> None:
    """The room in a `room_set` reply names its last activity like `room_get` does (`last_ts`)."""
    async with client(server, "ana") as ana:
        await ana.channel("room:busy").publish("hi")
        updated = await ana.set_room("room:busy", title="Busy")
        fetched = await ana.room("room:busy")
        assert fetched is not None and fetched.last_ts is not None
        assert updated.last_ts == fetched.last_ts


async def test_display_names_and_who_cancelled(server: TestServer) -> None:
    """A token's display name rides on messages, presence members and streams; a stream cancelled by
    a member ends with `cancelled_by`."""
    async with (
        client(server, "ana", display_name="Ana Lopez") as ana,
        client(server, "bob", display_name="Бобо") as bob,
    ):
        room, theirs = ana.channel(ROOM), bob.channel(ROOM)
        subscription = await theirs.subscribe()
        streams = theirs.streams()
        await room.presence.enter({"status": "here"})
        members = await theirs.presence.wait_for(lambda ms: any(m.client_id == "ana" for m in ms))
        assert [m.display_name for m in members if m.client_id == "ana"] == ["Ana Lopez"]
        said = await room.publish("hello")
        message: Message = await next_message(subscription)
        assert (message.serial, message.display_name) == (said, "Ana Lopez")
        async with room.stream() as stream:
            await stream.append("thinking")
            async with asyncio.timeout(WAIT):
                opened = await anext(streams)
            assert opened.display_name == "Ana Lopez"
            await theirs.cancel_stream(str(stream.stream_id))
            await stream.wait_cancelled()
        got = await messages_until(subscription, lambda m: m.stream_id is not None)
        final = got[-1]
        assert (final.status, final.cancelled_by, final.display_name) == ("cancelled", "bob", "Ana Lopez")
