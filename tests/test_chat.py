"""Group chat over real sockets: edits, deletes, reactions and threads as durable events."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.wire import Wire

Connect = Callable[..., Any]
ROOM = "room:chat"
MEMBER = ["subscribe", "publish", "history", "presence", "stream"]


async def said(wire: Wire, data: Any, **fields: Any) -> int:
    """Publish one durable message; its serial."""
    reply = await wire.request({"type": "publish", "channel": ROOM, "data": data, **fields})
    assert reply["type"] == "ack", reply
    return int(reply["serials"][0])


async def page(wire: Wire, **query: Any) -> list[dict[str, Any]]:
    reply = await wire.request({"type": "history", "channel": ROOM, "direction": "forwards", **query})
    assert reply["type"] == "ack", reply
    return list(reply["messages"])


async def test_an_edit_is_a_durable_event_and_history_shows_the_current_version(connect: Connect) -> None:
    """An edit gets its own serial, reaches readers live, and history shows the edited text in place."""
    ana, bob = await connect("ana"), await connect("bob")
    await bob.request({"type": "attach", "channel": ROOM})
    first = await said(ana, "helo @bob")
    edit = await ana.request({"type": "edit", "channel": ROOM, "serial": first, "data": "hello @bob"})
    assert edit["type"] == "ack" and edit["serial"] == first + 1
    original, event = await bob.messages(2, ROOM)
    assert original["data"] == "helo @bob"
    assert (event["action"], event["target"], event["data"], event["serial"]) == (
        "edit",
        first,
        "hello @bob",
        first + 1,
    )
    messages = await page(ana)
    assert messages[0]["data"] == "hello @bob" and messages[0]["rev"] == first + 1
    assert messages[0]["edited"]["by"] == "ana"
    assert [m["serial"] for m in await page(ana, view="main")] == [first]


async def test_edits_missed_during_a_drop_arrive_in_order_on_resume(
    server: TestServer, connect: Connect
) -> None:
    """A reader that was away gets the original in its current state, then each edit event in order."""
    ana = await connect("ana")
    reader = await connect("reader")
    attached = await reader.request({"type": "attach", "channel": ROOM})
    position = attached["position"]
    await reader.close()
    first = await said(ana, "v1")
    for text in ("v2", "v3"):
        assert (await ana.request({"type": "edit", "channel": ROOM, "serial": first, "data": text}))[
            "type"
        ] == "ack"
    back = await connect("reader")
    await back.request({"type": "attach", "channel": ROOM, "position": position})
    got = await back.messages(3, ROOM)
    assert [m["serial"] for m in got] == [first, first + 1, first + 2]
    assert got[0]["data"] == "v3" and got[0]["rev"] == first + 2
    assert [m["data"] for m in got[1:]] == ["v2", "v3"]


async def test_edit_rights_and_bad_targets(connect: Connect) -> None:
    """Only the author edits (moderate does not help); missing, event and deleted targets are refused."""
    ana = await connect("ana")
    mod = await connect("mod", capabilities={"room:*": ["*"]})
    first = await said(ana, "mine")
    refused = await mod.request({"type": "edit", "channel": ROOM, "serial": first, "data": "theirs"})
    assert refused["type"] == "nack" and refused["code"] == Code.FORBIDDEN
    missing = await ana.request({"type": "edit", "channel": ROOM, "serial": 999, "data": "x"})
    assert missing["code"] == Code.MESSAGE_NOT_FOUND and missing["serial"] == 999
    edit = await ana.request({"type": "edit", "channel": ROOM, "serial": first, "data": "ok"})
    of_edit = await ana.request({"type": "edit", "channel": ROOM, "serial": edit["serial"], "data": "x"})
    assert of_edit["code"] == Code.MESSAGE_NOT_FOUND
    await ana.request({"type": "delete", "channel": ROOM, "serial": first})
    gone = await ana.request({"type": "edit", "channel": ROOM, "serial": first, "data": "back"})
    assert gone["code"] == Code.MESSAGE_DELETED
    big = await ana.request({"type": "edit", "channel": ROOM, "serial": first, "data": "x" * 70_000})
    assert big["code"] == Code.MESSAGE_TOO_LARGE
    assert [m["data"] for m in await page(ana)][1:] == ["ok", None]


async def test_a_retried_edit_with_its_id_is_stored_once(connect: Connect) -> None:
    """An edit retried with the same id answers the first edit's serial and stores nothing new."""
    ana = await connect("ana")
    first = await said(ana, "a")
    frame = {"type": "edit", "channel": ROOM, "serial": first, "data": "b", "id": "edit-1"}
    one, two = await ana.request(frame), await ana.request(frame)
    assert one["serial"] == two["serial"] and two["duplicate"] is True and "duplicate" not in one
    assert len(await page(ana)) == 2


async def test_delete_leaves_a_tombstone_and_moderators_may_delete(connect: Connect) -> None:
    """A delete keeps who and when, drops content; others need moderate; deleting again is a duplicate."""
    ana, bob = await connect("ana"), await connect("bob", capabilities={"room:*": MEMBER})
    mod = await connect("mod", capabilities={"room:*": ["subscribe", "history", "moderate"]})
    first = await said(ana, {"text": "secret"})
    await bob.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "👍"})
    refused = await bob.request({"type": "delete", "channel": ROOM, "serial": first})
    assert refused["code"] == Code.FORBIDDEN
    deleted = await mod.request({"type": "delete", "channel": ROOM, "serial": first})
    again = await ana.request({"type": "delete", "channel": ROOM, "serial": first})
    assert again["serial"] == deleted["serial"] and again["duplicate"] is True
    tomb = (await page(ana))[0]
    assert tomb["data"] is None and tomb["deleted"]["by"] == "mod" and tomb["client_id"] == "ana"
    assert "reactions" not in tomb and tomb["rev"] == deleted["serial"]
    react = await bob.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "eyes"})
    assert react["code"] == Code.MESSAGE_DELETED


async def test_reactions_aggregate_live_and_in_history(connect: Connect) -> None:
    """Reactions are per member and idempotent; events carry the aggregate; history lists my reactions."""
    ana, bob, cy = await connect("ana"), await connect("bob"), await connect("cy")
    await ana.request({"type": "attach", "channel": ROOM})
    first = await said(ana, "vote")
    for who, reaction in ((bob, "👍"), (cy, "👍"), (bob, "+1"), (bob, "👍")):
        await who.request({"type": "react", "channel": ROOM, "serial": first, "reaction": reaction})
    same = await bob.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "👍"})
    assert same == {"type": "ack", "ref": same["ref"], "serial": None}
    undo = await cy.request(
        {"type": "react", "channel": ROOM, "serial": first, "reaction": "👍", "remove": True}
    )
    assert undo["serial"] is not None
    events = (await ana.messages(5, ROOM))[1:]
    assert [(e["action"], e["data"], e["client_id"]) for e in events] == [
        ("react", "👍", "bob"),
        ("react", "👍", "cy"),
        ("react", "+1", "bob"),
        ("unreact", "👍", "cy"),
    ]
    expected = {"👍": {"count": 1, "clients": ["bob"]}, "+1": {"count": 1, "clients": ["bob"]}}
    assert events[-1]["reactions"] == expected
    mine = (await page(bob))[0]
    assert mine["reactions"] == expected and mine["my_reactions"] == ["👍", "+1"]
    assert "my_reactions" not in (await page(cy))[0]


async def test_reactions_are_validated_and_bounded(make_server: Callable[..., Any]) -> None:
    """Hostile reaction names are refused; past the distinct-reaction and member bounds adds get 42904."""
    srv: TestServer = await make_server(max_reactions_per_message=2, max_reactors_per_message=2)
    ana = await Wire.open(srv.ws_url, srv.token("ana"))
    first = await said(ana, "x")
    for bad in ("THUMBS", "a b", "<script>", "👍👍", "\u202e", "x" * 33, ""):
        reply = await ana.request({"type": "react", "channel": ROOM, "serial": first, "reaction": bad})
        assert reply["type"] == "nack" and reply["code"] in (Code.INVALID_VALUE, Code.INVALID_FRAME), bad
    for reaction in ("a", "b"):
        assert (await ana.request({"type": "react", "channel": ROOM, "serial": first, "reaction": reaction}))[
            "serial"
        ]
    spam = await ana.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "c"})
    assert spam["code"] == Code.TOO_MANY_REACTIONS
    bob = await Wire.open(srv.ws_url, srv.token("bob"))
    cy = await Wire.open(srv.ws_url, srv.token("cy"))
    assert (await bob.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "a"}))["serial"]
    third = await cy.request({"type": "react", "channel": ROOM, "serial": first, "reaction": "a"})
    assert third["code"] == Code.TOO_MANY_REACTIONS
    for wire in (ana, bob, cy):
        await wire.close()


async def test_reaction_spam_is_rate_limited(make_server: Callable[..., Any]) -> None:
    """Reaction toggles spend the publish budget: past it they get 42900 with retry_after."""
    srv: TestServer = await make_server(publish_burst=5, publish_rate=0.01)
    ana = await Wire.open(srv.ws_url, srv.token("ana"))
    first = await said(ana, "x")
    codes = []
    for i in range(6):
        frame = {"type": "react", "channel": ROOM, "serial": first, "reaction": "a", "remove": bool(i % 2)}
        codes.append((await ana.request(frame)).get("code"))
    assert codes[:4] == [None] * 4 and codes[4] == Code.RATE_LIMITED
    await ana.close()


async def test_threads_count_replies_on_the_root(connect: Connect) -> None:
    """Replies carry `thread`, the root counts them, thread history pages, replies to replies are refused."""
    ana, bob = await connect("ana"), await connect("bob")
    root = await said(ana, "topic")
    other = await said(ana, "unrelated")
    replies = [await said(bob, f"r{i}", thread=root) for i in range(3)]
    summary = (await page(ana, before=root + 1, limit=1, direction="backwards"))[0]["replies"]
    assert summary == {
        "count": 3,
        "last": {"serial": replies[-1], "client_id": "bob", "ts": summary["last"]["ts"]},
    }
    thread = await ana.request(
        {"type": "history", "channel": ROOM, "thread": root, "limit": 2, "direction": "forwards"}
    )
    assert [m["serial"] for m in thread["messages"]] == replies[:2] and thread["has_more"] is True
    assert all(m["thread"] == root for m in thread["messages"])
    assert [m["serial"] for m in await page(ana, view="main")] == [root, other]
    nested = await bob.request({"type": "publish", "channel": ROOM, "data": "x", "thread": replies[0]})
    assert nested["code"] == Code.INVALID_VALUE and nested["thread"] == root
    missing = await bob.request({"type": "publish", "channel": ROOM, "data": "x", "thread": 999})
    assert missing["code"] == Code.MESSAGE_NOT_FOUND


async def test_a_stream_can_answer_in_a_thread_and_its_writer_may_edit_it(connect: Connect) -> None:
    """A stream opened with `thread` ends as a reply there, and the writer may edit its final message."""
    ana, bot = await connect("ana"), await connect("bot", kind="agent")
    root = await said(ana, "question")
    bad = await bot.request({"type": "stream_open", "channel": ROOM, "thread": root + 5})
    assert bad["code"] == Code.MESSAGE_NOT_FOUND
    opened = await bot.request({"type": "stream_open", "channel": ROOM, "thread": root})
    await bot.request({"type": "stream_append", "stream_id": opened["stream_id"], "i": 0, "d": "answer"})
    end = await bot.request({"type": "stream_end", "stream_id": opened["stream_id"]})
    edit = await bot.request(
        {"type": "edit", "channel": ROOM, "serial": end["serial"], "data": "better answer"}
    )
    assert edit["type"] == "ack"
    refused = await ana.request(
        {"type": "edit", "channel": ROOM, "serial": end["serial"], "data": "mine now"}
    )
    assert refused["code"] == Code.FORBIDDEN
    reply = (await page(ana, thread=root))[0]
    assert reply["data"] == "better answer" and reply["stream_id"] == opened["stream_id"]
    assert (await page(ana, before=root + 1, limit=1, direction="backwards"))[0]["replies"]["count"] == 1


async def test_events_replay_in_order_on_both_databases(make_server: Callable[..., Any], db_url: str) -> None:
    """On SQLite and PostgreSQL, a resuming reader gets edits, reactions, replies and deletes in order."""
    srv: TestServer = await make_server(db=db_url)
    ana = await Wire.open(srv.ws_url, srv.token("ana"))
    reader = await Wire.open(srv.ws_url, srv.token("reader"))
    position = (await reader.request({"type": "attach", "channel": ROOM}))["position"]
    await reader.close()
    first = await said(ana, "v1")
    steps: list[dict[str, Any]] = [
        {"type": "edit", "channel": ROOM, "serial": first, "data": "v2"},
        {"type": "react", "channel": ROOM, "serial": first, "reaction": "eyes"},
        {"type": "publish", "channel": ROOM, "data": "reply", "thread": first},
        {"type": "delete", "channel": ROOM, "serial": first},
    ]
    for step in steps:
        assert (await ana.request(step))["type"] == "ack"
    back = await Wire.open(srv.ws_url, srv.token("reader"))
    await back.request({"type": "attach", "channel": ROOM, "position": position})
    got = await back.messages(5, ROOM)
    assert [m["serial"] for m in got] == list(range(first, first + 5))
    assert [m.get("action") for m in got] == [None, "edit", "react", None, "delete"]
    assert got[0]["data"] is None and got[0]["deleted"]["by"] == "ana" and got[0]["replies"]["count"] == 1
    assert got[3]["thread"] == first
    await ana.close()
    await back.close()
