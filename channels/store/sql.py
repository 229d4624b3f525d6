"""SqlStore: the Store on SQLAlchemy Core, for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Serials are assigned inside the commit transaction from `channels.last_serial`, under a row lock
on PostgreSQL (`SELECT ... FOR UPDATE`) and the single-writer lock on SQLite; the unique
(channel, serial) and (channel, client_id, id) keys make any violation fail the transaction,
never corrupt. The transaction itself is `agentchat_server.store.batch.Batch`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, insert, select, text, update
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from agentchat_server.core.records import Message
from agentchat_server.protocol import utf8_len
from agentchat_server.store import (
    AppendResult,
    ChannelInfo,
    HistoryPage,
    OpenMarker,
    Operation,
    Result,
    StoreStats,
    StreamMarker,
)
from agentchat_server.store.batch import Batch
from agentchat_server.store.room_sql import RoomQueries, addressed_to, prune_rooms
from agentchat_server.store.schema import (
    MIGRATIONS,
    channels_table,
    messages_table,
    metadata,
    row_to_message,
    schema_version,
    streams_table,
)

log = logging.getLogger(__name__)

ROW_OVERHEAD = 256  # bytes a message frame adds to its data, meta and extra (keys, ids, numbers)


class SqlStore(RoomQueries):
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
        """The async engine (RuntimeError before `open`)."""
        if self._engine is None:
            raise RuntimeError("store is not open")
        return self._engine

    async def open(self) -> None:
        """Connect and bring the schema up to date."""
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
        """Close the writers and dispose of the engine."""
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
        """Raise if the database does not answer."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def commit(self, operations: Sequence[Operation]) -> list[Result]:
        """Apply the operations in one transaction (see `Store.commit`)."""
        if self._sqlite_writer is not None:
            results = await self._sqlite_writer.commit(operations)
        else:
            async with self._write() as conn:
                results = await conn.run_sync(lambda sync: Batch(sync, self.dialect).run(operations))
        stats = self.stats
        stats.transactions += 1
        for op, result in zip(operations, results, strict=True):
            stats.writes += 1
            if isinstance(op, OpenMarker):
                stream_id = op.marker.stream_id
                stats.writes_by_stream[stream_id] = stats.writes_by_stream.get(stream_id, 0) + 1
            elif isinstance(result, AppendResult):
                stats.messages += len(result.stored)
                for message in result.stored:
                    if message.stream_id is not None:
                        sid = message.stream_id
                        stats.writes_by_stream[sid] = stats.writes_by_stream.get(sid, 0) + 1
        return results

    async def history(
        self,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
        max_bytes: int | None = None,
        to_me: str | None = None,
    ) -> HistoryPage:
        """One page of history (see `Store.history`)."""
        m = messages_table.c
        query = select(messages_table).where(m.channel == channel)
        if to_me is not None:
            query = query.where(addressed_to(to_me))
        if before is not None:
            query = query.where(m.serial < before)
        if after is not None:
            query = query.where(m.serial > after)
        query = query.order_by(m.serial.asc() if forwards else m.serial.desc()).limit(limit + 1)
        messages: list[Message] = []
        size = 0
        async with self.engine.connect() as conn:
            # Rows arrive in small partitions, so a page of huge rows never sits in memory whole.
            result = await conn.stream(query.execution_options(yield_per=32))
            async for row in result:
                if len(messages) == limit:
                    return HistoryPage(messages, True)
                if max_bytes is not None:
                    size += utf8_len(row.data) + ROW_OVERHEAD
                    size += len(row.meta or "") + len(row.extra or "")
                    if size > max_bytes and messages:
                        return HistoryPage(messages, True)
                messages.append(row_to_message(row))
        return HistoryPage(messages, False)

    async def channel(self, channel: str) -> ChannelInfo:
        """The channel's position (see `Store.channel`)."""
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(channels_table).where(channels_table.c.name == channel))).first()
        if row is None:
            return ChannelInfo(channel, "", 0, 1)
        return ChannelInfo(channel, row.epoch, row.last_serial, row.first_serial)

    async def find_message(self, channel: str, client_id: str, message_id: str) -> Message | None:
        """The message a client published with an id (see `Store.find_message`)."""
        m = messages_table.c
        query = select(messages_table).where(
            m.channel == channel, m.client_id == client_id, m.id == message_id
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else row_to_message(row)

    async def open_markers(self) -> list[StreamMarker]:
        """Markers of streams that never ended, oldest first."""
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
        """Delete messages older than the timestamp (see `Store.prune`)."""
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
                await prune_rooms(conn, channel, top)
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

    async def commit(self, operations: Sequence[Operation]) -> list[Result]:
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._commit, operations)

    def _commit(self, operations: Sequence[Operation]) -> list[Result]:
        if self.conn is None or self.conn.closed or self.conn.invalidated:
            self.conn = self.engine.connect()
            self.conn.info["write"] = True
        conn = self.conn
        try:
            with conn.begin():
                return Batch(conn, "sqlite").run(operations)
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
