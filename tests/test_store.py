"""The Store contract, run on every adapter: SQLite always, PostgreSQL where present (always in CI)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import create_async_engine

from agentchat_server.broker.committer import Committer
from agentchat_server.core.chat import ChatEvent
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code
from agentchat_server.store import (
    Append,
    AppendResult,
    MarkRead,
    NewMessage,
    OpenMarker,
    Operation,
    PutRoom,
    ReadMark,
    Room,
    Store,
    StreamMarker,
    make_store,
)


def msg(
    i: int | str,
    *,
    mid: str | None = None,
    stream_id: str | None = None,
    status: str | None = None,
    client_id: str = "ana",
    data: object = None,
) -> NewMessage:
    data = {"i": i} if data is None else data
    return NewMessage(
        mid or f"id-{i}",
        "chat",
        data,
        json.dumps(data),
        client_id,
        "human",
        1000 + (i if isinstance(i, int) else 0),
        None,
        stream_id,
        status,
    )


async def serials(store: Store, channel: str) -> list[int]:
    page = await store.history(channel, before=None, after=None, limit=1000, forwards=True)
    return [m.serial for m in page.messages]


@pytest_asyncio.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = make_store(db_url)
    await s.open()
    yield s
    await s.close()


async def test_serials_start_at_one_and_have_no_gaps(store: Store) -> None:
    """Serials per channel are 1, 2, 3 … across batches and channels are independent."""
    r = await store.commit(
        [Append("room:a", [msg(1), msg(2)]), Append("room:b", [msg(3)]), Append("room:a", [msg(4)])]
    )
    assert [x.serials for x in r if x] == [[1, 2], [1], [3]]
    info = await store.channel("room:a")
    assert info.last_serial == 3 and info.epoch and info.first_serial == 1
    assert (await store.channel("room:new")).last_serial == 0


async def test_idempotent_ids_return_the_original_serial(store: Store) -> None:
    """Retrying an id, within one transaction or later, stores nothing new."""
    first = await store.commit([Append("room:a", [msg(1)]), Append("room:a", [msg(1)])])
    assert first[0] and first[1]
    assert first[0].serials == [1] and first[1].serials == [1] and first[1].duplicates == [0]
    again = await store.commit([Append("room:a", [msg(1), msg(2)])])
    assert again[0] and again[0].serials == [1, 2] and again[0].duplicates == [0]
    assert await serials(store, "room:a") == [1, 2]


async def test_ids_are_scoped_to_their_publisher(store: Store) -> None:
    """One client's id can never take another's message: the same id from two clients is two messages,
    and each client's retry still dedupes against its own."""
    (first,) = await store.commit([Append("room:a", [msg(1, mid="answer-7", client_id="planner")])])
    (squat,) = await store.commit([Append("room:a", [msg(2, mid="answer-7", client_id="mallory")])])
    (retry,) = await store.commit([Append("room:a", [msg(3, mid="answer-7", client_id="planner")])])
    assert first and squat and retry
    assert (first.serials, squat.serials, squat.duplicates) == ([1], [2], [])
    assert (retry.serials, retry.duplicates) == ([1], [0])
    found = await store.find_message("room:a", "planner", "answer-7")
    assert found and found.serial == 1 and found.data == {"i": 1}
    mallory = await store.find_message("room:a", "mallory", "answer-7")
    assert mallory and mallory.serial == 2


async def test_history_pages_are_cut_by_bytes(store: Store) -> None:
    """A page stops before its encoded size passes max_bytes (never empty) and says more exist."""
    big = "x" * 20_000
    await store.commit([Append("room:big", [msg(i, data=big) for i in range(1, 21)])])
    page = await store.history("room:big", before=None, after=None, limit=50, forwards=True, max_bytes=65_536)
    assert [m.serial for m in page.messages] == [1, 2, 3] and page.has_more
    one = await store.history("room:big", before=None, after=None, limit=50, forwards=True, max_bytes=10)
    assert [m.serial for m in one.messages] == [1] and one.has_more
    rest = await store.history("room:big", before=None, after=17, limit=50, forwards=True, max_bytes=10**9)
    assert [m.serial for m in rest.messages] == [18, 19, 20] and not rest.has_more


async def test_if_serial_conflict_writes_nothing(store: Store) -> None:
    """if_serial appends only on a match; a conflict reports the last serial."""
    await store.commit([Append("room:a", [msg(1)])])
    ok, bad = await store.commit(
        [Append("room:a", [msg(2)], if_serial=1), Append("room:a", [msg(3)], if_serial=1)]
    )
    assert ok and ok.serials == [2]
    assert bad and bad.conflict == 2 and bad.serials == []
    assert (await store.channel("room:a")).last_serial == 2


async def test_history_pages_both_ways(store: Store) -> None:
    """before/after are exclusive; backwards gives newest first."""
    await store.commit([Append("room:a", [msg(i) for i in range(1, 11)])])
    back = await store.history("room:a", before=8, after=None, limit=3, forwards=False)
    assert [m.serial for m in back.messages] == [7, 6, 5] and back.has_more
    fwd = await store.history("room:a", before=None, after=8, limit=5, forwards=True)
    assert [m.serial for m in fwd.messages] == [9, 10] and not fwd.has_more
    assert fwd.messages[0].data == {"i": 9} and fwd.messages[0].client_id == "ana"
    found = await store.find_message("room:a", "ana", "id-3")
    assert found and found.serial == 3


async def test_stream_marker_removed_with_final_message(store: Store) -> None:
    """A start marker lives until the stream's message is stored, in the same transaction."""
    marker = StreamMarker("s1", "room:a", "answer-1", "bot", "agent", "answer", None, None, "text", 1)
    await store.commit([OpenMarker(marker)])
    assert [m.stream_id for m in await store.open_markers()] == ["s1"]
    await store.commit([Append("room:a", [msg("x", mid="answer-1", stream_id="s1", status="complete")])])
    assert await store.open_markers() == []
    assert store.stats.writes_by_stream["s1"] == 2


async def test_concurrent_commits_keep_serials_dense(store: Store) -> None:
    """Commits racing from several tasks still give 1..N without gaps."""

    async def writer(k: int) -> None:
        for j in range(10):
            await store.commit([Append("room:race", [msg(f"{k}-{j}", mid=f"{k}-{j}")])])

    await asyncio.gather(*(writer(k) for k in range(5)))
    assert await serials(store, "room:race") == list(range(1, 51))


async def test_prune_moves_first_serial(store: Store) -> None:
    """Retention deletes old messages and records where history now starts."""
    await store.commit([Append("room:a", [msg(i) for i in range(1, 6)])])
    await store.prune(older_than_ms=1004)  # ts are 1001..1005
    info = await store.channel("room:a")
    assert info.first_serial == 4
    assert await serials(store, "room:a") == [4, 5]


async def test_reopen_keeps_everything(db_url: str) -> None:
    """Closing and reopening the Store (migrations already applied) keeps history."""
    s = make_store(db_url)
    await s.open()
    await s.commit([Append("room:a", [msg(1)])])
    await s.close()
    s = make_store(db_url)
    await s.open()
    assert (await s.channel("room:a")).last_serial == 1
    await s.close()


def test_in_memory_sqlite_is_refused_with_a_clear_error() -> None:
    # Group commits run on a writer connection of their own: an in-memory database would not be shared.
    for url in ("sqlite+aiosqlite://", "sqlite+aiosqlite:///:memory:"):
        with pytest.raises(ValueError, match="SQLite needs a file path"):
            make_store(url)


async def test_one_failing_operation_of_a_group_commit_fails_alone(store: Store) -> None:
    """Promise 7 for the Store: a bad operation fails its own publish, never its neighbours', and
    the writer connection (replaced after the failure) keeps committing."""
    marker = StreamMarker("s-dup", "room:a", "answer-1", "bot", "agent", "answer", None, None, "text", 1)
    await store.commit([OpenMarker(marker)])
    fanned_out: list[int] = []

    def on_committed(_ops: Sequence[Operation], results: Sequence[AppendResult | None]) -> None:
        fanned_out.extend(m.serial for r in results if r is not None for m in r.stored)

    committer = Committer(store, Metrics(), on_committed, batch=100)
    committer.start()
    # Queued in one tick, so they share one transaction; the marker's duplicate id fails it.
    futures = [
        committer.submit(Append("room:a", [msg(1)])),
        committer.submit(OpenMarker(marker)),
        committer.submit(Append("room:a", [msg(2)])),
    ]
    first, failed, second = await asyncio.gather(*futures, return_exceptions=True)
    await committer.stop()
    assert isinstance(failed, Exception)
    assert isinstance(first, AppendResult) and isinstance(second, AppendResult)
    assert (first.serials, second.serials) == ([1], [2])
    assert fanned_out == [1, 2]
    history = await store.history("room:a", before=None, after=None, limit=10, forwards=True)
    assert [m.data for m in history.messages] == [{"i": 1}, {"i": 2}]
    (third,) = await store.commit([Append("room:a", [msg(3)])])
    assert third is not None and third.serials == [3]


# --- group chat: events, threads, reactions, mentions, read marks, the directory -----------


def event(
    i: int, action: str, target: int, *, client_id: str = "ana", data: object = None, **kw: Any
) -> NewMessage:
    """A chat event message (as the broker builds them) acting on `target`."""
    return NewMessage(
        f"ev-{i}",
        action,
        data,
        json.dumps(data),
        client_id,
        "human",
        2000 + i,
        event=ChatEvent(action, target, **kw),
    )


async def test_events_update_their_target_in_the_same_transaction(store: Store) -> None:
    """Edit, reactions and delete each get a serial and leave the target in its current state."""
    await store.commit([Append("room:e", [msg(1, data="hi")])])
    results = await store.commit(
        [
            Append("room:e", [event(1, "edit", 1, data="hello")]),
            Append("room:e", [event(2, "react", 1, client_id="bob", data="👍")]),
            Append("room:e", [event(3, "react", 1, client_id="bob", data="👍")]),
            Append("room:e", [event(4, "edit", 1, client_id="bob", data="mine")]),
        ]
    )
    edit, react, same, stolen = results
    assert isinstance(edit, AppendResult) and edit.serials == [2]
    assert isinstance(react, AppendResult) and react.stored[0].extra == {
        "reactions": {"👍": {"count": 1, "clients": ["bob"]}}
    }
    assert isinstance(same, AppendResult) and same.unchanged and same.serials == []
    assert isinstance(stolen, AppendResult) and stolen.refusal and stolen.refusal.code == Code.FORBIDDEN
    target = await store.message_at("room:e", 1)
    assert target and target.data == "hello" and target.extra and target.extra["rev"] == 3
    assert await store.my_reactions("room:e", [1, 2], "bob") == {1: ["👍"]}
    (deleted,) = await store.commit(
        [Append("room:e", [event(5, "delete", 1, client_id="mod", moderator=True)])]
    )
    assert isinstance(deleted, AppendResult) and deleted.serials == [4]
    tomb = await store.message_at("room:e", 1)
    assert tomb and tomb.data is None and tomb.extra and "reactions" not in tomb.extra
    assert tomb.extra["deleted"]["by"] == "mod" and await store.my_reactions("room:e", [1], "bob") == {}
    (again,) = await store.commit([Append("room:e", [event(6, "delete", 1)])])
    assert isinstance(again, AppendResult) and again.serials == [4] and again.duplicates == [0]
    assert await serials(store, "room:e") == [1, 2, 3, 4]


async def test_thread_replies_and_mentions(store: Store) -> None:
    """Replies update the root's summary; mention rows follow edits; read marks never go backwards."""
    root = msg(1, data="root")
    await store.commit([Append("room:t", [root])])
    reply = msg(2, data="@bob see")
    reply.thread, reply.mentions = 1, ("bob",)
    nested = msg(3)
    nested.thread = 2
    ok, refused = await store.commit([Append("room:t", [reply]), Append("room:t", [nested])])
    assert isinstance(ok, AppendResult) and ok.stored[0].thread == 1
    assert isinstance(refused, AppendResult) and refused.refusal and refused.refusal.details == {"thread": 1}
    top = await store.message_at("room:t", 1)
    assert (
        top
        and top.extra
        and top.extra["replies"]["count"] == 1
        and top.extra["replies"]["last"]["serial"] == 2
    )
    page = await store.history("room:t", before=None, after=None, limit=10, forwards=True, thread=1)
    assert [m.serial for m in page.messages] == [2]
    main = await store.history("room:t", before=None, after=None, limit=10, forwards=True, main=True)
    assert [m.serial for m in main.messages] == [1]
    (counts,), _ = await store.unread("bob", ["room:t"], None, 10, 100)
    assert (counts.unread, counts.mentions, counts.last_serial) == (1, 1, 2)
    await store.commit([Append("room:t", [event(1, "edit", 2, data="no mention")])])
    (counts,), _ = await store.unread("bob", ["room:t"], None, 10, 100)
    assert counts.mentions == 0
    marks = await store.commit(
        [MarkRead("room:t", "bob", 2, 1), MarkRead("room:t", "bob", 1, 2), MarkRead("room:t", "bob", 9, 3)]
    )
    assert [(m.serial, m.moved) for m in marks if isinstance(m, ReadMark)] == [
        (2, True),
        (2, False),
        (0, False),
    ]
    assert isinstance(marks[2], ReadMark) and marks[2].refusal is not None
    listed, more = await store.unread("bob", None, None, 10, 100)
    assert [(u.channel, u.last_read, u.unread) for u in listed] == [("room:t", 2, 0)] and not more


async def test_room_metadata_and_the_directory(store: Store) -> None:
    """PutRoom creates or updates a channel's metadata; rooms pages by name under prefixes."""
    await store.commit([Append(name, [msg(1)]) for name in ("room:a", "room:b_c", "room:bxc", "team:z")])
    made, again = await store.commit(
        [
            PutRoom("room:new", "New", None, "ana", 5, create=True),
            PutRoom("room:new", "Other", None, "bob", 6, True),
        ]
    )
    assert isinstance(made, Room) and made.title == "New" and made.refusal is None
    assert isinstance(again, Room) and again.refusal and again.refusal.code == Code.ALREADY_EXISTS
    (updated,) = await store.commit([PutRoom("room:a", None, "topic", "bob", 7)])
    assert isinstance(updated, Room) and updated.topic == "topic" and updated.last_serial == 1
    rooms, more = await store.rooms(["room:b_"], None, 10)
    assert [r.channel for r in rooms] == ["room:b_c"] and not more  # `_` is no wildcard
    rooms, more = await store.rooms(["room:", "team:"], None, 2)
    assert [r.channel for r in rooms] == ["room:a", "room:b_c"] and more
    rooms, more = await store.rooms([""], "room:new", 10)
    assert [r.channel for r in rooms] == ["team:z"] and rooms[0].last_ts == 1001
    found = await store.room("room:new")
    assert found and (found.title, found.last_serial, found.last_ts) == ("New", 0, None)
    assert await store.room("room:none") is None


async def test_a_version_2_database_migrates_to_group_chat(db_url: str) -> None:
    """A database made before group chat keeps its messages and gains threads, events and marks."""
    from sqlalchemy import text

    from agentchat_server.store.schema import MIGRATIONS

    old = make_store(db_url)
    await old.open()
    await old.close()
    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        for table in ("reactions", "mentions", "read_marks", "messages", "stream_markers", "channels"):
            await conn.execute(text(f"DROP TABLE {table}"))
        await conn.execute(text("DELETE FROM agentchat_schema"))
        for version, step in enumerate(MIGRATIONS[:2], start=1):
            await conn.run_sync(step)
            await conn.execute(text(f"INSERT INTO agentchat_schema (version) VALUES ({version})"))
        await conn.execute(text("INSERT INTO channels VALUES ('room:old', 'e1', 1, 1, 0)"))
        await conn.execute(
            text(
                "INSERT INTO messages (channel, serial, id, name, data, client_id, kind, ts) "
                "VALUES ('room:old', 1, 'm1', 'chat', '\"hello\"', 'ana', 'human', 5)"
            )
        )
    await engine.dispose()
    s = make_store(db_url)
    await s.open()
    (edit,) = await s.commit([Append("room:old", [event(1, "edit", 1, data="hello again")])])
    assert isinstance(edit, AppendResult) and edit.serials == [2]
    kept = await s.message_at("room:old", 1)
    assert kept and kept.data == "hello again" and kept.thread is None
    (room,) = await s.commit([PutRoom("room:old", "Old", None, "ana", 9)])
    assert isinstance(room, Room) and room.title == "Old"
    await s.close()


async def test_top_level_messages_stay_out_of_the_thread_index(db_url: str, store: Store) -> None:
    """The thread index holds thread replies only (a top-level message updates one index fewer), and
    a thread's history is still found through it."""
    from sqlalchemy import text

    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            if db_url.startswith("sqlite"):
                query = "SELECT sql FROM sqlite_master WHERE name = 'ix_messages_thread'"
            else:
                query = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_thread'"
            definition = (await conn.execute(text(query))).scalar_one()
    finally:
        await engine.dispose()
    assert "thread IS NOT NULL" in definition
    reply = msg(2)
    reply.thread = 1
    await store.commit([Append("room:ix", [msg(1)])])
    await store.commit([Append("room:ix", [reply])])
    page = await store.history("room:ix", before=None, after=None, limit=10, forwards=True, thread=1)
    assert [m.serial for m in page.messages] == [2]
