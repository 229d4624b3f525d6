"""The Store contract for agent rooms, on SQLite and PostgreSQL: claims compare-and-set their
fencing tokens in the commit, guarded writes, the loop brake's count, runs, input requests, the
"to me" filter and retention of room rows."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from sqlalchemy import event

from agentchat_server.core.agentrooms import Claimant
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.runs import RunRecord
from agentchat_server.protocol import Code
from agentchat_server.store import (
    Append,
    AppendResult,
    AskInput,
    ClaimChange,
    ClaimResult,
    CloseInput,
    NewMessage,
    RoomWrite,
    RunEnd,
    RunStart,
    Store,
    make_store,
)

CH = "room:store"
NOW = 10_000_000


@pytest_asyncio.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = make_store(db_url)
    await s.open()
    yield s
    await s.close()


def message(mid: str, client_id: str = "ana", kind: str = "human", **fields: Any) -> NewMessage:
    extra = fields.pop("extra", None)
    data = fields.pop("data", {"m": mid})
    return NewMessage(
        mid,
        fields.pop("name", "chat"),
        data,
        json.dumps(data),
        client_id,
        kind,
        NOW,
        fields.pop("reply_to", None),
        extra=extra,
        extra_json=None if extra is None else json.dumps(extra),
    )


def agent_write(writer: str, **fields: Any) -> RoomWrite:
    return RoomWrite(writer, "agent", fields.pop("now", NOW), **fields)


async def append(store: Store, *messages: NewMessage, room: RoomWrite | None = None) -> AppendResult:
    [result] = await store.commit([Append(CH, list(messages), room=room)])
    assert isinstance(result, AppendResult)
    return result


async def claim(store: Store, serial: int, who: str, session: str, now: int = NOW, **kw: Any) -> ClaimResult:
    claimant = Claimant(who, session, kw.pop("token", None), kw.pop("ttl", 30_000))
    [result] = await store.commit([ClaimChange(CH, serial, now, claimant=claimant)])
    assert isinstance(result, ClaimResult)
    return result


async def test_one_commit_grants_a_claim_once_and_tokens_grow(store: Store) -> None:
    """Two claims of one message in one commit: the first wins; after release the next token is 2."""
    await append(store, message("task"))
    a = Claimant("worker-a", "sa", None, 30_000)
    b = Claimant("worker-b", "sb", None, 30_000)
    results = await store.commit([ClaimChange(CH, 1, NOW, claimant=a), ClaimChange(CH, 1, NOW, claimant=b)])
    won, lost = results
    assert isinstance(won, ClaimResult) and isinstance(lost, ClaimResult)
    assert won.claim is not None and won.claim.token == 1 and won.refusal is None
    assert lost.refusal is not None and lost.refusal.code == Code.CLAIMED
    [released] = await store.commit([ClaimChange(CH, 1, NOW + 1, release=("worker-a", 1))])
    assert isinstance(released, ClaimResult) and released.changed
    again = await claim(store, 1, "worker-b", "sb", NOW + 2)
    assert again.claim is not None and again.claim.token == 2
    assert [c.holder for c in await store.claims(CH, NOW + 3, None, 10)] == ["worker-b"]


async def test_concurrent_claims_from_two_stores_have_one_winner(db_url: str, store: Store) -> None:
    """Two Store instances (two nodes) race 20 claims each on one message: exactly one wins."""
    await append(store, message("task"))
    other = make_store(db_url)
    await other.open()
    try:
        attempts = [
            claim(s, 1, f"w{i}", f"s{i}")
            for i in range(20)
            for s in (store, other)
            if (i % 2 == 0) == (s is store)
        ]
        results = await asyncio.gather(*attempts)
        winners = [r for r in results if r.refusal is None]
        assert len(winners) == 1 and winners[0].claim is not None and winners[0].claim.token == 1
    finally:
        await other.close()


async def test_guarded_replies_check_the_token_in_the_commit(store: Store) -> None:
    """A reply with a stale token is refused; the holder's reply is stored and makes the claim done."""
    await append(store, message("task"))
    first = await claim(store, 1, "a", "sa", ttl=1000)
    assert first.claim is not None
    taken = await claim(store, 1, "b", "sb", NOW + 2000)  # a's lease lapsed: b takes it, token 2
    assert taken.claim is not None and taken.claim.token == 2
    stale = agent_write("a", now=NOW + 2001, replies=(1,), token=1, finish="done")
    refused = await append(store, message("late", "a", "agent", reply_to=1), room=stale)
    assert refused.refusal is not None and refused.refusal.code == Code.CLAIM_LOST and refused.stored == []
    good = agent_write("b", now=NOW + 2002, replies=(1,), token=2, finish="done")
    done = await append(store, message("answer", "b", "agent", reply_to=1), room=good)
    assert done.refusal is None and [c.state for c in done.claims] == ["done"]
    rival = await claim(store, 1, "c", "sc", NOW + 99_999_999)
    assert rival.refusal is not None and rival.refusal.details["state"] == "done"


async def test_soft_guards_store_an_aborted_end_with_the_reason(store: Store) -> None:
    """A stream's end whose claim was lost is stored aborted, with the error, not refused."""
    await append(store, message("task"))
    await claim(store, 1, "a", "sa", ttl=1000)
    await claim(store, 1, "b", "sb", NOW + 2000)
    end = message("a-stream", "a", "agent", reply_to=1)
    end.stream_id, end.status = "s_1", "complete"
    write = agent_write("a", now=NOW + 2001, replies=(1,), token=1, finish="done", soft_claim=True)
    result = await append(store, end, room=write)
    assert result.refusal is None and result.stored[0].status == "aborted"
    assert result.stored[0].extra is not None and result.stored[0].extra["error"]["code"] == str(
        Code.CLAIM_LOST
    )


async def test_loop_brake_count_lives_in_the_store(db_url: str, store: Store) -> None:
    """Alternating agents are refused past the budget with one notice, across a reopen (then every
    agent is, the last speaker too); a human resets the count."""
    for i in range(3):
        speaker = "a" if i % 2 == 0 else "b"
        result = await append(
            store, message(f"m{i}", speaker, "agent"), room=agent_write(speaker, turn="agent", budget=3)
        )
        assert result.refusal is None
    await store.close()
    await store.open()
    braked = await append(store, message("m3", "b", "agent"), room=agent_write("b", turn="agent", budget=3))
    assert braked.refusal is not None and braked.refusal.code == Code.LOOP_BRAKE
    assert [m.name for m in braked.stored] == ["agentchat.loop_brake"]
    again = await append(store, message("m4", "a", "agent"), room=agent_write("a", turn="agent", budget=3))
    assert again.refusal is not None and again.stored == []  # one notice per braking
    human = RoomWrite("ana", "human", NOW, turn="human", budget=3)
    assert (await append(store, message("hi"), room=human)).refusal is None
    after = await append(store, message("m5", "a", "agent"), room=agent_write("a", turn="agent", budget=3))
    assert after.refusal is None


async def test_a_commit_writes_the_loop_brake_count_once(store: Store) -> None:
    """Forty alternating agents' turns and a human's message in one commit update the count with
    one statement, not one per turn (a busy room must not cost a round trip per message), and the
    next commit sees the count the last of them left."""
    sql_store: Any = store
    writer = sql_store._sqlite_writer  # SQLite commits on a sync writer engine of their own
    sql = writer.engine if writer is not None else sql_store.engine.sync_engine
    writes: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "channel_rooms" in statement and statement.lstrip().upper().startswith(("UPDATE", "INSERT")):
            writes.append(statement)

    ops = [Append(CH, [message("h0")], room=RoomWrite("ana", "human", NOW, turn="human", budget=100))]
    for i in range(40):
        speaker = f"agent{i % 2}"
        ops.append(
            Append(
                CH, [message(f"t{i}", speaker, "agent")], room=agent_write(speaker, turn="agent", budget=100)
            )
        )
    event.listen(sql, "before_cursor_execute", seen)
    try:
        results = await store.commit(ops)
    finally:
        event.remove(sql, "before_cursor_execute", seen)
    assert all(isinstance(r, AppendResult) and r.refusal is None for r in results)
    assert len(writes) == 1
    braked = await append(
        store, message("x", "agent0", "agent"), room=agent_write("agent0", turn="agent", budget=40)
    )
    assert braked.refusal is not None and braked.refusal.code == Code.LOOP_BRAKE  # 40 turns were counted


async def test_runs_and_input_requests_are_rows_with_compare_and_set(store: Store) -> None:
    """A run starts, asks (input_required), gets one answer (a second is refused), and ends."""
    run = RunRecord("r_1", CH, "planner", "agent", 0, NOW, writer="s1")
    start = message("run:r_1", "planner", "agent", name="agentchat.run", extra={"run_id": "r_1"})
    started = await append(store, start, room=agent_write("planner", effect=RunStart(run, 10)))
    assert started.run is not None and started.run.serial == started.serials[0]
    assert [r.run_id for r in await store.active_runs(CH, 10)] == ["r_1"]
    asked = RequestRecord(
        "q_1", CH, 0, "planner", NOW, "ship?", {"kind": "approval"}, NOW + 5000, run_id="r_1"
    )
    ask = agent_write("planner", run_id="r_1", session="s1", effect=AskInput(asked, 10))
    made = await append(store, message("q_1", "planner", "agent"), room=ask)
    assert made.request is not None and made.run is not None and made.run.status == "input_required"
    close = CloseInput("q_1", "answered", {"outcome": "approve", "client_id": "ana"})
    answer = RoomWrite("ana", "human", NOW, turn="human", effect=close)
    answered = await append(store, message("a1", reply_to=made.serials[0]), room=answer)
    assert answered.run is not None and answered.run.status == "running"
    assert answered.request is not None and answered.request.answer == {
        **close.answer,
        "serial": answered.serials[0],
    }
    second = await append(store, message("a2", reply_to=made.serials[0]), room=answer)
    assert second.refusal is not None and second.refusal.code == Code.REQUEST_CLOSED
    early = RoomWrite("agentchat", "system", NOW, effect=CloseInput("q_1", "expired", {"outcome": "expired"}))
    assert (await append(store, message("x", "agentchat", "system"), room=early)).refusal is not None
    end = agent_write("planner", run_id="r_1", session="s1", effect=RunEnd("r_1", "completed", session="s1"))
    finished = await append(store, message("run:r_1:end", "planner", "agent"), room=end)
    assert finished.run is not None and finished.run.status == "completed"
    assert await store.active_runs(CH, 10) == []
    page, more = await store.requests(CH, asker="planner", status="closed", after=None, limit=10)
    assert [r.request_id for r in page] == ["q_1"] and not more


async def test_a_run_write_from_another_session_is_refused(store: Store) -> None:
    """Only the run's writer session may write to it; a run that ended takes no more writes."""
    run = RunRecord("r_2", CH, "planner", "agent", 0, NOW, writer="s1")
    await append(
        store, message("run:r_2", "planner", "agent"), room=agent_write("planner", effect=RunStart(run, 10))
    )
    wrong = await append(
        store, message("t", "planner", "agent"), room=agent_write("planner", run_id="r_2", session="s9")
    )
    assert wrong.refusal is not None and wrong.refusal.code == Code.NOT_RUN_WRITER
    end = agent_write("planner", run_id="r_2", effect=RunEnd("r_2", "cancelled", cancelled_by="ana"))
    await append(store, message("c", "planner", "agent"), room=end)
    late = await append(
        store, message("t2", "planner", "agent"), room=agent_write("planner", run_id="r_2", session="s1")
    )
    assert late.refusal is not None and late.refusal.code == Code.RUN_NOT_FOUND


async def test_to_me_history_and_retention_of_room_rows(store: Store) -> None:
    """History filtered "to me" keeps messages to nobody, to me, or from me; pruning drops room rows."""
    await append(store, message("all"))
    await append(store, message("to-bob", extra={"to": ["bob"]}))
    await append(store, message("to-me", extra={"to": ["me_1"]}))
    await append(store, message("mine", "me_1", extra={"to": ["bob"]}))
    await append(store, message("to-me1", extra={"to": ["me_"]}))  # `_` is not a wildcard
    page = await store.history(CH, before=None, after=None, limit=10, forwards=True, to_me="me_1")
    assert [m.id for m in page.messages] == ["all", "to-me", "mine"]
    await claim(store, 2, "a", "sa")
    await store.prune(NOW + 1)
    assert await store.claims(CH, NOW, None, 10) == []


async def test_a_database_from_before_rooms_is_migrated(db_url: str) -> None:
    """A Store at schema version 2 (messages in it) opens with the room tables added, data kept."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from agentchat_server.store.schema import MIGRATIONS, messages_table, metadata, schema_version

    engine = create_async_engine(db_url)
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: metadata.create_all(c, tables=[schema_version]))
        for version, step in enumerate(MIGRATIONS[:2], start=1):
            await conn.run_sync(step)
            await conn.execute(insert(schema_version).values(version=version))
        row = {"channel": CH, "serial": 1, "id": "old", "name": "chat", "data": '"hi"', "client_id": "ana"}
        await conn.execute(insert(messages_table).values(**row, kind="human", ts=NOW))
    await engine.dispose()
    old = make_store(db_url)
    await old.open()
    try:
        page = await old.history(CH, before=None, after=None, limit=5, forwards=True)
        assert [(m.id, m.data) for m in page.messages] == [("old", "hi")]
        mine = await old.history(CH, before=None, after=None, limit=5, forwards=True, to_me="carol")
        assert [m.id for m in mine.messages] == ["old"]
        assert (await claim(old, 1, "a", "sa")).claim is not None  # claims on a message from before
        assert await old.active_runs(CH, 5) == []
    finally:
        await old.close()
