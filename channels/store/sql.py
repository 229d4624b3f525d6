"""SqlStore: the Store on SQLAlchemy Core, for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Serials are assigned inside the commit transaction from `channels.last_serial`, under a row lock
on PostgreSQL (`SELECT ... FOR UPDATE`) and the single-writer lock on SQLite; the unique
(channel, serial) and (channel, id) keys make any violation fail the transaction, never corrupt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import json
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Column,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agentchat_server.store import (
    Append,
    AppendResult,
    ChannelInfo,
    OpenMarker,
    Operation,
    StoredMessage,
    StoreStats,
    StreamMarker,
)

log = logging.getLogger(__name__)

metadata = MetaData()

schema_version = Table("agentchat_schema", metadata, Column("version", BigInteger, nullable=False))

channels_table = Table(
    "channels",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("epoch", String(32), nullable=False),
    Column("last_serial", BigInteger, nullable=False),
    Column("first_serial", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)

messages_table = Table(
    "messages",
    metadata,
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("id", String(128), nullable=False),
    Column("name", String(64), nullable=False),
    Column("data", Text, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("reply_to", BigInteger),
    Column("stream_id", String(64)),
    Column("status", String(16)),
    Column("meta", Text),
    PrimaryKeyConstraint("channel", "serial"),
    UniqueConstraint("channel", "id", name="uq_messages_channel_id"),
    Index("ix_messages_ts", "ts"),
)

streams_table = Table(
    "stream_markers",
    metadata,
    Column("stream_id", String(64), primary_key=True),
    Column("channel", String(200), nullable=False),
    Column("message_id", String(128), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("reply_to", BigInteger),
    Column("meta", Text),
    Column("format", String(8), nullable=False),
    Column("ts", BigInteger, nullable=False),
)


def _migration_1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[channels_table, messages_table, streams_table])


# Schema migrations in order; the Nth entry takes the schema from version N-1 to N. Append only.
MIGRATIONS = [_migration_1]


_PG_IDS = text(
    "SELECT m.id, m.serial FROM unnest(:ids) AS u(id) JOIN messages m ON m.channel = :channel AND m.id = u.id"
).bindparams(bindparam("ids", type_=ARRAY(String)), bindparam("channel", type_=String))


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
_COLUMNS = [column.name for column in messages_table.columns]
_ADVANCE = update(channels_table).where(_c.name == bindparam("n")).values(last_serial=bindparam("s"))
_INSERT_MARKERS = insert(streams_table)
_DELETE_MARKERS = delete(streams_table).where(streams_table.c.stream_id.in_(bindparam("ids", expanding=True)))
_IDS = select(_m.id, _m.serial).where(
    _m.channel == bindparam("channel"), _m.id.in_(bindparam("ids", expanding=True))
)
_SQLITE_ROWS = 500  # rows per INSERT statement (x 12 columns: under SQLite's variable limit)


@functools.lru_cache(maxsize=64)
def _sqlite_insert(rows: int) -> str:
    """One INSERT of `rows` rows: one statement step, where executemany took one per row (and
    gave up and retook the GIL for each, which the event loop thread then made it wait for)."""
    values = "(" + ", ".join("?" * len(_COLUMNS)) + ")"
    return f"INSERT INTO messages ({', '.join(_COLUMNS)}) VALUES " + ", ".join([values] * rows)


def new_epoch() -> str:
    return secrets.token_hex(4)


class SqlStore:
    """Store adapter over an SQLAlchemy async engine; one URL, one instance."""

    def __init__(self, url: str) -> None:
        self.url = url
        parsed = make_url(url)
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {url!r}: use sqlite+aiosqlite:// or postgresql+asyncpg://"
            )
        if self.dialect == "sqlite":
            if not parsed.database or parsed.database == ":memory:" or "mode=memory" in url:
                # Commits run on a connection of their own (see _SqliteWriter): it needs a file.
                raise ValueError(f"unsupported database {url!r}: SQLite needs a file path")
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.stats = StoreStats()
        self._engine: AsyncEngine | None = None
        self._writer: _Writer | None = None
        self._sqlite_writer: _SqliteWriter | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    async def open(self) -> None:
        if self.dialect == "sqlite":
            engine = create_async_engine(self.url, connect_args={"timeout": 30})
            _sqlite_hooks(engine.sync_engine)
            self._engine = engine
        else:
            # executemany over asyncpg's pipelined protocol beats multi-VALUES inserts, whose
            # statement text (and so its prepared statement) changes with every batch size.
            self._engine = create_async_engine(
                self.url, pool_size=10, max_overflow=10, use_insertmanyvalues=False
            )
        await self._migrate()
        if self.dialect == "sqlite":
            self._sqlite_writer = _SqliteWriter(self.url)

    async def _migrate(self) -> None:
        async with self._write() as conn:
            await conn.run_sync(lambda c: metadata.create_all(c, tables=[schema_version]))
            current = (await conn.execute(select(func.max(schema_version.c.version)))).scalar() or 0
            for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
                await conn.run_sync(step)
                await conn.execute(insert(schema_version).values(version=version))
                log.info("database schema migrated to version %d", version)

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        if self._writer is None:
            self._writer = _Writer(self.engine, self.dialect)
        return self._writer.transaction()

    async def close(self) -> None:
        if self._sqlite_writer is not None:
            await self._sqlite_writer.close()
            self._sqlite_writer = None
        if self._writer is not None:
            await self._writer.close()
            self._writer = None
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def commit(self, operations: Sequence[Operation]) -> list[AppendResult | None]:
        if self._sqlite_writer is not None:
            results = await self._sqlite_writer.commit(operations)
        else:
            async with self._write() as conn:
                results = await conn.run_sync(lambda sync: _Batch(sync, self.dialect).run(operations))
        stats = self.stats
        stats.transactions += 1
        for op, result in zip(operations, results, strict=True):
            stats.writes += 1
            if isinstance(op, OpenMarker):
                stream_id = op.marker.stream_id
                stats.writes_by_stream[stream_id] = stats.writes_by_stream.get(stream_id, 0) + 1
            elif result is not None:
                stats.messages += len(result.stored)
                for message in result.stored:
                    if message.stream_id is not None:
                        sid = message.stream_id
                        stats.writes_by_stream[sid] = stats.writes_by_stream.get(sid, 0) + 1
        return results

    async def history(
        self, channel: str, *, before: int | None, after: int | None, limit: int, forwards: bool
    ) -> list[StoredMessage]:
        m = messages_table.c
        query = select(messages_table).where(m.channel == channel)
        if before is not None:
            query = query.where(m.serial < before)
        if after is not None:
            query = query.where(m.serial > after)
        query = query.order_by(m.serial.asc() if forwards else m.serial.desc()).limit(limit)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row_to_message(row) for row in rows]

    async def channel(self, channel: str) -> ChannelInfo:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(channels_table).where(channels_table.c.name == channel))).first()
        if row is None:
            return ChannelInfo(channel, "", 0, 1)
        return ChannelInfo(channel, row.epoch, row.last_serial, row.first_serial)

    async def find_message(self, channel: str, message_id: str) -> StoredMessage | None:
        m = messages_table.c
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(messages_table).where(m.channel == channel, m.id == message_id))
            ).first()
        return None if row is None else _row_to_message(row)

    async def open_markers(self) -> list[StreamMarker]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(streams_table).order_by(streams_table.c.ts))).all()
        return [
            StreamMarker(
                r.stream_id,
                r.channel,
                r.message_id,
                r.client_id,
                r.kind,
                r.name,
                r.reply_to,
                r.meta,
                r.format,
                r.ts,
            )
            for r in rows
        ]

    async def prune(self, older_than_ms: int) -> dict[str, int]:
        m = messages_table.c
        async with self._write() as conn:
            # Move each channel's first_serial past what is deleted, so readers learn of the loss.
            cut = (
                select(m.channel, func.max(m.serial).label("top"))
                .where(m.ts < older_than_ms)
                .group_by(m.channel)
            )
            tops = (await conn.execute(cut)).all()
            for channel, top in tops:
                await conn.execute(
                    update(channels_table)
                    .where(channels_table.c.name == channel)
                    .values(first_serial=top + 1)
                )
                await conn.execute(delete(messages_table).where(m.channel == channel, m.serial <= top))
        return {channel: top + 1 for channel, top in tops}


class _Writer:
    """The one connection all write transactions use (the committer is the only steady writer).

    Keeping it open saves a pool checkout and a reset round trip per group commit; it is
    replaced after any failure. BEGIN IMMEDIATE on SQLite, a normal transaction on PostgreSQL."""

    def __init__(self, engine: AsyncEngine, dialect: str) -> None:
        self.engine = engine
        self.dialect = dialect
        self.conn: AsyncConnection | None = None
        self.lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self.lock:
            if self.conn is None or self.conn.closed or self.conn.invalidated:
                self.conn = await self.engine.connect()
                if self.dialect == "sqlite":
                    self.conn.sync_connection.info["write"] = True  # type: ignore[union-attr]
            conn = self.conn
            try:
                async with conn.begin():
                    yield conn
            except BaseException:
                self.conn = None
                await _quiet_close(conn)
                raise

    async def close(self) -> None:
        if self.conn is not None:
            await _quiet_close(self.conn)
            self.conn = None


class _SqliteWriter:
    """SQLite group commits in one thread hop each.

    Through aiosqlite every statement is a round trip to its thread (about 14 per commit, over
    2 ms together); here a thread of our own runs the whole transaction on one stdlib sqlite3
    connection, so a commit costs its SQL and its fsync. Reads stay on the async engine (WAL)."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(
            make_url(url).set(drivername="sqlite"),
            connect_args={"timeout": 30, "check_same_thread": False},
            poolclass=NullPool,
        )
        _sqlite_hooks(self.engine)
        self.conn: Connection | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="agentchat-sqlite-writer")

    async def commit(self, operations: Sequence[Operation]) -> list[AppendResult | None]:
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._commit, operations)

    def _commit(self, operations: Sequence[Operation]) -> list[AppendResult | None]:
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.engine.connect()
            self.conn.info["write"] = True
        conn = self.conn
        try:
            with conn.begin():
                return _Batch(conn, "sqlite").run(operations)
        except BaseException:
            self._drop()
            raise

    def _drop(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:
                log.debug("closing the SQLite writer failed: %s", exc)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self.thread, self._drop)
        self.thread.shutdown(wait=True)
        self.engine.dispose()


def _sqlite_hooks(engine: Engine) -> None:
    """Pragmas and transaction mode of every SQLite connection (async readers, sync writer)."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        # Let the "begin" hook below own transactions instead of pysqlite.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        # WAL lets history reads run beside the committer; FULL syncs each group commit.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Take the write lock up front; pysqlite's deferred BEGIN would otherwise
        # let two writers deadlock on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("write") else "BEGIN")


async def _quiet_close(conn: AsyncConnection) -> None:
    try:
        await conn.close()
    except Exception as exc:
        log.debug("closing a write connection failed: %s", exc)


class _Batch:
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
        self.ids: dict[tuple[str, str], int] = {}  # ids stored before or in this transaction
        self.rows: list[tuple[Any, ...]] = []  # messages rows, in _COLUMNS order
        self.markers: list[dict[str, Any]] = []
        self.ended_streams: list[str] = []

    def run(self, operations: Sequence[Operation]) -> list[AppendResult | None]:
        appends = [op for op in operations if isinstance(op, Append)]
        if appends:
            self._load_channels(sorted({op.channel for op in appends}))
            self._load_ids(appends)
        results: list[AppendResult | None] = []
        for op in operations:
            if isinstance(op, OpenMarker):
                self.markers.append(_marker_row(op.marker))
                results.append(None)
            else:
                results.append(self._append(op))
        if self.rows:
            self._insert_messages()
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
        wanted: dict[str, set[str]] = {}
        for op in appends:
            wanted.setdefault(op.channel, set()).update(m.id for m in op.messages if not m.fresh_id)
        for channel, ids in wanted.items():
            if not ids:
                continue
            listed = sorted(ids)
            for start in range(0, len(listed), 500):
                chunk = listed[start : start + 500]
                if self.dialect == "postgresql":
                    # A join on an unnested array: one prepared statement whatever the batch size,
                    # and index probes even before the planner has statistics (an IN list or
                    # `id = ANY(...)` degrades to filtering every row of the channel on a fresh table).
                    rows = self.conn.execute(_PG_IDS, {"channel": channel, "ids": chunk})
                else:
                    rows = self.conn.execute(_IDS, {"channel": channel, "ids": chunk})
                for message_id, serial in rows:
                    self.ids[(channel, message_id)] = serial

    def _append(self, op: Append) -> AppendResult:
        state = self.channels[op.channel]
        epoch, last = state[0], state[1]
        serials: list[int] = []
        duplicates: list[int] = []
        fresh: list[int] = []
        for index, message in enumerate(op.messages):
            known = self.ids.get((op.channel, message.id))
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
        stored: list[StoredMessage] = []
        for index in fresh:
            message = op.messages[index]
            last += 1
            serials[index] = last
            self.ids[(op.channel, message.id)] = last
            self.rows.append(
                (
                    op.channel,
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
                )
            )
            if message.stream_id is not None:
                self.ended_streams.append(message.stream_id)
            stored.append(
                StoredMessage(
                    op.channel,
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
                )
            )
        if fresh:
            state[1] = last
            state[2] = True
        return AppendResult(serials, duplicates, stored, epoch=epoch)


def _marker_row(marker: StreamMarker) -> dict[str, Any]:
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
    }


def _row_to_message(row: Any) -> StoredMessage:
    return StoredMessage(
        row.channel,
        row.serial,
        row.id,
        row.name,
        json.loads(row.data),
        row.client_id,
        row.kind,
        row.ts,
        row.reply_to,
        row.stream_id,
        row.status,
        None if row.meta is None else json.loads(row.meta),
    )
