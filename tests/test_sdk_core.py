"""The SDK's sans-I/O core (agentchat.state), driven synchronously: frames in, events and frames out."""

from __future__ import annotations

from typing import Any, TypeVar

import pytest

from agentchat.errors import (
    ConflictError,
    ConnectionClosed,
    LinkGone,
    StreamLost,
    TooManyPending,
)
from agentchat.events import (
    Attached,
    Delivered,
    Ended,
    Event,
    Failed,
    Lost,
    PresenceChanged,
    Ready,
    RenewToken,
    Replied,
    Stopped,
    StreamChanged,
    WriterAcked,
    WriterCancelled,
    WriterFailed,
)
from agentchat.state import ClientState

E = TypeVar("E")
ROOM = "room:x"


class Harness:
    """A core with its event and frame sinks as lists, and helpers to play the server."""

    def __init__(self, **options: Any) -> None:
        self.events: list[Event] = []
        self.sent: list[dict[str, Any]] = []
        self.core = ClientState(self.events.append, **options)
        self.sessions = 0

    def link(self, *, resumed: bool = False, client_id: str = "ana") -> bool:
        self.sessions += 1
        connected = {
            "type": "connected",
            "session_id": f"s{self.sessions}",
            "key": "k",
            "client_id": client_id,
            "kind": "agent",
            "resumed": resumed,
            "limits": {"max_frame_bytes": 1000},
        }
        return self.core.link_up(connected, self.sent.append)

    def drop(self, code: int | None = None) -> str:
        self.core.link_lost()
        return self.core.after_close(code, "test")

    def frames(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f["type"] == kind]

    def of(self, cls: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, cls)]

    def attached(self, serial: int, *, resumed: bool = True, ref: bool = True, **extra: Any) -> None:
        frame: dict[str, Any] = {
            "type": "attached",
            "channel": ROOM,
            "position": {"serial": serial, "epoch": "e1"},
            "resumed": resumed,
            **extra,
        }
        if ref:
            frame["ref"] = self.frames("attach")[-1]["ref"]
        self.core.receive(frame)

    def message(self, serial: int | None, **fields: Any) -> None:
        frame = {
            "type": "message",
            "channel": ROOM,
            "serial": serial,
            "id": f"m{serial}",
            "data": "x",
            **fields,
        }
        self.core.receive(frame)

    def delivered(self) -> list[int | None]:
        return [e.message.serial for e in self.of(Delivered)]


def attached_harness(position: int = 5) -> Harness:
    """Connected, with ROOM attached at `position`."""
    harness = Harness()
    harness.link()
    harness.core.want(ROOM)
    harness.attached(position)
    return harness


def test_link_up_restores_attachments_presence_then_retained_requests_in_order() -> None:
    """After a reconnect: attach (from the position), presence entry, then unanswered requests; Ready
    only once every attach is answered."""
    harness = attached_harness(5)
    harness.core.set_presence(ROOM, {"status": "idle"})
    harness.message(6)
    ref = harness.core.request({"type": "publish", "channel": ROOM, "messages": [{"data": 1, "id": "p1"}]})
    assert harness.drop() == "resume"
    made_while_down = harness.core.request({"type": "publish", "channel": ROOM}, retain=True)
    harness.sent.clear()
    harness.events.clear()
    assert harness.link(resumed=True)
    assert [f["type"] for f in harness.sent] == ["attach", "presence", "publish", "publish"]
    assert harness.sent[0]["position"] == {"serial": 6, "epoch": "e1"}
    assert harness.sent[1] == {**harness.sent[1], "action": "enter", "data": {"status": "idle"}}
    assert [f["ref"] for f in harness.sent[2:]] == [ref, made_while_down]
    assert harness.of(Ready) == [] and not harness.core.ready
    harness.attached(6)
    assert harness.of(Ready) == [Ready(resumed=True)] and harness.core.ready


def test_requests_that_are_not_retained_fail_when_the_link_ends() -> None:
    """An unretained request fails with LinkGone on a drop; a retained one is resent and knows it."""
    harness = attached_harness()
    lost = harness.core.request({"type": "auth", "token": "t"}, retain=False)
    kept = harness.core.request({"type": "stream_open", "channel": ROOM, "id": "a1"})
    harness.drop()
    assert [(e.ref, type(e.error)) for e in harness.of(Failed)] == [(lost, LinkGone)]
    with pytest.raises(LinkGone):
        harness.core.request({"type": "ping"}, retain=False)
    harness.link(resumed=True)
    assert [f["ref"] for f in harness.frames("stream_open")] == [kept, kept]
    harness.core.receive({"type": "nack", "ref": kept, "code": 40902, "message": "exists", "stream_id": "s1"})
    (failed,) = [e for e in harness.of(Failed) if e.ref == kept]
    assert getattr(failed.error, "resent", False) is True


def test_replies_and_refusals_reach_the_caller_by_ref() -> None:
    """An ack becomes Replied, a nack the most specific RequestError, each for its ref."""
    harness = attached_harness()
    first = harness.core.request({"type": "publish", "channel": ROOM, "messages": [{"data": 1}]})
    second = harness.core.request({"type": "publish", "channel": ROOM, "if_serial": 1})
    harness.core.receive({"type": "nack", "ref": second, "code": 40900, "message": "moved", "last_serial": 9})
    harness.core.receive({"type": "ack", "ref": first, "serials": [7]})
    assert [e.ref for e in harness.of(Replied)] == [first]
    (refused,) = harness.of(Failed)
    assert isinstance(refused.error, ConflictError) and refused.error.last_serial == 9


def test_close_codes_follow_the_protocol_table() -> None:
    """`resume` keeps going; `renew` without a token provider and `stop` end everything."""
    assert attached_harness().drop(1001) == "resume"
    assert Harness(can_renew=True).drop(4003) == "renew"
    harness = attached_harness()
    waiting = harness.core.request({"type": "history", "channel": ROOM})
    assert harness.drop(4003) == "stop"
    (stopped,) = harness.of(Stopped)
    assert stopped.error.code == 4003
    assert [(e.ref, e.error) for e in harness.of(Failed)] == [(waiting, stopped.error)]
    assert [e.error for e in harness.of(Ended)] == [stopped.error]
    with pytest.raises(ConnectionClosed):
        harness.core.request({"type": "ping"})


def test_pending_requests_are_bounded() -> None:
    """Past `max_pending` waiting requests a new one raises TooManyPending; answered ones free slots."""
    harness = Harness(max_pending=2)
    harness.core.request({"type": "history", "channel": ROOM})
    harness.core.request({"type": "history", "channel": ROOM})
    with pytest.raises(TooManyPending):
        harness.core.request({"type": "history", "channel": ROOM})
    harness.link()
    harness.core.receive({"type": "ack", "ref": harness.sent[0]["ref"], "messages": []})
    harness.core.request({"type": "history", "channel": ROOM})


def test_a_token_for_someone_else_stops_the_client() -> None:
    """With an expected client_id, a `connected` for another one stops the client."""
    harness = Harness(client_id="bob")
    assert not harness.link(client_id="ana")
    assert "not 'bob'" in harness.of(Stopped)[0].error.reason


def test_auth_renew_asks_for_a_token() -> None:
    """`auth_renew` becomes RenewToken with the expiry."""
    harness = attached_harness()
    harness.core.receive({"type": "auth_renew", "expires_at": 99})
    assert harness.of(RenewToken) == [RenewToken(99)]


def test_a_gap_is_never_skipped_the_channel_attaches_again_and_holds() -> None:
    """A jump in serials sends an attach from the position; newer serials wait for its replay."""
    harness = attached_harness(5)
    harness.message(6)
    harness.message(9)
    harness.message(10)
    (repair,) = harness.frames("attach")[1:]
    assert repair["position"]["serial"] == 6 and harness.delivered() == [6]
    harness.attached(10)
    for serial in (7, 8, 9, 10, 11):
        harness.message(serial)
    assert harness.delivered() == [6, 7, 8, 9, 10, 11]


def test_lost_continuity_moves_the_position_and_says_so() -> None:
    """`attached` with resumed false (unsolicited during a replay too) moves the position, once told."""
    harness = attached_harness(5)
    harness.message(6)
    reason = {"code": 80002, "message": "history after the position is gone"}
    harness.attached(20, resumed=False, ref=False, reason=reason)
    harness.message(20)
    harness.message(21)
    (lost,) = harness.of(Lost)
    assert lost.error.code == 80002 and lost.error.position.serial == 20
    assert harness.delivered() == [6, 21]


def test_presence_sync_replaces_the_set_and_diffs_change_it() -> None:
    """The first sync page after an attach replaces the members; diffs add, update and remove."""
    harness = attached_harness()
    channel = harness.core.channel(ROOM)

    def member(client_id: str, status: str = "idle") -> dict[str, Any]:
        return {"client_id": client_id, "connection_id": f"c-{client_id}", "kind": "agent", "data": status}

    harness.core.receive({"type": "presence_sync", "channel": ROOM, "members": [member("a")], "last": False})
    harness.core.receive({"type": "presence_sync", "channel": ROOM, "members": [member("b")], "last": True})
    harness.core.receive(
        {"type": "presence", "channel": ROOM, "action": "update", "member": member("b", "busy")}
    )
    harness.core.receive({"type": "presence", "channel": ROOM, "action": "leave", "member": member("a")})
    assert [(m.client_id, m.data) for m in channel.members.values()] == [("b", "busy")]
    harness.attached(5)
    harness.core.receive({"type": "presence_sync", "channel": ROOM, "members": [member("c")], "last": True})
    assert [m.client_id for m in channel.members.values()] == ["c"]
    assert len(harness.of(PresenceChanged)) == 5


def test_streams_are_assembled_in_index_order_and_the_final_message_wins() -> None:
    """Snapshot, then chunks in order (resends ignored, early ones wait), then the durable message."""
    harness = attached_harness(5)
    opened = {"channel": ROOM, "stream_id": "s1", "client_id": "bot", "kind": "agent", "format": "text"}
    harness.core.receive({"type": "stream_snapshot", **opened, "content": "Hel", "next": 2})
    harness.core.receive({"type": "stream_chunk", "channel": ROOM, "stream_id": "s1", "i": 3, "d": "!"})
    harness.core.receive({"type": "stream_chunk", "channel": ROOM, "stream_id": "s1", "i": 1, "d": "l"})
    harness.core.receive({"type": "stream_chunk", "channel": ROOM, "stream_id": "s1", "i": 2, "d": "lo"})
    updates = [e.update for e in harness.of(StreamChanged)]
    assert [(u.content, u.next, u.status) for u in updates] == [("Hel", 2, "open"), ("Hello!", 4, "open")]
    harness.message(6, stream_id="s1", status="complete", data="Hello, world!")
    final = harness.of(StreamChanged)[-1].update
    assert (final.content, final.status, final.done) == ("Hello, world!", "complete", True)
    assert final.message is not None and final.message.serial == 6
    assert harness.core.channel(ROOM).streams == {}


def test_a_stream_that_ended_unseen_is_lost_after_a_new_attach() -> None:
    """A stream neither refreshed by the new attach's snapshots nor ended is reported lost."""
    harness = attached_harness(5)
    opened = {"channel": ROOM, "client_id": "bot", "kind": "agent", "format": "text"}
    harness.core.receive({"type": "stream_open", **opened, "stream_id": "gone"})
    harness.core.receive({"type": "stream_open", **opened, "stream_id": "alive"})
    harness.attached(9, resumed=False, reason={"code": 80003, "message": "epoch changed"})
    harness.core.receive(
        {"type": "stream_snapshot", **opened, "stream_id": "alive", "content": "ab", "next": 1}
    )
    harness.core.receive({"type": "presence_sync", "channel": ROOM, "members": [], "last": True})
    last = {e.update.stream_id: e.update.status for e in harness.of(StreamChanged)}
    assert last == {"gone": "lost", "alive": "open"}


def test_written_chunks_are_confirmed_resent_and_ended_by_the_core() -> None:
    """Chunks are acked in order, resent from `next` on 40903, survive a resumed link, and a cancel
    or a lost session ends the writer."""
    harness = attached_harness()
    writer = harness.core.open_writer(ROOM, "s1")
    harness.core.append("s1", ["a", "b", "c"])
    first, second, third = harness.frames("stream_append")
    harness.core.receive({"type": "ack", "ref": first["ref"]})
    harness.core.receive({"type": "nack", "ref": second["ref"], "code": 40903, "message": "order", "next": 1})
    assert [f["i"] for f in harness.frames("stream_append")[3:]] == [1, 2]
    assert writer.acked == 1 and len(harness.of(WriterAcked)) == 1
    harness.drop()
    harness.sent.clear()
    harness.link(resumed=True)
    assert sorted(f["i"] for f in harness.frames("stream_append")) == [1, 2, 2]
    for frame in harness.frames("stream_append"):
        harness.core.receive({"type": "ack", "ref": frame["ref"]})
    assert writer.acked == 3 and third["i"] == 2
    harness.core.receive({"type": "stream_cancelled", "channel": ROOM, "stream_id": "s1", "by": "ana"})
    assert harness.of(WriterCancelled) == [WriterCancelled(ROOM, "s1", "ana")]
    other = harness.core.open_writer(ROOM, "s2")
    harness.drop()
    harness.link(resumed=False)
    (failed,) = harness.of(WriterFailed)
    assert failed.stream_id == "s2" and isinstance(failed.error, StreamLost) and other.over


def test_refused_attach_ends_views_and_a_new_want_retries() -> None:
    """A refused attach is not retried by itself; wanting the channel again sends a new attach."""
    harness = Harness()
    harness.link()
    harness.core.want(ROOM)
    ref = harness.frames("attach")[-1]["ref"]
    harness.core.receive({"type": "nack", "ref": ref, "code": 40300, "message": "forbidden"})
    channel = harness.core.channel(ROOM)
    assert not channel.wanted and channel.error is not None and channel.error.code == 40300
    assert [e.error for e in harness.of(Ended)] == [channel.error]
    harness.core.want(ROOM)
    assert len(harness.frames("attach")) == 2 and channel.error is None
    harness.attached(3)
    assert harness.of(Attached)[-1].position.serial == 3 and channel.attached


def test_detaching_while_the_attach_is_on_its_way_detaches_on_the_server_too() -> None:
    """An attach answered after the channel was forgotten is undone with a detach."""
    harness = Harness()
    harness.link()
    harness.core.want(ROOM)
    assert harness.core.forget(ROOM) is False
    harness.attached(4)
    assert [f["type"] for f in harness.sent] == ["attach", "detach"]
    assert not harness.core.channel(ROOM).attached


def test_answer_ledger_answers_once_and_retries_aborted_answers() -> None:
    """A trigger is answered once; an aborted answer asks for another attempt, after a running one."""
    from agentchat.ledger import AnswerLedger
    from agentchat.models import Message

    def answer(serial: int, to: int, status: str | None) -> Message:
        return Message(
            ROOM, serial, f"a{serial}", "message", "x", "bot", "agent", 0, reply_to=to, status=status
        )

    ledger = AnswerLedger("bot", max_attempts=2)
    key = (ROOM, 7)
    assert ledger.next_attempt(key) == 0
    ledger.start(key)
    assert ledger.next_attempt(key) is None
    assert ledger.wants_retry(answer(8, 7, "aborted")) is None
    ledger.note(answer(8, 7, "aborted"))
    assert ledger.finish(key) is True and ledger.next_attempt(key) == 1
    ledger.note(answer(9, 7, "aborted"))
    assert ledger.next_attempt(key) is None and ledger.wants_retry(answer(9, 7, "aborted")) == key
    ledger.note(answer(10, 7, "complete"))
    assert ledger.answered(key) and ledger.wants_retry(answer(11, 7, "aborted")) is None
