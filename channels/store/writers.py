"""The SQL Store's write paths: one long-lived write connection, and SQLite's commits on a thread of
their own; the connection pragmas of SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, create_engine, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.pool import NullPool

from agentchat_server.store import Operation, Outcome
from agentchat_server.store.batch import Batch

log = logging.getLogger(__name__)


class Writer:
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
        """One write transaction on the shared connection (replaced after any failure)."""
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
        """Close the connection."""
        if self.conn is not None:
            await _quiet_close(self.conn)
            self.conn = None


class SqliteWriter:
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
        sqlite_hooks(self.engine)
        self.conn: Connection | None = None
        self.thread = ThreadPoolExecutor(1, thread_name_prefix="agentchat-sqlite-writer")

    async def commit(self, operations: Sequence[Operation]) -> list[Outcome]:
        """Run the whole transaction on the writer thread."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, self._commit, operations)

    def _commit(self, operations: Sequence[Operation]) -> list[Outcome]:
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
        """Close the connection and stop the thread."""
        await asyncio.get_running_loop().run_in_executor(self.thread, self._drop)
        self.thread.shutdown(wait=True)
        self.engine.dispose()


def sqlite_hooks(engine: Engine) -> None:
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
