"""Presence: snapshot plus diffs always equal the true set; grace on drops; no ghosts after restart."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

import aiohttp

from agentchat_server.testing import TestServer
from tests.server_process import ServerProcess
from tests.wire import UNIT, Wire

ROOM = "room:presence"


class Observer:
    """Keeps a presence view from presence_sync pages and presence diffs, as a client would."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.view: dict[str, tuple[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._syncing = False

    @classmethod
    async def attach(cls, srv: TestServer, name: str) -> Observer:
        obs = cls(await Wire.open(srv.ws_url, srv.token(name)))
        await obs.wire.request({"type": "attach", "channel": ROOM})
        await obs.drain()
        return obs

    async def drain(self) -> None:
        """Apply everything the server sent before now (a ping's ack is the barrier)."""
        await self.wire.request({"type": "ping"})
        while not self.wire.inbox.empty():
            self.apply(self.wire.inbox.get_nowait())

    def apply(self, frame: dict[str, Any]) -> None:
        if frame["type"] == "presence_sync":
            if not self._syncing:
                self.view = {}
                self._syncing = True
            for m in frame["members"]:
                self.view[m["connection_id"]] = (m["client_id"], m["data"])
            if frame["last"]:
                self._syncing = False
        elif frame["type"] == "presence":
            self.events.append(frame)
            m = frame["member"]
            if frame["action"] == "leave":
                assert m["connection_id"] in self.view, f"leave of an absent member {m}"
                del self.view[m["connection_id"]]
            else:
                if frame["action"] == "enter":
                    assert m["connection_id"] not in self.view, f"double enter {m}"
                else:
                    assert m["connection_id"] in self.view, f"update of an absent member {m}"
                self.view[m["connection_id"]] = (m["client_id"], m["data"])


async def test_random_enters_updates_leaves_drops_and_resumes_match_a_model(
    make_server: Callable[..., Any],
) -> None:
    """400 random steps across 10 clients: every observer's view equals the model after each step."""
    srv: TestServer = await make_server(presence_grace=600)
    rng = random.Random(11)
    observers = [await Observer.attach(srv, "obs0")]
    clients: dict[int, Wire | None] = {}
    tokens: dict[int, dict[str, str]] = {}
    model: dict[str, tuple[str, Any]] = {}
    session_of: dict[int, str] = {}

    async def open_client(k: int, resume: dict[str, str] | None = None) -> Wire:
        wire = await Wire.open(srv.ws_url, srv.token(f"c{k % 7}"), resume=resume)
        await wire.request({"type": "attach", "channel": ROOM, "presence": False})
        clients[k] = wire
        tokens[k] = wire.resume_token
        session_of[k] = wire.connected["session_id"]
        return wire

    for k in range(10):
        await open_client(k)
    try:
        for step in range(400):
            k = rng.randrange(10)
            wire = clients[k]
            action = rng.choice(["enter", "enter", "update", "leave", "same", "drop", "resume", "observer"])
            if wire is None:
                if action in ("resume", "enter", "update"):
                    await open_client(k, tokens[k])  # resumed inside the grace: entry kept, no event
                    assert clients[k] is not None and clients[k].connected["resumed"]  # type: ignore[union-attr]
                continue
            cid = session_of[k]
            if action in ("enter", "update"):
                data = {"status": rng.choice(["idle", "thinking", "streaming"]), "n": rng.randrange(3)}
                await wire.request({"type": "presence", "channel": ROOM, "action": action, "data": data})
                model[cid] = (f"c{k % 7}", data)
            elif action == "same" and cid in model:
                await wire.request(
                    {"type": "presence", "channel": ROOM, "action": "enter", "data": model[cid][1]}
                )
            elif action == "leave":
                await wire.request({"type": "presence", "channel": ROOM, "action": "leave"})
                model.pop(cid, None)
            elif action == "drop":
                wire.cut()
                await wire.closed.wait()
                await wire.close()
                clients[k] = None  # present until the grace ends (600 s here): the model keeps it
            elif action == "observer" and len(observers) < 4:
                observers.append(await Observer.attach(srv, f"obs{len(observers)}"))
            for obs in observers:
                await obs.drain()
                assert obs.view == model, f"step {step} ({action} by {k})"
        async with aiohttp.ClientSession() as http:
            async with http.get(
                f"{srv.url}/v1/channels/{ROOM}/presence",
                headers={"Authorization": f"Bearer {srv.token('r')}"},
            ) as resp:
                members = (await resp.json())["members"]
        assert {m["connection_id"]: (m["client_id"], m["data"]) for m in members} == model
    finally:
        await asyncio.gather(
            *(w.close() for w in clients.values() if w), *(o.wire.close() for o in observers)
        )


async def test_drop_and_resume_inside_grace_shows_no_leave(make_server: Callable[..., Any]) -> None:
    """An abrupt drop followed by a resume inside the grace emits nothing at all."""
    srv: TestServer = await make_server(presence_grace=600)
    obs = await Observer.attach(srv, "watch")
    agent = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"))
    await agent.request({"type": "attach", "channel": ROOM})
    await agent.request({"type": "presence", "channel": ROOM, "action": "enter", "data": {"status": "idle"}})
    await obs.drain()
    assert [e["action"] for e in obs.events] == ["enter"]
    agent.cut()
    await agent.closed.wait()
    back = await Wire.open(srv.ws_url, srv.token("planner", kind="agent"), resume=agent.resume_token)
    try:
        assert back.connected["resumed"] is True
        await back.request({"type": "attach", "channel": ROOM})
        await back.request(
            {"type": "presence", "channel": ROOM, "action": "enter", "data": {"status": "idle"}}
        )
        await obs.drain()
        assert [e["action"] for e in obs.events] == ["enter"]
        assert list(obs.view.values()) == [("planner", {"status": "idle"})]
    finally:
        await asyncio.gather(agent.close(), back.close(), obs.wire.close())


async def test_drop_without_resume_leaves_exactly_once_after_grace(make_server: Callable[..., Any]) -> None:
    """Without a resume the member leaves when the grace ends: one leave, never two."""
    srv: TestServer = await make_server(presence_grace=0.2)
    obs = await Observer.attach(srv, "watch")
    gone = await Wire.open(srv.ws_url, srv.token("ana"))
    stays = await Wire.open(srv.ws_url, srv.token("bo"))
    for w in (gone, stays):
        await w.request({"type": "attach", "channel": ROOM})
        await w.request({"type": "presence", "channel": ROOM, "action": "enter", "data": None})
    await obs.drain()
    obs.events.clear()
    gone.cut()
    leave = await obs.wire.expect("presence", action="leave", timeout=UNIT)
    obs.apply(leave)
    assert leave["member"]["client_id"] == "ana"
    await stays.request({"type": "presence", "channel": ROOM, "action": "update", "data": 1})
    await obs.drain()
    assert [e["action"] for e in obs.events] == ["leave", "update"]
    assert [c for c, _ in obs.view.values()] == ["bo"]
    await asyncio.gather(gone.close(), stays.close(), obs.wire.close())


async def test_graceful_close_and_detach_leave_at_once(make_server: Callable[..., Any]) -> None:
    """A client closing normally (1000) or detaching leaves immediately, grace or not."""
    srv: TestServer = await make_server(presence_grace=600)
    obs = await Observer.attach(srv, "watch")
    a = await Wire.open(srv.ws_url, srv.token("a"))
    b = await Wire.open(srv.ws_url, srv.token("b"))
    for w in (a, b):
        await w.request({"type": "attach", "channel": ROOM})
        await w.request({"type": "presence", "channel": ROOM, "action": "enter"})
    await a.close()
    assert (await obs.wire.expect("presence", action="leave"))["member"]["client_id"] == "a"
    await b.request({"type": "detach", "channel": ROOM})
    assert (await obs.wire.expect("presence", action="leave"))["member"]["client_id"] == "b"
    await asyncio.gather(b.close(), obs.wire.close())


async def test_one_person_on_two_tabs_is_two_entries(connect: Callable[..., Any]) -> None:
    """Two connections of one client_id are two members; occupancy counts both."""
    tab1 = await connect("ana")
    tab2 = await connect("ana")
    for w in (tab1, tab2):
        await w.request({"type": "attach", "channel": ROOM})
        await w.request({"type": "presence", "channel": ROOM, "action": "enter", "data": {"tab": 1}})
    members = (await tab1.request({"type": "presence_get", "channel": ROOM}))["members"]
    assert [m["client_id"] for m in members] == ["ana", "ana"]
    assert len({m["connection_id"] for m in members}) == 2
    occ = (await tab1.request({"type": "occupancy", "channel": ROOM}))["occupancy"]
    assert occ == {"connections": 2, "subscribers": 2, "publishers": 2, "presence_members": 2}


async def test_thousand_members_snapshot_in_pages(make_server: Callable[..., Any]) -> None:
    """1,000 members: a new observer gets 10 pages of 100, REST lists all, occupancy counts them."""
    srv: TestServer = await make_server()
    members: list[Wire] = []

    async def join(i: int) -> None:
        w = await Wire.open(srv.ws_url, srv.token(f"m{i}"))
        members.append(w)
        await w.request({"type": "attach", "channel": ROOM, "presence": False})
        await w.request({"type": "presence", "channel": ROOM, "action": "enter", "data": {"i": i}})

    try:
        for start in range(0, 1000, 100):
            await asyncio.gather(*(join(i) for i in range(start, start + 100)))
        obs = await Wire.open(srv.ws_url, srv.token("obs"))
        members.append(obs)
        await obs.request({"type": "attach", "channel": ROOM})
        pages = [await obs.expect("presence_sync") for _ in range(10)]
        assert [len(p["members"]) for p in pages] == [100] * 10
        assert [p["last"] for p in pages] == [False] * 9 + [True]
        assert sorted(m["data"]["i"] for p in pages for m in p["members"]) == list(range(1000))
        occ = (await obs.request({"type": "occupancy", "channel": ROOM}))["occupancy"]
        assert occ["presence_members"] == 1000 and occ["connections"] == 1001
    finally:
        await asyncio.gather(*(w.close() for w in members))


async def test_no_ghosts_after_server_restart(tmp_path: Any) -> None:
    """Members present when the server dies are not reported by the restarted server."""
    server = ServerProcess(f"sqlite+aiosqlite:///{tmp_path / 'p.db'}")
    await server.start()
    try:
        for name in ("a", "b"):
            w = await Wire.open(server.ws_url, server.token(name))
            await w.request({"type": "attach", "channel": ROOM})
            await w.request({"type": "presence", "channel": ROOM, "action": "enter"})
        await server.kill()
        await server.start()
        obs = await Wire.open(server.ws_url, server.token("obs"))
        assert (await obs.request({"type": "presence_get", "channel": ROOM}))["members"] == []
        await obs.request({"type": "attach", "channel": ROOM})
        sync = await obs.expect("presence_sync")
        assert sync["members"] == [] and sync["last"]
        await obs.close()
    finally:
        await server.stop()
