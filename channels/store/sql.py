"""SqlStore: the Store on SQLAlchemy Core, for SQLite (aiosqlite) and PostgreSQL (asyncpg).

Serials are assigned inside the commit transaction from `channels.last_serial`, under a row lock
on PostgreSQL (`SELECT ... FOR UPDATE`) and the single-writer lock on SQLite; the unique
(channel, serial) and (channel, client_id, id) keys make any violation fail the transaction,
never corrupt. The transaction itself is `agentchat_server.store.batch.Batch`.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from agentchat_server.core.records import Message
from agentchat_server.protocol import utf8_len
from agentchat_server.store import (
    AppendResult,
    ChannelInfo,
    HistoryPage,
    OpenMarker,
    Operation,
    Outcome,
    StoreStats,
    StreamMarker,
)
from agentchat_server.store.batch import Batch
from agentchat_server.store.chatreads import ChatReads
from agentchat_server.store.room_sql import RoomQueries, addressed_to, prune_rooms, renew_run_leases
from agentchat_server.store.schema import (
    MIGRATIONS,
    channels_table,
    mentions_table,
    messages_table,
    metadata,
    reactions_table,
    row_to_marker,
    row_to_message,
    schema_version,
    streams_table,
)
from agentchat_server.store.writers import SqliteWriter, Writer, sqlite_hooks

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x61676E746368  # the advisory lock id under which PostgreSQL migrations run
ROW_OVERHEAD = 256  # bytes a message frame adds to its data, meta and extra (keys, ids, numbers)


class SqlStore(ChatReads, RoomQueries):
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
        self._writer: Writer | None = None
        self._sqlite_writer: SqliteWriter | None = None

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
            sqlite_hooks(engine.sync_engine)
            self._engine = engine
        else:
            # executemany over asyncpg's pipelined protocol beats multi-VALUES inserts, whose
            # statement text (and so its prepared statement) changes with every batch size.
            self._engine = create_async_engine(
                self.url, pool_size=10, max_overflow=10, use_insertmanyvalues=False
            )
        await self._migrate()
        if self.dialect == "sqlite":
            self._sqlite_writer = SqliteWriter(self.url)

    async def _migrate(self) -> None:
        async with self._write() as conn:
            if self.dialect == "postgresql":
                # Nodes starting together on a fresh database take turns (SQLite's BEGIN IMMEDIATE
                # does the same there); the lock ends with the transaction.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            await conn.run_sync(lambda c: metadata.create_all(c, tables=[schema_version]))
            current = (await conn.execute(select(func.max(schema_version.c.version)))).scalar() or 0
            for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
                await conn.run_sync(step)
                await conn.execute(insert(schema_version).values(version=version))
                log.info("database schema migrated to version %d", version)

    def _write(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection]:
        if self._writer is None:
            self._writer = Writer(self.engine, self.dialect)
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

    async def commit(self, operations: Sequence[Operation]) -> list[Outcome]:
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
        thread: int | None = None,
        main: bool = False,
        to_me: str | None = None,
    ) -> HistoryPage:
        """One page of history (see `Store.history`)."""
        m = messages_table.c
        query = select(messages_table).where(m.channel == channel)
        if thread is not None:
            query = query.where(m.thread == thread, m.action.is_(None))
        elif main:
            query = query.where(m.thread.is_(None), m.action.is_(None))
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
                    if row.extra is not None and '"reactions"' in row.extra:
                        size += len(row.extra)  # room for the reader's own reactions (a subset)
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

    async def heads(self, channels: Sequence[str]) -> dict[str, int]:
        """Last serials of existing channels (see `Store.heads`)."""
        if not channels:
            return {}
        c = channels_table.c
        query = select(c.name, c.last_serial).where(c.name.in_(list(channels)))
        async with self.engine.connect() as conn:
            return {name: last for name, last in (await conn.execute(query)).all()}

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
        """Markers of every open stream, oldest first."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(streams_table).order_by(streams_table.c.ts))).all()
        return [row_to_marker(r) for r in rows]

    async def marker(self, stream_id: str) -> StreamMarker | None:
        """The marker of an open stream (see `Store.marker`)."""
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(select(streams_table).where(streams_table.c.stream_id == stream_id))
            ).first()
        return None if row is None else row_to_marker(row)

    async def lapsed_markers(self, now_ms: int) -> list[StreamMarker]:
        """Markers whose lease ended before `now_ms` (see `Store.lapsed_markers`)."""
        s = streams_table.c
        query = select(streams_table).where(s.lease_until < now_ms).order_by(s.ts)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [row_to_marker(r) for r in rows]

    async def renew_leases(self, node: str, until_ms: int) -> int:
        """Extend the leases `node` holds (see `Store.renew_leases`)."""
        s = streams_table.c
        async with self._write() as conn:
            done = await conn.execute(
                update(streams_table).where(s.node == node).values(lease_until=until_ms)
            )
            await renew_run_leases(conn, node, until_ms)
        return int(done.rowcount or 0)

    async def release(
        self, stream_id: str, fence: int, content_json: str, chunks: int, until_ms: int
    ) -> bool:
        """Let go of a stream, saving its content (see `Store.release`)."""
        s = streams_table.c
        async with self._write() as conn:
            done = await conn.execute(
                update(streams_table)
                .where(s.stream_id == stream_id, s.fence == fence)
                .values(node=None, lease_until=until_ms, content=content_json, chunks=chunks)
            )
        return done.rowcount == 1

    async def take_over(
        self, stream_id: str, client_id: str, secret: str, node: str, until_ms: int
    ) -> StreamMarker | None:
        """Compare-and-set the stream's holder with a new fence (see `Store.take_over`)."""
        s = streams_table.c
        async with self._write() as conn:
            row = (
                await conn.execute(
                    select(streams_table).where(s.stream_id == stream_id, s.client_id == client_id)
                )
            ).first()
            if row is None or not secret or not hmac.compare_digest(row.secret, secret):
                return None
            done = await conn.execute(
                update(streams_table)
                .where(s.stream_id == stream_id, s.fence == row.fence)
                .values(node=node, lease_until=until_ms, fence=row.fence + 1)
            )
            if done.rowcount != 1:
                return None  # someone else took it over at the same moment
        marker = row_to_marker(row)
        marker.node, marker.lease_until, marker.fence = node, until_ms, row.fence + 1
        return marker

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
                for table in (reactions_table, mentions_table):
                    await conn.execute(delete(table).where(table.c.channel == channel, table.c.serial <= top))
                await prune_rooms(conn, channel, top)
        return {channel: top + 1 for channel, top in tops}
