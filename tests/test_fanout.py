"""End to end over loopback WebSockets: ordered fan-out per channel, JSON and msgpack."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from agentchat_server.testing import TestServer
from tests.wire import UNIT, Wire


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
async def test_three_clients_two_channels_get_exactly_their_channels_in_order(
    connect: Callable[..., Any], fmt: str
) -> None:
    """Interleaved publishes on two channels reach exactly their subscribers, in serial order."""
    a = await connect("a", fmt=fmt)
    b = await connect("b", fmt=fmt)
    c = await connect("c", fmt=fmt)
    for wire, channels in ((a, ["room:x"]), (b, ["room:y"]), (c, ["room:x", "room:y"])):
        for ch in channels:
            reply = await wire.request({"type": "attach", "channel": ch})
            assert reply["type"] == "attached" and reply["resumed"] is True
    sends = []
    for i in range(30):
        channel = "room:x" if i % 3 else "room:y"
        publisher = (a, b, c)[i % 3]
        sends.append(
            publisher.request({"type": "publish", "channel": channel, "data": {"i": i}, "name": "chat"})
        )
    acks = await asyncio.gather(*sends)
    assert all(ack["type"] == "ack" for ack in acks)
    expected_x = [i for i in range(30) if i % 3]
    expected_y = [i for i in range(30) if not i % 3]
    got_a = await a.messages(len(expected_x))
    got_b = await b.messages(len(expected_y))
    got_c = await c.messages(30)
    assert {m["channel"] for m in got_a} == {"room:x"}
    assert {m["channel"] for m in got_b} == {"room:y"}
    for got in (
        got_a,
        got_b,
        [m for m in got_c if m["channel"] == "room:x"],
        [m for m in got_c if m["channel"] == "room:y"],
    ):
        serials = [m["serial"] for m in got]
        assert serials == list(range(1, len(got) + 1))
    assert sorted(m["data"]["i"] for m in got_a) == expected_x
    assert sorted(m["data"]["i"] for m in got_b) == expected_y


async def test_frames_of_one_tick_reach_each_reader_in_order_and_only_what_it_asked_for(
    connect: Callable[..., Any],
) -> None:
    """Live frames of one loop tick go to a reader in one write; order and presence wishes hold."""
    watcher = await connect("watcher", fmt="json")  # wants presence
    quiet_json = await connect("quiet-json", fmt="json")  # no presence
    quiet_msgpack = await connect("quiet-msgpack", fmt="msgpack")  # no presence
    await watcher.request({"type": "attach", "channel": "room:tick", "presence": True})
    for wire in (quiet_json, quiet_msgpack):
        await wire.request({"type": "attach", "channel": "room:tick", "presence": False})
    actor = await connect("actor", fmt="msgpack")
    await actor.request({"type": "attach", "channel": "room:tick", "presence": False})
    frames: list[dict[str, Any]] = []
    for i in range(12):
        frames.append({"type": "publish", "channel": "room:tick", "data": i, "ephemeral": True})
        if i % 4 == 1:
            action = "enter" if i == 1 else "update"
            frames.append({"type": "presence", "channel": "room:tick", "action": action, "data": i})
    actor.send_together(frames)
    # Then a burst of durable publishes, one commit batch: serials 1..20 in order, once each.
    actor.send_together(
        [{"type": "publish", "channel": "room:tick", "data": 100 + i, "ref": 1000 + i} for i in range(20)]
    )

    async def seen(wire: Wire, count: int) -> list[Any]:
        got: list[Any] = []
        async with asyncio.timeout(UNIT * 4):
            while len(got) < count:
                frame = await wire.inbox.get()
                if frame["type"] == "message":
                    got.append(frame["data"] if frame["serial"] is None else ("durable", frame["serial"]))
                elif frame["type"] == "presence":
                    got.append((frame["action"], frame["member"]["data"]))
        return got

    durable = [("durable", serial) for serial in range(1, 21)]
    assert await seen(watcher, 35) == [
        0, 1, ("enter", 1), 2, 3, 4, 5, ("update", 5), 6, 7, 8, 9, ("update", 9), 10, 11, *durable
    ]  # fmt: skip
    for wire in (quiet_json, quiet_msgpack):
        assert await seen(wire, 32) == [*range(12), *durable]
    assert watcher.inbox.empty() and quiet_json.inbox.empty() and quiet_msgpack.inbox.empty()


async def test_hundred_subscribers_five_publishers_match_history(make_server: Callable[..., Any]) -> None:
    """100 subscribers, 1,000 messages from 5 concurrent publishers: every sequence equals history."""
    srv: TestServer = await make_server(publish_burst=1000)
    subs = [
        await Wire.open(srv.ws_url, srv.token(f"s{i}"), fmt="msgpack" if i % 2 else "json")
        for i in range(100)
    ]
    pubs = [await Wire.open(srv.ws_url, srv.token(f"p{i}")) for i in range(5)]
    try:
        await asyncio.gather(
            *(s.request({"type": "attach", "channel": "room:big", "presence": False}) for s in subs)
        )

        async def publish(pub: Wire, n: int) -> None:
            for k in range(0, 200, 20):
                await asyncio.gather(
                    *(
                        pub.request({"type": "publish", "channel": "room:big", "data": f"{n}-{j}"})
                        for j in range(k, k + 20)
                    )
                )

        await asyncio.gather(*(publish(p, n) for n, p in enumerate(pubs)))
        expected: list[tuple[int, str]] = []
        more = True
        while more:  # pages are cut by bytes too: page on while has_more
            page = await pubs[0].request(
                {
                    "type": "history",
                    "channel": "room:big",
                    "limit": 1000,
                    "direction": "forwards",
                    "after": expected[-1][0] if expected else 0,
                }
            )
            expected += [(m["serial"], m["data"]) for m in page["messages"]]
            more = page["has_more"]
        assert [s for s, _ in expected] == list(range(1, 1001))
        results = await asyncio.gather(*(s.messages(1000, timeout=UNIT * 12) for s in subs))
        for got in results:
            assert [(m["serial"], m["data"]) for m in got] == expected
    finally:
        await asyncio.gather(*(w.close() for w in subs + pubs))


async def test_rest_publish_history_and_health(server: TestServer, connect: Callable[..., Any]) -> None:
    """REST publish returns the serial after commit; history pages by cursor both ways."""
    import aiohttp

    sub = await connect("watcher")
    await sub.request({"type": "attach", "channel": "room:r"})
    headers = {"Authorization": f"Bearer {server.token('rest')}"}
    async with aiohttp.ClientSession() as http:
        for i in range(12):
            async with http.post(
                f"{server.url}/v1/channels/room:r/messages", json={"data": i}, headers=headers
            ) as r:
                assert r.status == 201
                assert (await r.json())["serials"] == [i + 1]
        async with http.post(
            f"{server.url}/v1/channels/room:r/messages",
            json={"messages": [{"data": "a"}, {"data": "b"}]},
            headers=headers,
        ) as r:
            assert (await r.json())["serials"] == [13, 14]
        url = f"{server.url}/v1/channels/room:r/messages"
        async with http.get(url, params={"limit": "5"}, headers=headers) as r:
            page = await r.json()
        assert [m["serial"] for m in page["messages"]] == [14, 13, 12, 11, 10] and page["has_more"]
        async with http.get(url, params={"limit": "5", "before": "10"}, headers=headers) as r:
            assert [m["serial"] for m in (await r.json())["messages"]] == [9, 8, 7, 6, 5]
        async with http.get(url, params={"after": "11", "direction": "forwards"}, headers=headers) as r:
            page = await r.json()
        assert [m["serial"] for m in page["messages"]] == [12, 13, 14] and not page["has_more"]
        async with http.get(f"{server.url}/healthz") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
    got = await sub.messages(14)
    assert [m["serial"] for m in got] == list(range(1, 15))
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as r:
        text = await r.text()
    assert 'agentchat_publishes_total{lane="durable"} 14.0' in text
    sent = next(line for line in text.splitlines() if line.startswith("agentchat_bytes_out_total "))
    frames = sum(len(json.dumps(m, separators=(",", ":"))) for m in got)
    assert float(sent.split()[1]) >= frames  # the 14 message frames at least (and the replies)


async def test_history_limit_is_capped(make_server: Callable[..., Any]) -> None:
    """A limit above history_max_page returns at most history_max_page messages."""
    srv: TestServer = await make_server(history_max_page=10)
    w = await Wire.open(srv.ws_url, srv.token("a"))
    try:
        await w.request(
            {"type": "publish", "channel": "room:h", "messages": [{"data": i} for i in range(30)]}
        )
        page = await w.request({"type": "history", "channel": "room:h", "limit": 500})
        assert len(page["messages"]) == 10 and page["has_more"]
    finally:
        await w.close()
