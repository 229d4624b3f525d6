"""The SDK's pure group-chat pieces, without sockets: the Message model, the mention rule, applying
events and counting replies, the live `room` frame, error classes."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentchat import (
    LastReply,
    MessageDeleted,
    MessageNotFound,
    Reaction,
    Replies,
    Stamp,
    Timeline,
    TooManyReactions,
    apply_event,
    count_reply,
)
from agentchat.channel_state import ChannelState
from agentchat.errors import request_error
from agentchat.events import ChannelEvent, Live, RoomChanged
from agentchat.models import Message
from agentchat_server.protocol import Code
from agentchat_server.protocol import mentions as server_mentions

ROOM = "room:x"


def msg(serial: int, data: Any = "x", **fields: Any) -> Message:
    """A durable message of ROOM as the server would send it."""
    frame = {"type": "message", "channel": ROOM, "serial": serial, "id": f"m{serial}", "data": data}
    return Message.from_wire({"client_id": "ana", "kind": "human", "ts": serial * 10, **frame, **fields})


def event(serial: int, action: str, target: int, data: Any = None, **fields: Any) -> Message:
    """An event on `target` (its `name` is its action, as on the wire)."""
    return msg(serial, data, action=action, name=action, target=target, **fields)


# --- the Message model ---------------------------------------------------------------------------


def test_message_from_wire_reads_every_group_chat_field() -> None:
    """Thread, event, current-version, reaction, reply-summary, name and cancel fields are parsed."""
    m = msg(
        5,
        None,
        thread=2,
        rev=9,
        edited={"by": "ana", "ts": 1},
        deleted={"by": "mod", "ts": 2},
        reactions={"👍": {"count": 3, "clients": ["bob", "cy"]}, "+1": {"count": 1, "clients": ["bob"]}},
        replies={"count": 4, "last": {"serial": 8, "client_id": "bob", "ts": 3}},
        my_reactions=["👍"],
        display_name="Ana",
        cancelled_by="bob",
        stream_id="s1",
        status="cancelled",
    )
    assert (m.thread, m.rev, m.version, m.is_event) == (2, 9, 9, False)
    assert m.edited == Stamp("ana", 1) and m.deleted == Stamp("mod", 2)
    assert list(m.reactions) == ["👍", "+1"] and m.reactions["👍"] == Reaction(3, ("bob", "cy"))
    assert m.replies is not None and m.replies.count == 4 and m.replies.last is not None
    assert m.replies.last.serial == 8
    assert (m.my_reactions, m.display_name, m.cancelled_by) == (("👍",), "Ana", "bob")
    edit = event(6, "edit", 5, "new")
    assert (edit.is_event, edit.action, edit.target, edit.version) == (True, "edit", 5, 6)


def test_message_from_wire_ignores_fields_of_the_wrong_type() -> None:
    """Junk in optional fields gives their empty values, never an exception."""
    m = msg(1, thread="2", rev=True, edited="x", reactions=["a"], replies=7, my_reactions="👍", to="bob")
    assert (m.thread, m.rev, m.edited, m.reactions, m.replies, m.my_reactions, m.to) == (
        None,
        None,
        None,
        {},
        None,
        (),
        None,
    )


# --- mentions: the server's rule -----------------------------------------------------------------

# A few fixed names make authors mention themselves and names repeat; the regex finds the edges.
names = st.sampled_from(["ana", "bob", "cy.d", "x-1", "u@h"]) | st.from_regex(
    r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,8}", fullmatch=True
)
pieces = st.one_of(
    names.map(lambda n: "@" + n),
    st.sampled_from([" ", "@", "a@", "x@y.z", ".", "@@", "\n", "é", "@.", "@-x", "(", ",@ana"]),
    st.text(max_size=6),
)
texts = st.lists(pieces, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=texts, author=names, in_dict=st.booleans(), to=st.none() | st.lists(names, max_size=5))
def test_mentions_match_the_servers_rule(text: str, author: str, in_dict: bool, to: list[str] | None) -> None:
    """`Message.mentions` names whom the server's mention rule names, for any text, author and `to`."""
    data: Any = {"text": text} if in_dict else text
    m = msg(1, data, client_id=author, **({} if to is None else {"to": to}))
    assert m.mentions == frozenset(server_mentions.mentioned(data, author, to))


def test_mentions_exclude_the_author_let_to_win_and_are_capped() -> None:
    """The author never names itself, `to` replaces the text's names, at most 50 are named;
    an edit names whom its new text names, a reaction or delete names nobody."""
    assert msg(1, "@ana @bob ana@example.com @cy.", client_id="ana").mentions == {"bob", "cy"}
    assert msg(1, "@bob", to=["dan", "ana"], client_id="ana").mentions == {"dan"}
    crowd = " ".join(f"@u{i}" for i in range(60))
    assert len(msg(1, crowd).mentions) == 50
    assert event(2, "edit", 1, "now @bob").mentions == {"bob"}
    assert event(3, "delete", 1).mentions == frozenset()


# --- applying events and counting replies --------------------------------------------------------


def test_an_edit_replaces_data_and_a_delete_leaves_a_tombstone() -> None:
    """Edits replace data and stamp `edited`; a delete drops content, reactions and the edit stamp."""
    held = msg(
        1, "helo", meta={"k": 1}, reactions={"a": {"count": 1, "clients": ["bob"]}}, my_reactions=["a"]
    )
    edited = apply_event(held, event(2, "edit", 1, "hello", client_id="ana"))
    assert (edited.data, edited.edited, edited.rev) == ("hello", Stamp("ana", 20), 2)
    gone = apply_event(edited, event(3, "delete", 1, client_id="mod"))
    assert (gone.data, gone.meta, gone.reactions, gone.my_reactions, gone.edited) == (
        None,
        None,
        {},
        (),
        None,
    )
    assert gone.deleted == Stamp("mod", 30) and gone.rev == 3 and gone.client_id == "ana"


def test_events_apply_only_when_newer_than_the_held_version() -> None:
    """An event at or below `rev` (or the serial) is in the copy already; other targets are ignored."""
    loaded = msg(1, "v3", rev=5)
    assert apply_event(loaded, event(4, "edit", 1, "v2")) is loaded
    assert apply_event(loaded, event(5, "edit", 1, "v3")) is loaded
    assert apply_event(loaded, event(6, "edit", 2, "other")) is loaded
    assert apply_event(loaded, msg(7, "not an event")) is loaded
    assert apply_event(loaded, event(8, "edit", 1, "v4")).data == "v4"


def test_reaction_events_replace_the_aggregate_and_track_mine() -> None:
    """A reaction event carries the whole aggregate; your own events update `my_reactions`."""
    held = msg(1)
    aggregate = {"👍": {"count": 2, "clients": ["bob", "cy"]}}
    added = apply_event(held, event(2, "react", 1, "👍", client_id="bob", reactions=aggregate), me="bob")
    assert added.reactions == {"👍": Reaction(2, ("bob", "cy"))} and added.my_reactions == ("👍",)
    theirs = apply_event(added, event(3, "react", 1, "+1", client_id="cy", reactions=aggregate), me="bob")
    assert theirs.my_reactions == ("👍",)
    taken = apply_event(theirs, event(4, "unreact", 1, "👍", client_id="bob", reactions={}), me="bob")
    assert taken.reactions == {} and taken.my_reactions == () and taken.rev == 4


def test_replies_count_onto_their_root_once() -> None:
    """A reply above the summary's last serial counts once; events and other threads do not."""
    root = msg(1)
    one = count_reply(root, msg(2, thread=1, client_id="bob"))
    assert one.replies is not None and one.replies.count == 1 and one.replies.last is not None
    assert (one.replies.last.serial, one.replies.last.client_id) == (2, "bob")
    assert count_reply(one, msg(2, thread=1)) is one
    assert count_reply(one, event(3, "edit", 2, "x", thread=1)) is one
    assert count_reply(one, msg(4, thread=9)) is one
    loaded = msg(1, replies={"count": 5, "last": {"serial": 10, "client_id": "cy", "ts": 0}})
    assert count_reply(loaded, msg(9, thread=1)) is loaded
    deleted_reply = msg(11, None, thread=1, deleted={"by": "x", "ts": 0})
    assert count_reply(loaded, deleted_reply).replies == Replies(6, LastReply(11, "ana", 110))


def test_a_timeline_keeps_held_messages_current() -> None:
    """Events change held targets, replies update held roots, a reload keeps the longer thread."""
    timeline = Timeline(ROOM, me="bob")
    assert [m.serial for m in timeline.extend([msg(3), msg(1)])] == [3, 1]
    assert timeline.add(event(2, "edit", 99, "not held")) == []
    (edited,) = timeline.add(event(4, "edit", 1, "new"))
    assert edited.data == "new" and timeline.get(1) == edited
    reply, root = timeline.add(msg(5, "r", thread=1))
    assert reply.serial == 5 and root.replies is not None and root.replies.count == 1
    assert timeline.add(event(4, "edit", 1, "new")) == []
    stale_reload = msg(1, "new", rev=4)
    assert timeline.add(stale_reload) == [] and timeline.get(1) == root
    assert [m.serial for m in timeline] == [1, 3, 5]
    assert [m.serial for m in timeline.main()] == [1, 3] and [m.serial for m in timeline.thread(1)] == [5]
    assert 4 not in timeline and len(timeline) == 3


def test_a_timeline_is_bounded() -> None:
    """Past `max_held` messages the oldest serials are forgotten."""
    timeline = Timeline(ROOM, max_held=2)
    timeline.extend([msg(1), msg(2), msg(3)])
    assert [m.serial for m in timeline] == [2, 3]
    assert timeline.add(msg(0)) == []


# --- the live room frame, error classes ----------------------------------------------------------


def test_a_room_frame_becomes_a_room_changed_event_and_a_live_frame() -> None:
    """The core tells a live `room` frame as RoomChanged (with its metadata) and as a Live frame."""
    events: list[ChannelEvent] = []
    channel = ChannelState(ROOM, events.append)
    channel.want()
    frame = {
        "type": "room",
        "channel": ROOM,
        "title": "X",
        "topic": "t",
        "updated_by": "ana",
        "updated_ts": 5,
    }
    channel.receive(frame)
    changed, live = events
    assert isinstance(changed, RoomChanged) and isinstance(live, Live)
    assert (changed.room.channel, changed.room.title, changed.room.topic, changed.room.updated_by) == (
        ROOM,
        "X",
        "t",
        "ana",
    )
    assert live.event.type == "room"


def test_group_chat_codes_have_their_error_classes() -> None:
    """40402, 40904 and 42904 refusals raise MessageNotFound (with the serial), MessageDeleted and
    TooManyReactions."""
    missing = request_error({"type": "nack", "code": Code.MESSAGE_NOT_FOUND, "message": "m", "serial": 9})
    assert isinstance(missing, MessageNotFound) and missing.serial == 9
    assert isinstance(request_error({"code": Code.MESSAGE_DELETED, "message": "m"}), MessageDeleted)
    assert isinstance(request_error({"code": Code.TOO_MANY_REACTIONS, "message": "m"}), TooManyReactions)
