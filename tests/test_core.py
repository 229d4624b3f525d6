"""Pure core: cursors, presence sets, streams, token buckets, capabilities. No event loop."""

from __future__ import annotations

import random

import pytest

from agentchat_server.core.capabilities import Capabilities
from agentchat_server.core.ordering import Cursor, Offer
from agentchat_server.core.presence import PresenceSet
from agentchat_server.core.ratelimit import TokenBucket
from agentchat_server.core.records import Message
from agentchat_server.core.reorder import Reorder
from agentchat_server.core.sessions import (
    Check,
    attach_start,
    check_connection,
    drop_plan,
    may_resume,
    renew_at,
)
from agentchat_server.core.streams import Stream
from agentchat_server.protocol import Code, ProtocolError


def test_cursor_delivers_in_order_and_drops_duplicates() -> None:
    """Serials right after `last` deliver; repeats are skipped."""
    c = Cursor(0)
    assert c.offer(1) is Offer.DELIVER
    assert c.offer(2) is Offer.DELIVER
    assert c.offer(2) is Offer.SKIP
    assert c.offer(1) is Offer.SKIP
    assert c.last == 2


def test_cursor_gap_starts_a_fill_and_ends_only_when_caught_up() -> None:
    """A gap turns the cursor FILLING; live serials during the fill raise the target."""
    c = Cursor(3)
    assert c.offer(6) is Offer.START_FILL
    assert c.offer(7) is Offer.SKIP  # filling: the Store will provide it
    for serial in (4, 5, 6):
        assert c.filled(serial)
    assert not c.fill_done()  # 7 is known to exist
    assert c.filled(7)
    assert c.fill_done()
    assert c.offer(8) is Offer.DELIVER


def test_cursor_random_interleaving_yields_exact_sequence() -> None:
    """Whatever order live and filled serials come in, the reader sees 1..N once each."""
    rng = random.Random(7)
    for _ in range(200):
        n = rng.randint(1, 60)
        c = Cursor(0)
        seen: list[int] = []
        live = list(range(1, n + 1))
        rng.shuffle(live)
        store = 0  # serials up to `store` are committed
        for serial in sorted(live):
            store = serial
            # deliver live in random small reorderings
            if rng.random() < 0.3:
                continue  # lost on the bus
            verdict = c.offer(serial)
            if verdict is Offer.DELIVER:
                seen.append(serial)
            if c.filling:
                for s in range(c.last + 1, store + 1):
                    if c.filled(s):
                        seen.append(s)
                assert c.fill_done()
        for s in range(c.last + 1, n + 1):
            assert c.filled(s)
            seen.append(s)
        assert seen == list(range(1, n + 1))


def test_presence_enter_update_leave_diffs() -> None:
    """Enter, same data again (nothing), new data (update), leave; absent leave is silent."""
    p = PresenceSet()
    d = p.enter("ana", "c1", "human", {"s": 1}, 1)
    assert d is not None and d.action == "enter"
    assert p.enter("ana", "c1", "human", {"s": 1}, 2) is None
    d = p.enter("ana", "c1", "human", {"s": 2}, 3)
    assert d is not None and d.action == "update" and d.member.data == {"s": 2}
    d = p.leave("c1", 4)
    assert d is not None and d.action == "leave"
    assert p.leave("c1", 5) is None


def test_presence_two_connections_are_two_entries() -> None:
    """One client on two tabs is two members."""
    p = PresenceSet()
    p.enter("ana", "c1", "human", None, 1)
    p.enter("ana", "c2", "human", None, 1)
    assert len(p) == 2 and p.client_ids() == {"ana"}


def test_presence_pages_cover_everyone_once() -> None:
    """Snapshot pages hold every member once and the last page is flagged."""
    p = PresenceSet()
    for i in range(1000):
        p.enter(f"u{i}", f"c{i}", "human", i, 1)
    pages = list(p.pages(100, 10**9))
    assert len(pages) == 10 and pages[-1][1] and not any(last for _, last in pages[:-1])
    assert sorted(m.connection_id for page, _ in pages for m in page) == sorted(f"c{i}" for i in range(1000))
    assert list(PresenceSet().pages(100, 10**9)) == [([], True)]


def _stream(fmt: str = "text", max_bytes: int = 100) -> Stream:
    return Stream("s1", "room:a", "sess", "bot", "agent", "answer", "m1", None, None, fmt, 0, max_bytes)


def test_stream_chunks_in_order_duplicates_ignored() -> None:
    """Indexes grow by one; a resent index is ignored; skipping ahead is refused."""
    s = _stream()
    assert s.append(0, "He")
    assert s.append(1, "llo")
    assert not s.append(1, "llo")
    with pytest.raises(ProtocolError) as err:
        s.append(5, "x")
    assert err.value.code == Code.CHUNK_OUT_OF_ORDER and err.value.details["next"] == 2
    assert s.content() == "Hello" and s.snapshot_frame()["next"] == 2


def test_stream_bounds_and_types() -> None:
    """Text streams refuse non-strings; the size bound is enforced."""
    s = _stream(max_bytes=4)
    with pytest.raises(ProtocolError) as err:
        s.append(0, {"a": 1})
    assert err.value.code == Code.INVALID_VALUE
    s.append(0, "abcd")
    with pytest.raises(ProtocolError) as err:
        s.append(1, "e")
    assert err.value.code == Code.STREAM_TOO_LARGE
    j = _stream("json")
    j.append(0, {"delta": 1})
    assert j.content() == [{"delta": 1}]


def test_stream_size_counts_wire_bytes_not_characters() -> None:
    """A control character is six bytes of JSON, a CJK character three of UTF-8: the bound counts those."""
    s = _stream(max_bytes=12)
    s.append(0, "\u0001\u0001")  # 12 bytes of JSON escapes
    with pytest.raises(ProtocolError) as err:
        s.append(1, "a")
    assert err.value.code == Code.STREAM_TOO_LARGE
    cjk = _stream(max_bytes=9)
    cjk.append(0, "中文字")
    with pytest.raises(ProtocolError):
        cjk.append(1, "字")
    floats = _stream("json", max_bytes=40)
    with pytest.raises(ProtocolError):  # 5 floats: 19 bytes of JSON, 45 of msgpack
        floats.append(0, [0.0, 0.0, 0.0, 0.0, 0.0])


def test_stream_content_survives_compaction() -> None:
    """Thousands of chunks are kept as a few joined pieces; content and snapshots are unchanged."""
    text, js = _stream(max_bytes=10**6), _stream("json", max_bytes=10**6)
    for i in range(1000):
        text.append(i, f"{i},")
        js.append(i, {"i": i})
    assert text.content() == "".join(f"{i}," for i in range(1000))
    assert js.content() == [{"i": i} for i in range(1000)]
    assert js.snapshot_frame()["next"] == 1000


def test_token_bucket_refills_with_time() -> None:
    """Burst is spent, then tokens come back at the rate."""
    b = TokenBucket(rate=10, burst=2, now=0.0)
    assert b.take(0.0) and b.take(0.0) and not b.take(0.0)
    assert b.retry_after() == pytest.approx(0.1)
    assert b.take(0.1)


def test_capabilities_most_specific_pattern_wins() -> None:
    """room:* grants, admin:* denies, exact names override prefixes."""
    caps = Capabilities(
        {"room:*": ["subscribe", "publish"], "admin:*": [], "room:secret": ["subscribe"], "*": ["history"]}
    )
    assert caps.can("room:lobby", "publish")
    assert not caps.can("room:secret", "publish")
    assert not caps.can("admin:x", "subscribe")
    assert caps.can("other", "history") and not caps.can("other", "publish")
    assert Capabilities({"*": ["*"]}).can("anything", "cancel")
    with pytest.raises(ValueError):
        Capabilities.validate({"room:*": ["fly"]})


# --- sessions and liveness (core.sessions) ------------------------------------------------------


def test_resume_needs_the_key_and_the_same_client() -> None:
    """A session resumes only with its key and for its own client id."""
    assert may_resume("k1", "ana", "k1", "ana")
    assert not may_resume("k1", "ana", "k2", "ana")
    assert not may_resume("k1", "ana", "k1", "bob")


def test_a_drop_ends_the_session_now_or_starts_its_timers() -> None:
    """Graceful, shutting down or SSE: end now; otherwise presence, streams and expiry timers."""
    times = {"presence_grace": 15.0, "stream_grace": 20.0, "resume_window": 120.0}
    for graceful, shutting_down, resumable in (
        (True, False, True),
        (False, True, True),
        (False, False, False),
    ):
        plan = drop_plan(
            graceful=graceful, shutting_down=shutting_down, resumable=resumable,
            has_presence=True, has_streams=True, **times,
        )  # fmt: skip
        assert plan.end_now
    plan = drop_plan(
        graceful=False, shutting_down=False, resumable=True, has_presence=True, has_streams=False, **times
    )
    assert (plan.end_now, plan.presence_after, plan.streams_after, plan.expire_after) == (
        False,
        15.0,
        None,
        120.0,
    )


def test_attach_start_says_why_continuity_is_lost() -> None:
    """No position: live at the head; a good one continues; epoch, ahead and retention are refused."""
    assert attach_start(None, head=9, first_serial=1, epoch="e").start == 9
    ok = attach_start((4, "e"), head=9, first_serial=1, epoch="e")
    assert (ok.start, ok.resumed, ok.reason) == (4, True, None)
    for position, first, code in (
        ((4, "x"), 1, Code.EPOCH_CHANGED),
        ((12, None), 1, Code.EPOCH_CHANGED),
        ((2, None), 5, Code.HISTORY_LOST),
    ):
        lost = attach_start(position, head=9, first_serial=first, epoch="e")
        assert (lost.start, lost.resumed, lost.reason and lost.reason[0]) == (9, False, code)


def test_liveness_checks_in_order() -> None:
    """Gone transport, expiry, renewal notice (half-way for short tokens), silence, heartbeat."""
    base = {
        "wall": 100.0, "mono": 50.0, "expires_at": 1000.0, "renew_at": 970.0, "transport_closing": False,
        "renew_sent": False, "unidirectional": False, "last_recv": 49.0, "last_send": 49.0, "interval": 15.0,
    }  # fmt: skip
    assert check_connection(**base) is Check.OK
    assert check_connection(**{**base, "transport_closing": True}) is Check.TRANSPORT_GONE
    assert check_connection(**{**base, "wall": 1000.0}) is Check.EXPIRED
    assert check_connection(**{**base, "wall": 975.0}) is Check.RENEW
    assert check_connection(**{**base, "last_recv": 10.0}) is Check.SILENT
    assert check_connection(**{**base, "last_send": 30.0}) is Check.HEARTBEAT
    assert renew_at(0.0, 600.0) == 570.0 and renew_at(0.0, 10.0) == 5.0


# --- reordering commits from several nodes (core.reorder) ----------------------------------------


def _m(serial: int) -> Message:
    return Message("room:r", serial, f"i{serial}", "chat", serial, "ana", "human", serial)


def test_reorder_releases_runs_in_serial_order_and_names_the_hole() -> None:
    """Commits arriving out of order are held until the hole closes; duplicates are dropped."""
    r = Reorder(5)
    assert [m.serial for m in r.offer([_m(6), _m(7)])] == [6, 7]
    assert r.offer([_m(9), _m(10)]) == [] and r.missing == (7, 10) and r.held == 2
    assert [m.serial for m in r.offer([_m(8), _m(7)])] == [8, 9, 10]
    assert r.missing is None and r.held == 0


def test_reorder_tail_known_from_the_store_and_lost_history() -> None:
    """A head reported by the Store opens a hole to read; history gone from it is skipped once."""
    r = Reorder(3)
    r.exists_up_to(6)
    assert r.missing == (3, 6)
    assert [m.serial for m in r.skip_to(4)] == [] and r.missing == (4, 6)
    assert [m.serial for m in r.offer([_m(6), _m(5)])] == [5, 6]
    bounded = Reorder(0, max_held=2)
    bounded.offer([_m(5), _m(6), _m(7)])
    assert bounded.overfull
