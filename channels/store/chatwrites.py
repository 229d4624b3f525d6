"""The chat part of a group-commit transaction: events applied to their targets, thread summaries,
reactions, mention rows, read marks and room metadata.

Runs inside `store.batch.Batch` on its synchronous connection; the channel rows are locked first
(PostgreSQL) or the writer holds SQLite's lock, so reading a target and writing it back cannot
race another node. The rules are `core.chat`'s; this module only reads and writes rows.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import and_, bindparam, delete, func, insert, select, update
from sqlalchemy.engine import Connection

from agentchat_server.core.chat import (
    Duplicate,
    Target,
    apply_delete,
    apply_edit,
    apply_reactions,
    apply_reply,
    check_reaction_room,
    check_root,
    judge,
)
from agentchat_server.core.records import NewMessage
from agentchat_server.core.refusal import Refusal
from agentchat_server.protocol import Code
from agentchat_server.store import MarkRead, PutRoom, ReadMark, Room
from agentchat_server.store.schema import (
    channels_table,
    mentions_table,
    messages_table,
    reactions_table,
    read_marks_table,
)

_m, _r, _c = messages_table.c, reactions_table.c, channels_table.c
_TARGET = select(_m.serial, _m.client_id, _m.action, _m.thread, _m.extra, _m.data, _m.meta).where(
    _m.channel == bindparam("channel"), _m.serial == bindparam("serial")
)
_WRITE_BACK = (
    update(messages_table)
    .where(_m.channel == bindparam("c"), _m.serial == bindparam("s"))
    .values(data=bindparam("d"), meta=bindparam("mt"), extra=bindparam("e"))
)


class Unchanged:
    """A reaction that was already so: nothing to store."""


UNCHANGED = Unchanged()
Check = Refusal | Duplicate | Unchanged | None


class ChatWrites:
    """The chat writes of one transaction; `flush` writes back what changed, once."""

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.targets: dict[tuple[str, int], Target | None] = {}
        # Messages stored by this transaction, made into targets only if something targets them.
        self.fresh: dict[tuple[str, int], NewMessage] = {}
        self.mention_rows: list[dict[str, Any]] = []

    def target(self, channel: str, serial: int) -> Target | None:
        """The stored message at `serial`, read once per transaction and kept current."""
        key = (channel, serial)
        if key not in self.targets and key in self.fresh:
            m = self.fresh.pop(key)
            action = None if m.event is None else m.event.action
            self.targets[key] = Target(
                serial, m.client_id, action, m.thread, dict(m.extra or {}), m.data_json, m.meta_json
            )
        elif key not in self.targets:
            row = self.conn.execute(_TARGET, {"channel": channel, "serial": serial}).first()
            self.targets[key] = (
                None
                if row is None
                else Target(
                    row.serial,
                    row.client_id,
                    row.action,
                    row.thread,
                    {} if row.extra is None else json.loads(row.extra),
                    row.data,
                    row.meta,
                )
            )
        return self.targets[key]

    def check(self, channel: str, message: NewMessage) -> Check:
        """Whether a fresh message may be stored: a refusal, a duplicate answer, no change, or go."""
        event = message.event
        if event is None:
            if message.thread is None or message.stream_id is not None:
                # A stream's end is always stored: its root was checked when the stream opened.
                return None
            return check_root(message.thread, self.target(channel, message.thread))
        target = self.target(channel, event.target)
        verdict = judge(event, target, message.client_id)
        if verdict is not None or event.action not in ("react", "unreact"):
            return verdict
        assert target is not None
        reaction = str(message.data)
        has = self._has(channel, event.target, reaction, message.client_id)
        if has == (event.action == "react"):
            return UNCHANGED
        if event.action == "unreact":
            return None
        mine = self.conn.execute(
            select(func.count()).where(
                _r.channel == channel, _r.serial == event.target, _r.client_id == message.client_id
            )
        ).scalar_one()
        reactors = 0
        if not mine:
            reactors = self.conn.execute(
                select(func.count(func.distinct(_r.client_id))).where(
                    _r.channel == channel, _r.serial == event.target
                )
            ).scalar_one()
        return check_reaction_room(event, target, reaction, not mine, reactors)

    def _has(self, channel: str, serial: int, reaction: str, client_id: str) -> bool:
        found = self.conn.execute(
            select(_r.ts).where(
                _r.channel == channel, _r.serial == serial, _r.reaction == reaction, _r.client_id == client_id
            )
        ).first()
        return found is not None

    def apply(self, channel: str, serial: int, message: NewMessage) -> tuple[int | None, dict[str, Any]]:
        """Carry out a checked message stored at `serial`: returns the thread its row gets, and
        server fields to add to its row (an event's new reaction aggregate)."""
        event = message.event
        # Later operations of this transaction may target it: its row is not written yet.
        self.fresh[(channel, serial)] = message
        if event is None:
            if message.mentions:
                self.mention_rows.extend(
                    {"channel": channel, "serial": serial, "client_id": who} for who in message.mentions
                )
            if message.thread is not None:
                root = self.target(channel, message.thread)
                if root is not None and root.action is None:
                    apply_reply(root, serial, message.client_id, message.ts)
            return message.thread, {}
        target = self.target(channel, event.target)
        assert target is not None
        added: dict[str, Any] = {}
        if event.action == "edit":
            apply_edit(target, message.data_json, message.client_id, message.ts, serial)
            if "to" not in target.extra:  # an addressed message names its addressees, whatever its text
                self._mentions_of(channel, event.target, message.mentions)
        elif event.action == "delete":
            apply_delete(target, message.client_id, message.ts, serial)
            self._mentions_of(channel, event.target, ())
            self.conn.execute(delete(reactions_table).where(_r.channel == channel, _r.serial == event.target))
        else:
            reaction = str(message.data)
            where = and_(_r.channel == channel, _r.serial == event.target, _r.reaction == reaction)
            if event.action == "react":
                row = {
                    "channel": channel,
                    "serial": event.target,
                    "reaction": reaction,
                    "client_id": message.client_id,
                    "ts": message.ts,
                }
                self.conn.execute(insert(reactions_table), row)
            else:
                self.conn.execute(delete(reactions_table).where(where, _r.client_id == message.client_id))
            count = self.conn.execute(select(func.count()).where(where)).scalar_one()
            listed = self.conn.execute(
                select(_r.client_id).where(where).order_by(_r.ts, _r.client_id).limit(event.listed)
            )
            clients = [row[0] for row in listed]
            added["reactions"] = apply_reactions(target, reaction, count, clients, serial)
        return target.thread, added

    def _mentions_of(self, channel: str, serial: int, names: tuple[str, ...]) -> None:
        m = mentions_table.c
        self.conn.execute(delete(mentions_table).where(m.channel == channel, m.serial == serial))
        if names:
            rows = [{"channel": channel, "serial": serial, "client_id": who} for who in names]
            self.conn.execute(insert(mentions_table), rows)

    def flush(self) -> None:
        """Write back the targets that changed and the mention rows of new messages."""
        changed = [t for (_c, _s), t in self.targets.items() if t is not None and t.dirty]
        if changed:
            rows = [
                {
                    "c": channel,
                    "s": t.serial,
                    "d": t.data_json,
                    "mt": t.meta_json,
                    "e": json.dumps(t.extra, ensure_ascii=False, separators=(",", ":")) if t.extra else None,
                }
                for (channel, _s), t in self.targets.items()
                if t is not None and t.dirty
            ]
            self.conn.execute(_WRITE_BACK, rows)
        if self.mention_rows:
            self.conn.execute(insert(mentions_table), self.mention_rows)

    # --- read marks and room metadata ------------------------------------------------------

    def mark_read(self, op: MarkRead, known_last: int | None) -> ReadMark:
        """Move a read mark forward; a lower serial leaves it where it is. `known_last`: the
        channel's last serial if this transaction has moved it already."""
        last = known_last
        if last is None:
            last = self.conn.execute(select(_c.last_serial).where(_c.name == op.channel)).scalar()
        if op.serial > (last or 0):
            why = Refusal(
                Code.INVALID_VALUE, "serial is beyond the channel's last message", {"last_serial": last or 0}
            )
            return ReadMark(0, False, why)
        k = read_marks_table.c
        key = and_(k.channel == op.channel, k.client_id == op.client_id)
        stored = self.conn.execute(select(k.serial).where(key)).scalar()
        if stored is None:
            row = {"channel": op.channel, "client_id": op.client_id, "serial": op.serial, "ts": op.ts}
            self.conn.execute(insert(read_marks_table), row)
            return ReadMark(op.serial, True)
        if op.serial <= stored:
            return ReadMark(stored, False)
        self.conn.execute(update(read_marks_table).where(key).values(serial=op.serial, ts=op.ts))
        return ReadMark(op.serial, True)

    def put_room(self, op: PutRoom, last_serial: int, last_ts: int | None) -> Room:
        """Set a channel's metadata (its row exists: the batch loaded it). `last_serial` is the
        channel's last serial in this transaction, `last_ts` the time of a message this
        transaction stored there (else read from the Store), so the reply names the room's last
        activity as `room_get` does."""
        row = self.conn.execute(select(_c.title, _c.topic, _c.meta_by).where(_c.name == op.channel)).first()
        assert row is not None
        if last_ts is None and last_serial:
            last_ts = self.conn.execute(
                select(_m.ts).where(_m.channel == op.channel, _m.serial == last_serial)
            ).scalar()
        if op.create and (row.meta_by is not None or last_serial):
            why = Refusal(Code.ALREADY_EXISTS, "the room exists already")
            return Room(op.channel, row.title, row.topic, last_serial, last_ts, row.meta_by, None, why)
        title = op.title if op.title is not None else row.title
        topic = op.topic if op.topic is not None else row.topic
        values = {"title": title or None, "topic": topic or None, "meta_by": op.by, "meta_ts": op.ts}
        self.conn.execute(update(channels_table).where(_c.name == op.channel).values(**values))
        return Room(op.channel, title or None, topic or None, last_serial, last_ts, op.by, op.ts)
