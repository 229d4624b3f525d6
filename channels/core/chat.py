"""Chat events on messages (edit, delete, reactions) and thread replies, as pure decisions.

Rules:
- An event targets the serial of a message of the same channel. The target must exist and be a
  message, not itself an event (`40402`).
- Edit: the author only (same client_id). `moderate` does not let a member edit another's words:
  the message keeps its author's name, so an edit by anyone else is refused (`40300`). Editing an
  edited message is fine (the latest edit wins). A deleted message cannot be edited (`40904`).
- Delete: the author, or a member with `moderate`. The message becomes a tombstone: no data, no
  meta, no reactions; who deleted it and when. Deleting a deleted message stores nothing: the
  answer is the serial of the delete that removed it, as a duplicate.
- React / unreact: any member who may publish. Adding a reaction one has, or removing one one has
  not, changes nothing and stores nothing. A deleted message takes no reactions (`40904`). A
  message holds at most `max_kinds` distinct reactions and `max_reactors` distinct members
  reacting (`42904`). Reactions are short names (`[a-z0-9_+-]{1,32}`) or one emoji.
- Every event is a durable message with a serial of its own. The target's current state carries
  `rev`, the serial of the last event applied to it; a reader applies an event to a message it
  holds only when the event's serial is above that message's `rev` (or its serial).
- Thread replies: `thread` is the serial of a root message, which exists, is a message and is not
  itself a reply (`40004`, with the root's own `thread`). Each reply updates the root's `replies`
  summary (count and last reply); a reader counts a reply in when its serial is above the
  summary's last one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import emoji

from agentchat_server.core.refusal import Refusal
from agentchat_server.protocol import Code

EVENT_ACTIONS = ("edit", "delete", "react", "unreact")
_SHORT_NAME = re.compile(r"[a-z0-9_+\-]{1,32}")
MAX_REACTION_BYTES = 64


def reaction_problem(reaction: str) -> str | None:
    """Why `reaction` cannot be a reaction, or None: a short name or exactly one emoji."""
    if _SHORT_NAME.fullmatch(reaction):
        return None
    if len(reaction.encode()) <= MAX_REACTION_BYTES and emoji.is_emoji(reaction):
        return None
    return "a reaction is one emoji or a short name of 1-32 characters a-z 0-9 _ + -"


@dataclass(slots=True)
class ChatEvent:
    """What an event message does to its target, with the actor's right to moderate and the
    bounds it must keep (carried by the operation, so the Store needs no settings)."""

    action: str  # one of EVENT_ACTIONS
    target: int
    moderator: bool = False
    max_kinds: int = 20
    max_reactors: int = 500
    listed: int = 10  # client ids listed per reaction in the aggregate


@dataclass(slots=True)
class Target:
    """A stored message as events see it: its author, whether it is an event, and its state."""

    serial: int
    client_id: str
    action: str | None  # set when this row is itself an event
    thread: int | None
    extra: dict[str, Any]  # server-stamped wire fields, state included
    data_json: str
    meta_json: str | None
    dirty: bool = False  # changed in this transaction: write it back

    @property
    def deleted(self) -> bool:
        """True once a delete turned it into a tombstone."""
        return "deleted" in self.extra


@dataclass(slots=True)
class Duplicate:
    """Nothing to store: the answer is an existing event's serial."""

    serial: int


def judge(event: ChatEvent, target: Target | None, actor: str) -> Refusal | Duplicate | None:
    """Whether `actor` may apply `event` to `target`: a refusal, a duplicate answer, or None (go)."""
    if target is None or target.action is not None:
        what = "an event, not a message" if target is not None else "not a message of this channel"
        return Refusal(Code.MESSAGE_NOT_FOUND, f"serial {event.target} is {what}", {"serial": event.target})
    own = target.client_id == actor
    if event.action == "edit":
        if not own:
            return Refusal(Code.FORBIDDEN, "only the author may edit a message")
        if target.deleted:
            return Refusal(Code.MESSAGE_DELETED, "the message was deleted")
        return None
    if event.action == "delete":
        if not own and not event.moderator:
            return Refusal(Code.FORBIDDEN, "deleting another member's message needs moderate")
        if target.deleted:
            return Duplicate(int(target.extra.get("rev", target.serial)))
        return None
    if target.deleted:
        return Refusal(Code.MESSAGE_DELETED, "the message was deleted")
    return None


def check_reaction_room(
    event: ChatEvent, target: Target, reaction: str, new_reactor: bool, reactors: int
) -> Refusal | None:
    """The bounds of one added reaction: distinct reactions and distinct members per message."""
    kinds = target.extra.get("reactions") or {}
    if reaction not in kinds and len(kinds) >= event.max_kinds:
        return Refusal(
            Code.TOO_MANY_REACTIONS, f"a message holds at most {event.max_kinds} distinct reactions"
        )
    if new_reactor and reactors >= event.max_reactors:
        return Refusal(
            Code.TOO_MANY_REACTIONS, f"at most {event.max_reactors} members may react to one message"
        )
    return None


def apply_edit(target: Target, data_json: str, by: str, ts: int, serial: int) -> None:
    """The target now holds the edited data."""
    target.data_json = data_json
    target.extra["edited"] = {"by": by, "ts": ts}
    target.extra["rev"] = serial
    target.dirty = True


def apply_delete(target: Target, by: str, ts: int, serial: int) -> None:
    """The target becomes a tombstone: who and when, no content."""
    target.data_json = "null"
    target.meta_json = None
    for key in ("edited", "reactions"):
        target.extra.pop(key, None)
    target.extra["deleted"] = {"by": by, "ts": ts}
    target.extra["rev"] = serial
    target.dirty = True


def apply_reactions(
    target: Target, reaction: str, count: int, clients: list[str], serial: int
) -> dict[str, Any]:
    """Set one reaction's count and listed clients on the target; returns the new aggregate."""
    kinds: dict[str, Any] = dict(target.extra.get("reactions") or {})
    if count:
        kinds[reaction] = {"count": count, "clients": clients}
    else:
        kinds.pop(reaction, None)
    if kinds:
        target.extra["reactions"] = kinds
    else:
        target.extra.pop("reactions", None)
    target.extra["rev"] = serial
    target.dirty = True
    return kinds


class StoredMessage(Protocol):
    """The fields of a stored message that thread and event checks read."""

    serial: int
    client_id: str
    thread: int | None
    action: str | None
    extra: Mapping[str, Any] | None


def as_target(m: StoredMessage | None) -> Target | None:
    """A stored message as a target of checks (its data is not needed for them)."""
    if m is None:
        return None
    return Target(m.serial, m.client_id, m.action, m.thread, dict(m.extra or {}), "null", None)


def check_root(thread: int, root: Target | None) -> Refusal | None:
    """Whether a reply may join the thread on `root`."""
    if root is None or root.action is not None:
        return Refusal(Code.MESSAGE_NOT_FOUND, f"thread root {thread} is not a message of this channel")
    if root.thread is not None:
        return Refusal(
            Code.INVALID_VALUE,
            f"serial {thread} is a reply in thread {root.thread}: reply there",
            {"thread": root.thread},
        )
    return None


def apply_reply(root: Target, serial: int, client_id: str, ts: int) -> None:
    """Count one more reply in the root's thread summary."""
    replies = root.extra.get("replies") or {}
    root.extra["replies"] = {
        "count": int(replies.get("count", 0)) + 1,
        "last": {"serial": serial, "client_id": client_id, "ts": ts},
    }
    root.dirty = True
