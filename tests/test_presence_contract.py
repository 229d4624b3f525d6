"""The Presence port's contract, run against every adapter: in memory, and Redis (a real one)."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from agentchat_server.core.presence import Member
from agentchat_server.presence import LocalPresence, Presence

CH = "room:contract"


def member(cid: str, data: object = None, client: str | None = None, ts: int = 1000) -> Member:
    return Member(client or f"c-{cid}", cid, "human", data, ts, 200)


@pytest_asyncio.fixture(params=["local", "redis"])
async def presence(request: pytest.FixtureRequest) -> AsyncIterator[Presence]:
    if request.param == "local":
        yield LocalPresence()
        return
    url = request.getfixturevalue("redis_url")
    from redis.asyncio import Redis

    from agentchat_server.presence.redis import RedisPresence

    redis = Redis.from_url(url)
    yield RedisPresence(redis, f"test{secrets.token_hex(4)}", ttl_ms=10_000)
    await redis.aclose()


async def test_enter_update_leave_make_one_diff_each(presence: Presence) -> None:
    """enter, then update with new data, then leave: one diff each; equal data makes none."""
    assert (await presence.enter(CH, member("a", 1))).action == "enter"  # type: ignore[union-attr]
    assert await presence.enter(CH, member("a", 1)) is None
    diff = await presence.enter(CH, member("a", 2))
    assert diff is not None and diff.action == "update" and diff.member.data == 2
    gone = await presence.leave(CH, "a", 2000)
    assert gone is not None and gone.action == "leave" and gone.member.data == 2
    assert await presence.leave(CH, "a", 2000) is None
    assert await presence.count(CH) == 0


async def test_one_entry_per_connection_and_pages_in_order(presence: Presence) -> None:
    """Two connections of one client are two entries; pages follow connection ids, bounded both ways."""
    for cid in ("d", "b", "a", "c", "e"):
        await presence.enter(CH, member(cid, client="same"))
    assert await presence.count(CH) == 5
    first, more = await presence.page(CH, None, 2, 1 << 20)
    assert [m.connection_id for m in first] == ["a", "b"] and more
    rest, more = await presence.page(CH, "b", 10, 1 << 20)
    assert [m.connection_id for m in rest] == ["c", "d", "e"] and not more
    by_bytes, more = await presence.page(CH, None, 10, 450)  # entries are 200 bytes each
    assert [m.connection_id for m in by_bytes] == ["a", "b"] and more
    found = await presence.member(CH, "c")
    assert found is not None and found.client_id == "same"
    assert await presence.member(CH, "zz") is None


async def test_entries_kept_alive_do_not_lapse_and_others_leave_once(presence: Presence) -> None:
    """`expire` removes only entries whose node stopped refreshing them, each leave reported once."""
    await presence.enter(CH, member("kept", ts=1000))
    await presence.enter(CH, member("dead", ts=1000))
    await presence.refresh([(CH, "kept")], ttl_ms=10_000, now_ms=50_000)
    first = await presence.expire(CH, now_ms=30_000)
    second = await presence.expire(CH, now_ms=30_000)
    if isinstance(presence, LocalPresence):
        assert first == [] and second == []  # one process: entries leave by their own session's timers
        return
    assert [d.member.connection_id for d in first] == ["dead"] and second == []
    assert [m.connection_id for m in (await presence.page(CH, None, 10, 1 << 20))[0]] == ["kept"]
