"""Keeping held messages current: apply events (edit, delete, reactions) and count thread replies; no I/O.

Rules (docs/protocol.md, "Group chat"):
- An event changes the message at its `target`. A held message takes it only when the event's serial
  is above the message's `version` (its `rev`, else its serial); otherwise the copy includes it
  already (history and resumes give messages in their current version).
- Events carry the complete new state of what they change, so applying is replacing: an edit
  replaces `data` and stamps `edited`; a delete leaves a tombstone (no data, meta, reactions or
  edit stamp; `deleted` says who); a reaction event replaces the `reactions` aggregate. Your own
  reaction events (from any of your devices) update `my_reactions`.
- A thread reply counts onto its root when its serial is above the root's `replies.last.serial`;
  deleted replies still count. Events carry their target's `thread` but are not replies.
- A reader that does not hold an event's target ignores the event: it gets the current version
  when it loads that message.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from dataclasses import replace

from agentchat.chatmodels import LastReply, Replies, Stamp
from agentchat.models import Message

MAX_HELD = 10_000  # overflow policy: past this many messages a Timeline forgets the oldest serials


def apply_event(held: Message, event: Message, *, me: str | None = None) -> Message:
    """`held` with `event` applied, or `held` itself when the event is not for it or not newer.

    `me` (your client id) lets your own reaction events update `my_reactions`.
    """
    version = held.version
    if (
        event.action is None
        or event.serial is None
        or event.target != held.serial
        or event.channel != held.channel
        or version is None
        or event.serial <= version
    ):
        return held
    stamp = Stamp(event.client_id, event.ts)
    if event.action == "edit":
        return replace(held, data=event.data, edited=stamp, rev=event.serial)
    if event.action == "delete":
        return replace(
            held,
            data=None,
            meta=None,
            reactions={},
            my_reactions=(),
            edited=None,
            deleted=stamp,
            rev=event.serial,
        )
    if event.action in ("react", "unreact"):
        mine = held.my_reactions
        if me is not None and event.client_id == me and isinstance(event.data, str):
            without = tuple(r for r in mine if r != event.data)
            mine = (*without, event.data) if event.action == "react" else without
        return replace(held, reactions=dict(event.reactions), my_reactions=mine, rev=event.serial)
    return held


def count_reply(root: Message, reply: Message) -> Message:
    """`root` with `reply` counted into its thread summary, or `root` itself when the reply is not one
    of its thread's or is counted already."""
    if (
        reply.action is not None
        or reply.serial is None
        or reply.thread != root.serial
        or reply.channel != root.channel
    ):
        return root
    summary = root.replies
    if summary is not None and summary.last is not None and reply.serial <= summary.last.serial:
        return root
    count = summary.count + 1 if summary is not None else 1
    return replace(root, replies=Replies(count, LastReply(reply.serial, reply.client_id, reply.ts)))


class Timeline:
    """The messages of one channel you hold, by serial, kept current as messages and events arrive.

    `add` each message in any order (history pages, then live ones): events update the message they
    target, replies update their root's summary, other messages are held. At most `max_held`
    messages are kept; the oldest serials are forgotten first. Not thread-safe; no I/O.
    """

    def __init__(self, channel: str, *, me: str | None = None, max_held: int = MAX_HELD) -> None:
        self.channel = channel
        self.me = me
        self.max_held = max_held
        self._held: dict[int, Message] = {}
        self._serials: list[int] = []

    def add(self, message: Message) -> list[Message]:
        """Take one durable message of the channel; return the held messages it added or changed.

        An event is not held: it changes its target if held (and newer). A message already held is
        replaced only by a copy of a newer version (a history reload after changes).
        """
        if message.serial is None or message.channel != self.channel:
            return []
        if message.action is not None:
            target = self._held.get(message.target) if message.target is not None else None
            if target is None:
                return []
            changed = apply_event(target, message, me=self.me)
            return self._put(changed) if changed is not target else []
        touched: list[Message] = []
        known = self._held.get(message.serial)
        merged = message if known is None else _merge(known, message)
        if merged is not known:
            touched += self._put(merged)
        root = self._held.get(message.thread) if message.thread is not None else None
        if root is not None:
            counted = count_reply(root, message)
            if counted is not root:
                touched += self._put(counted)
        return touched

    def extend(self, messages: Iterable[Message]) -> list[Message]:
        """`add` each message; return every held message added or changed."""
        touched: list[Message] = []
        for message in messages:
            touched += self.add(message)
        return touched

    def get(self, serial: int) -> Message | None:
        """The held message at `serial` in its current version, or None."""
        return self._held.get(serial)

    def __contains__(self, serial: object) -> bool:
        return serial in self._held

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[Message]:
        """Held messages, oldest serial first."""
        return (self._held[s] for s in list(self._serials))

    def main(self) -> list[Message]:
        """The held top-level messages (no thread replies), oldest first: what a timeline shows."""
        return [m for m in self if m.thread is None]

    def thread(self, root: int) -> list[Message]:
        """The held replies of the thread on `root`, oldest first."""
        return [m for m in self if m.thread == root]

    def _put(self, message: Message) -> list[Message]:
        assert message.serial is not None
        if message.serial not in self._held:
            bisect.insort(self._serials, message.serial)
        self._held[message.serial] = message
        while len(self._serials) > self.max_held:
            del self._held[self._serials.pop(0)]
        return [message] if message.serial in self._held else []


def _merge(known: Message, fresh: Message) -> Message:
    """The newer of two copies of one message; `known` itself when `fresh` adds nothing."""
    # Replies do not move a root's `rev`: keep whichever copy counted the longer thread.
    base, other = (fresh, known) if (fresh.version or 0) > (known.version or 0) else (known, fresh)
    if _last_reply(other) > _last_reply(base):
        base = replace(base, replies=other.replies)
    return base


def _last_reply(message: Message) -> int:
    replies = message.replies
    return replies.last.serial if replies is not None and replies.last is not None else 0
