"""Read state, unread and mention counts, and the room directory, over real sockets and REST."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from agentchat_server.protocol import Code
from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire

Connect = Callable[..., Any]


async def publish(wire: Wire, channel: str, data: Any, **fields: Any) -> int:
    reply = await wire.request({"type": "publish", "channel": channel, "data": data, **fields})
    assert reply["type"] == "ack", reply
    return int(reply["serials"][0])


async def unread(wire: Wire, **query: Any) -> dict[str, Any]:
    reply = await wire.request({"type": "unread", **query})
    assert reply["type"] == "ack", reply
    return reply


async def test_read_marks_count_unread_and_mentions(connect: Connect) -> None:
    """Unread counts others' top-level messages past the mark; mentions count messages naming me."""
    ana, bob = await connect("ana"), await connect("bob")
    first = await publish(ana, "room:a", "hi all")
    await publish(ana, "room:a", "@bob look")
    await publish(ana, "room:a", "mail ana@bob.example is no mention")
    await publish(bob, "room:a", "my own @bob")
    await publish(ana, "room:a", "in a thread @bob", thread=first)
    counts = (await unread(bob, channels=["room:a", "room:empty"]))["channels"]
    assert counts[0] == {
        "channel": "room:a",
        "last_read": 0,
        "last_serial": 5,
        "unread": 3,
        "mentions": 2,
    }
    assert counts[1]["unread"] == 0 and counts[1]["last_serial"] == 0
    mark = await bob.request({"type": "read", "channel": "room:a", "serial": 2})
    assert (mark["serial"], mark["moved"]) == (2, True)
    after = (await unread(bob))["channels"]
    assert [(c["channel"], c["unread"], c["mentions"]) for c in after] == [("room:a", 1, 1)]


async def test_read_marks_never_go_backwards_and_are_checked(connect: Connect) -> None:
    """A lower serial leaves the mark; a serial past the channel, or without subscribe, is refused."""
    ana = await connect("ana")
    for i in range(3):
        await publish(ana, "room:b", i)
    assert (await ana.request({"type": "read", "channel": "room:b", "serial": 3}))["moved"] is True
    back = await ana.request({"type": "read", "channel": "room:b", "serial": 1})
    assert (back["type"], back["serial"], back["moved"]) == ("ack", 3, False)
    ahead = await ana.request({"type": "read", "channel": "room:b", "serial": 4})
    assert ahead["code"] == Code.INVALID_VALUE and ahead["last_serial"] == 3
    outsider = await connect("eve", capabilities={"room:other": ["subscribe"]})
    refused = await outsider.request({"type": "read", "channel": "room:b", "serial": 1})
    assert refused["code"] == Code.FORBIDDEN
    hidden = await outsider.request({"type": "unread", "channels": ["room:b"]})
    assert hidden["code"] == Code.FORBIDDEN


async def test_read_marks_survive_a_restart(tmp_path: Path) -> None:
    """A read mark is stored: a new server on the same database still has it."""
    db = f"sqlite+aiosqlite:///{tmp_path / 'keep.db'}"
    keys = ["test:" + "k" * 40]
    async with TestServer(tmp_path / "one", db=db, keys=keys) as srv:
        ana = await Wire.open(srv.ws_url, srv.token("ana"))
        for i in range(4):
            await publish(ana, "room:c", i)
        await ana.request({"type": "read", "channel": "room:c", "serial": 3})
        await ana.close()
    async with TestServer(tmp_path / "two", db=db, keys=keys) as srv:
        ana = await Wire.open(srv.ws_url, srv.token("ana"))
        counts = (await unread(ana))["channels"]
        assert [(c["channel"], c["last_read"], c["last_serial"]) for c in counts] == [("room:c", 3, 4)]
        await ana.close()


async def test_unread_counts_are_capped(make_server: Callable[..., Any]) -> None:
    """Counts stop at unread_count_cap and say so with `capped`."""
    srv: TestServer = await make_server(unread_count_cap=3)
    ana, bob = await Wire.open(srv.ws_url, srv.token("ana")), await Wire.open(srv.ws_url, srv.token("bob"))
    await ana.request({"type": "publish", "channel": "room:d", "messages": [{"data": i} for i in range(5)]})
    entry = (await unread(bob, channels=["room:d"]))["channels"][0]
    assert (entry["unread"], entry["capped"]) == (3, True)
    await ana.close()
    await bob.close()


async def test_the_directory_lists_what_the_token_may_subscribe_to(connect: Connect) -> None:
    """Rooms are listed by the token's subscribe patterns (most specific wins), paged, with metadata."""
    ana = await connect("ana")
    for name in ("room:alpha", "room:beta", "room:gamma", "room:secret-1", "team:x", "room_x:y"):
        await publish(ana, name, "hi")
    made = await ana.request(
        {"type": "room_set", "channel": "room:beta", "title": "Beta Team ✨", "topic": "β"}
    )
    assert made["room"]["title"] == "Beta Team ✨"
    caps = {"room:*": ["subscribe"], "room:secret*": ["publish"], "team:x": ["subscribe"]}
    reader = await connect("reader", capabilities=caps)
    await ana.request({"type": "attach", "channel": "room:alpha"})
    assert (await ana.request({"type": "presence", "channel": "room:alpha", "action": "enter"}))[
        "type"
    ] == "ack"
    first = await reader.request({"type": "rooms", "limit": 2})
    assert [r["channel"] for r in first["rooms"]] == ["room:alpha", "room:beta"]
    assert first["has_more"] is True and first["next"] == "room:beta"
    assert first["rooms"][0]["members"] == 1 and first["rooms"][0]["last_serial"] == 1
    assert first["rooms"][0]["last_ts"] > 0
    assert first["rooms"][1]["title"] == "Beta Team ✨" and first["rooms"][1]["updated_by"] == "ana"
    rest = await reader.request({"type": "rooms", "after": first["next"]})
    assert [r["channel"] for r in rest["rooms"]] == ["room:gamma", "team:x"] and rest["has_more"] is False
    narrowed = await reader.request({"type": "rooms", "prefix": "team:"})
    assert [r["channel"] for r in narrowed["rooms"]] == ["team:x"]
    one = await reader.request({"type": "room_get", "channel": "room:beta"})
    assert one["room"]["topic"] == "β"
    hidden = await reader.request({"type": "room_get", "channel": "room:secret-1"})
    assert hidden["code"] == Code.FORBIDDEN


async def test_room_metadata_needs_manage_and_a_canonical_name(connect: Connect) -> None:
    """room_set needs manage; non-canonical names, hostile titles and a second create are refused."""
    ana = await connect("ana")
    member = await connect("bob", capabilities={"room:*": ["subscribe", "publish"]})
    await ana.request({"type": "attach", "channel": "room:design-review"})
    refused = await member.request({"type": "room_set", "channel": "room:x", "title": "X"})
    assert refused["code"] == Code.FORBIDDEN
    upper = await ana.request({"type": "room_set", "channel": "room:Design-Review", "title": "Design Review"})
    assert upper["code"] == Code.INVALID_VALUE and upper["canonical"] == "room:design-review"
    colon = await ana.request({"type": "room_set", "channel": "room:a:b", "title": "A"})
    assert colon["code"] == Code.INVALID_VALUE and "canonical" not in colon
    for title in ("", " padded", "evil\u202etxt", "bell\x07", "x" * 101):
        bad = await ana.request({"type": "room_set", "channel": "room:design-review", "title": title})
        assert bad["code"] in (Code.INVALID_VALUE, Code.INVALID_FRAME), title
    created = await ana.request(
        {"type": "room_set", "channel": "room:design-review", "title": "Design Review", "create": True}
    )
    assert created["room"]["title"] == "Design Review"
    live = await ana.expect("room", channel="room:design-review")
    assert live["title"] == "Design Review" and live["updated_by"] == "ana"
    twice = await ana.request(
        {"type": "room_set", "channel": "room:design-review", "title": "Mine", "create": True}
    )
    assert twice["code"] == Code.ALREADY_EXISTS
    other_ns = await ana.request({"type": "room_set", "channel": "support:Queue-1", "title": "Queue 1"})
    assert other_ns["type"] == "ack"
    missing = await ana.request({"type": "room_get", "channel": "room:nowhere"})
    assert missing["code"] == Code.NOT_FOUND


async def test_rest_directory_read_state_thread_history_and_edits(server: TestServer) -> None:
    """The REST endpoints share auth, rights and error bodies with the frames."""
    token = server.token("ana")
    headers = {"Authorization": f"Bearer {token}"}
    base = server.url
    timeout = aiohttp.ClientTimeout(total=UNIT * 4)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:

        async def call(method: str, path: str, **kw: Any) -> tuple[int, Any]:
            async with http.request(method, base + path, **kw) as response:
                return response.status, await response.json()

        status, body = await call("POST", "/v1/channels/room:rest/messages", json={"data": "root @bob"})
        root = body["serials"][0]
        await call("POST", "/v1/channels/room:rest/messages", json={"data": "reply", "thread": root})
        status, body = await call("GET", f"/v1/channels/room:rest/messages?thread={root}")
        assert status == 200 and [m["data"] for m in body["messages"]] == ["reply"]
        status, body = await call("GET", "/v1/channels/room:rest/messages?view=main")
        assert [m["serial"] for m in body["messages"]] == [root]
        status, body = await call("PATCH", f"/v1/channels/room:rest/messages/{root}", json={"data": "root!"})
        assert status == 200 and body["serial"] == 3
        status, body = await call("PUT", f"/v1/channels/room:rest/messages/{root}/reactions/👍")
        assert status == 200 and body["serial"] == 4
        status, body = await call("DELETE", f"/v1/channels/room:rest/messages/{root}/reactions/👍")
        assert status == 200 and body["serial"] == 5
        status, body = await call("PUT", f"/v1/channels/room:rest/messages/{root}/reactions/NOPE")
        assert status == 400 and body["error"]["code"] == Code.INVALID_VALUE
        status, body = await call("PATCH", "/v1/channels/room:rest/messages/99", json={"data": "x"})
        assert status == 404 and body["error"]["code"] == Code.MESSAGE_NOT_FOUND
        status, body = await call("PUT", "/v1/channels/room:rest/read", json={"serial": 2})
        assert (status, body) == (200, {"serial": 2, "moved": True})
        status, body = await call("PUT", "/v1/channels/room:rest/read", json={"serial": "2"})
        assert status == 400 and body["error"]["code"] == Code.INVALID_FRAME
        status, body = await call("GET", "/v1/unread")
        assert [c["channel"] for c in body["channels"]] == ["room:rest"]
        status, body = await call("GET", "/v1/unread?channels=room:rest,room:Bad%0A")
        assert status == 400
        status, body = await call(
            "PUT", "/v1/channels/room:rest/room", json={"title": "REST", "create": True}
        )
        assert status == 409 and body["error"]["code"] == Code.ALREADY_EXISTS  # people talk there already
        status, body = await call("PUT", "/v1/channels/room:rest/room", json={"title": "REST"})
        assert status == 200 and body["room"]["title"] == "REST"
        status, body = await call(
            "PUT", "/v1/channels/room:rest-2/room", json={"title": "Two", "create": True}
        )
        assert status == 201 and body["room"]["last_serial"] == 0
        status, body = await call("GET", "/v1/channels/room:rest/room")
        assert body["room"]["last_serial"] == 5
        status, body = await call("GET", "/v1/rooms?prefix=room:r")
        assert [r["channel"] for r in body["rooms"]] == ["room:rest", "room:rest-2"]
        status, body = await call("DELETE", f"/v1/channels/room:rest/messages/{root}")
        assert status == 200 and body["serial"] == 6
    async with aiohttp.ClientSession(timeout=timeout) as anonymous:
        async with anonymous.get(base + "/v1/rooms") as response:
            assert response.status == 401
