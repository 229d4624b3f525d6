"""One group-commit transaction of the SQL Store: serials, scoped id dedupe, if_serial, the writes,
and the agent-room rules of each write (`store.room_batch`)."""

from __future__ import annotations

import functools
import itertools
import json
import secrets
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ARRAY, String, bindparam, delete, insert, select, text, update
from sqlalchemy.engine import Connection

from agentchat_server.core.chat import Duplicate
from agentchat_server.core.records import Message, NewMessage
from agentchat_server.core.refusal import Refusal
from agentchat_server.protocol import encode_value
from agentchat_server.store import (
    Append,
    AppendResult,
    ClaimChange,
    MarkRead,
    OpenMarker,
    Operation,
    Outcome,
    PutRoom,
    StreamMarker,
)
from agentchat_server.store.chatwrites import ChatWrites, Unchanged
from agentchat_server.store.room_batch import Checked, RoomBatch
from agentchat_server.store.room_rows import RoomRows
from agentchat_server.store.schema import MESSAGE_COLUMNS, channels_table, messages_table, streams_table

_PG_IDS = text(
    "SELECT m.id, m.serial FROM unnest(:ids) AS u(id) JOIN messages m "
    "ON m.channel = :channel AND m.client_id = :client_id AND m.id = u.id"
).bindparams(
    bindparam("ids", type_=ARRAY(String)),
    bindparam("channel", type_=String),
    bindparam("client_id", type_=String),
)

# The group commit's statements, built once: constructing Core statements per commit cost more
# than SQLite's own work for a small batch.
_c, _m = channels_table.c, messages_table.c
_CHANNELS = (
    select(_c.name, _c.epoch, _c.last_serial)
    .where(_c.name.in_(bindparam("names", expanding=True)))
    .order_by(_c.name)
)
_CHANNELS_LOCKED = _CHANNELS.with_for_update()
_INSERT_CHANNELS = insert(channels_table)
_INSERT_MESSAGES = insert(messages_table)
_COLUMNS = MESSAGE_COLUMNS
_ADVANCE = update(channels_table).where(_c.name == bindparam("n")).values(last_serial=bindparam("s"))
_INSERT_MARKERS = insert(streams_table)
_DELETE_MARKERS = delete(streams_table).where(streams_table.c.stream_id.in_(bindparam("ids", expanding=True)))
_FENCES = select(streams_table.c.stream_id, streams_table.c.fence).where(
    streams_table.c.stream_id.in_(bindparam("ids", expanding=True))
)
_IDS = select(_m.id, _m.serial).where(
    _m.channel == bindparam("channel"),
    _m.client_id == bindparam("client_id"),
    _m.id.in_(bindparam("ids", expanding=True)),
)
_SQLITE_ROWS = 500  # rows per INSERT statement (x 16 columns: under SQLite's variable limit)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(rows: int) -> str:
    """One INSERT of `rows` rows: one statement step, where executemany took one per row (and
    gave up and retook the GIL for each, which the event loop thread then made it wait for)."""
    values = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    return f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES " + ", ".join([values] * rows)


def new_epoch() -> str:
    """A fresh channel epoch: 8 hex digits."""
    return secrets.token_hex(4)


class Batch:
    """One group-commit transaction: assigns serials, dedupes ids, checks if_serial, writes rows.

    Synchronous code on a synchronous connection: on SQLite it runs whole in the writer thread,
    on PostgreSQL through `AsyncConnection.run_sync`. Reads are batched, not per operation: one
    query locks and reads every channel involved (in name order, so concurrent nodes cannot
    deadlock), one query per channel finds existing ids.
    """

    def __init__(self, conn: Connection, dialect: str) -> None:
        self.conn = conn
        self.dialect = dialect
        self.channels: dict[str, list[Any]] = {}  # name -> [epoch, last_serial, dirty]
        self.ids: dict[tuple[str, str, str], int] = {}  # (channel, client_id, id) stored before or now
        self.rows: list[tuple[Any, ...]] = []  # messages rows, in _COLUMNS order
        self.markers: list[dict[str, Any]] = []
        self.ended_streams: list[str] = []
        self.fences: dict[str, int] = {}  # stream id -> current fence, for the stream ends in this batch
        self.chat = ChatWrites(conn, dialect)
        self.room_rows = RoomRows(conn)
        self.rooms = RoomBatch(self.room_rows)
        self.human_spoke: set[str] = set()  # channels whose loop-brake count this commit reset
        self.last_ts: dict[str, int] = {}  # channel -> time of the last message stored in this commit

    def run(self, operations: Sequence[Operation]) -> list[Outcome]:
        """Apply the operations in this transaction; results align with them (None for markers
        without room rules)."""
        appends = [op for op in operations if isinstance(op, Append)]
        locked = {_channel_of(op) for op in operations if _locks(op)}
        if locked:
            self._load_channels(sorted(locked))
        if appends:
            self._load_ids(appends)
            self._load_fences(appends)
        results: list[Outcome] = []
        for op in operations:
            if isinstance(op, OpenMarker):
                results.append(self._marker(op))
            elif isinstance(op, Append):
                results.append(self._append(op))
            elif isinstance(op, MarkRead):
                state = self.channels.get(op.channel)
                results.append(self.chat.mark_read(op, None if state is None else state[1]))
            elif isinstance(op, PutRoom):
                last_serial = self.channels[op.channel][1]
                results.append(self.chat.put_room(op, last_serial, self.last_ts.get(op.channel)))
            elif isinstance(op, ClaimChange):
                results.append(self.rooms.claim_change(op))
            else:
                results.append(self.rooms.run_change(op))
        if self.rows:
            self._insert_messages()
        self.chat.flush()
        self.room_rows.flush()
        dirty = [{"n": name, "s": last} for name, (_epoch, last, changed) in self.channels.items() if changed]
        if dirty:
            self.conn.execute(_ADVANCE, dirty)
        if self.markers:
            self.conn.execute(_INSERT_MARKERS, self.markers)
        if self.ended_streams:
            self.conn.execute(_DELETE_MARKERS, {"ids": self.ended_streams})
        return results

    def _insert_messages(self) -> None:
        rows = self.rows
        if self.dialect == "sqlite":
            # Straight to the driver: SQLAlchemy's per-row parameter processing cost more than
            # SQLite's insert itself.
            for start in range(0, len(rows), _SQLITE_ROWS):
                chunk = rows[start : start + _SQLITE_ROWS]
                self.conn.exec_driver_sql(_sqlite_insert(len(chunk)), tuple(itertools.chain(*chunk)))
        elif len(rows) < 8:
            named = [dict(zip(_COLUMNS, row, strict=True)) for row in rows]
            self.conn.execute(_INSERT_MESSAGES, named)
        else:
            # COPY inside the same transaction: several times cheaper per row than INSERT.
            adapted: Any = self.conn.connection.dbapi_connection
            adapted.run_async(
                lambda driver: driver.copy_records_to_table("messages", records=rows, columns=_COLUMNS)
            )

    def _load_channels(self, names: list[str]) -> None:
        query = _CHANNELS_LOCKED if self.dialect == "postgresql" else _CHANNELS
        found = {row[0]: tuple(row) for row in self.conn.execute(query, {"names": names})}
        missing = [name for name in names if name not in found]
        if missing:
            rows = [
                {"name": n, "epoch": new_epoch(), "last_serial": 0, "first_serial": 1, "created_at": 0}
                for n in missing
            ]
            if self.dialect == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                # Another node may create the same channel now: keep whichever row won.
                self.conn.execute(pg_insert(channels_table).on_conflict_do_nothing(), rows)
                found.update({row[0]: tuple(row) for row in self.conn.execute(query, {"names": missing})})
            else:
                self.conn.execute(_INSERT_CHANNELS, rows)
                found.update({str(r["name"]): (r["name"], r["epoch"], 0) for r in rows})
        for name in names:
            row = found[name]
            self.channels[name] = [row[1], row[2], False]

    def _load_ids(self, appends: list[Append]) -> None:
        wanted: dict[tuple[str, str], set[str]] = {}
        for op in appends:
            for m in op.messages:
                if not m.fresh_id:
                    wanted.setdefault((op.channel, m.client_id), set()).add(m.id)
        for (channel, client_id), ids in wanted.items():
            listed = sorted(ids)
            for start in range(0, len(listed), 500):
                chunk = listed[start : start + 500]
                params = {"channel": channel, "client_id": client_id, "ids": chunk}
                if self.dialect == "postgresql":
                    # A join on an unnested array: one prepared statement whatever the batch size,
                    # and index probes even before the planner has statistics (an IN list or
                    # `id = ANY(...)` degrades to filtering every row of the channel on a fresh table).
                    rows = self.conn.execute(_PG_IDS, params)
                else:
                    rows = self.conn.execute(_IDS, params)
                for message_id, serial in rows:
                    self.ids[(channel, client_id, message_id)] = serial

    def _load_fences(self, appends: list[Append]) -> None:
        fenced = sorted(
            {m.stream_id for op in appends for m in op.messages if m.fence is not None and m.stream_id}
        )
        for start in range(0, len(fenced), 500):
            for stream_id, fence in self.conn.execute(_FENCES, {"ids": fenced[start : start + 500]}):
                self.fences[stream_id] = fence

    def _marker(self, op: OpenMarker) -> AppendResult | None:
        if op.room is None:
            self.markers.append(marker_row(op.marker))
            return None
        channel = op.marker.channel
        state = self.channels[channel]
        checked = self.rooms.check(op.room, channel, [], state[1] + 1)
        if checked.refusal is not None:
            stored = [self._store(channel, state, m) for m in checked.notices]
            return AppendResult([], [], stored, epoch=state[0], refusal=checked.refusal)
        self.markers.append(marker_row(op.marker))
        outcome = self.rooms.apply(op.room, channel, checked, [])
        return AppendResult([], [], [], epoch=state[0], claims=outcome.claims)

    def _append(self, op: Append) -> AppendResult:
        state = self.channels[op.channel]
        epoch, last = state[0], state[1]
        for message in op.messages:
            if message.fence is not None and message.stream_id is not None:
                current = self.fences.get(message.stream_id)
                if current is not None and current != message.fence:
                    # Another node took the stream over: this writer may no longer end it.
                    return AppendResult([], [], [], epoch=epoch, fenced=True)
        serials: list[int] = []
        duplicates: list[int] = []
        fresh: list[int] = []
        for index, message in enumerate(op.messages):
            known = self.ids.get((op.channel, message.client_id, message.id))
            if known is not None:
                serials.append(known)
                duplicates.append(index)
                if message.stream_id is not None:
                    self.ended_streams.append(message.stream_id)
            else:
                serials.append(0)
                fresh.append(index)
        if fresh and op.if_serial is not None and op.if_serial != last:
            return AppendResult([], [], [], conflict=last, epoch=epoch)
        for index in fresh:
            # Events and thread replies obey core.chat's rules; an event is a batch of one.
            verdict = self.chat.check(op.channel, op.messages[index])
            if isinstance(verdict, Refusal):
                return AppendResult([], [], [], epoch=epoch, refusal=verdict)
            if isinstance(verdict, Duplicate):
                return AppendResult([verdict.serial], [index], [], epoch=epoch)
            if isinstance(verdict, Unchanged):
                return AppendResult([], [], [], epoch=epoch, unchanged=True)
        messages = [op.messages[index] for index in fresh]
        checked: Checked | None = None
        if op.room is not None and fresh:
            checked = self.rooms.check(op.room, op.channel, messages, last + 1)
            if checked.refusal is not None:
                notices = [self._store(op.channel, state, m) for m in checked.notices]
                return AppendResult([], [], notices, epoch=epoch, refusal=checked.refusal)
            if checked.skip:
                outcome = self.rooms.apply(op.room, op.channel, checked, [])
                return AppendResult([], [], [], epoch=epoch, run=outcome.run)
            messages = checked.messages
        stored: list[Message] = []
        for index, message in zip(fresh, messages, strict=True):
            stored.append(self._store(op.channel, state, message))
            serials[index] = stored[-1].serial
        result = AppendResult(serials, duplicates, stored, epoch=epoch)
        if op.room is not None:
            if checked is not None:
                outcome = self.rooms.apply(op.room, op.channel, checked, stored)
            else:
                outcome = self.rooms.existing(op.room, op.channel, serials[0])
            result.claims, result.run, result.request = outcome.claims, outcome.run, outcome.request
        return result

    def _store(self, channel: str, state: list[Any], message: NewMessage) -> Message:
        """Give `message` the channel's next serial and queue its row (with its thread, and its
        addressees and the loop brake's reset for agent rooms)."""
        last = state[1] + 1
        state[1] = last
        state[2] = True
        self.ids[(channel, message.client_id, message.id)] = last
        self.last_ts[channel] = message.ts
        thread, added = self.chat.apply(channel, last, message)
        extra, extra_json = message.extra, message.extra_json
        if added:
            extra = {**(extra or {}), **added}
            extra_json = encode_value(extra)
        event = message.event
        action, target = (None, None) if event is None else (event.action, event.target)
        self.rows.append(
            (
                channel,
                last,
                message.id,
                message.name,
                message.data_json,
                message.client_id,
                message.kind,
                message.ts,
                message.reply_to,
                message.stream_id,
                message.status,
                message.meta_json,
                extra_json,
                thread,
                action,
                target,
            )
        )
        if message.stream_id is not None:
            self.ended_streams.append(message.stream_id)
        stored = Message(
            channel,
            last,
            message.id,
            message.name,
            message.data,
            message.client_id,
            message.kind,
            message.ts,
            message.reply_to,
            message.stream_id,
            message.status,
            None if message.meta_json is None else json.loads(message.meta_json),
            extra,
            thread,
            action,
            target,
        )
        if extra is not None and "to" in extra:
            self.room_rows.address(stored)
        if message.kind == "human" and event is None and channel not in self.human_spoke:
            # Here, not after the loop, so the later writes of this commit see the reset.
            self.human_spoke.add(channel)
            self.room_rows.human_spoke(channel)
        return stored


def _locks(op: Operation) -> bool:
    """Whether the operation reads and locks its channel's row (a marker only under room rules;
    a read mark never creates a channel)."""
    if isinstance(op, OpenMarker):
        return op.room is not None
    return not isinstance(op, MarkRead)


def _channel_of(op: Operation) -> str:
    return op.marker.channel if isinstance(op, OpenMarker) else op.channel


def marker_row(marker: StreamMarker) -> dict[str, Any]:
    """A stream marker as a `stream_markers` row."""
    return {
        "stream_id": marker.stream_id,
        "channel": marker.channel,
        "message_id": marker.message_id,
        "client_id": marker.client_id,
        "kind": marker.kind,
        "name": marker.name,
        "reply_to": marker.reply_to,
        "meta": marker.meta_json,
        "format": marker.format,
        "ts": marker.ts,
        "node": marker.node,
        "lease_until": marker.lease_until,
        "fence": marker.fence,
        "secret": marker.secret,
        "thread": marker.thread,
    }
