"""The SQL schema of the Store and its migrations (append-only, one step per schema version)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Connection

from agentchat_server.core.records import Message
from agentchat_server.store.room_schema import migration_rooms as _migration_rooms

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
    Column("extra", Text),  # JSON object of server-stamped wire fields (display_name, cancelled_by, ...)
    PrimaryKeyConstraint("channel", "serial"),
    # Ids are the publisher's idempotency keys, scoped to the publisher: one client's id can never
    # take (pre-empt) another client's message.
    UniqueConstraint("channel", "client_id", "id", name="uq_messages_channel_client_id"),
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

MESSAGE_COLUMNS = [column.name for column in messages_table.columns]

# Version 1 of `messages`, frozen: migration 1 must create exactly what it created then.
_v1 = MetaData()
_messages_v1 = Table(
    "messages",
    _v1,
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


def _migration_1(conn: Connection) -> None:
    metadata.create_all(conn, tables=[channels_table, streams_table])
    _v1.create_all(conn, tables=[_messages_v1])


def _migration_2(conn: Connection) -> None:
    """Ids unique per (channel, client_id) instead of per channel; an `extra` column."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("ALTER TABLE messages DROP CONSTRAINT uq_messages_channel_id"))
        conn.execute(
            text(
                "ALTER TABLE messages ADD CONSTRAINT uq_messages_channel_client_id "
                "UNIQUE (channel, client_id, id)"
            )
        )
        conn.execute(text("ALTER TABLE messages ADD COLUMN extra TEXT"))
        return
    # SQLite cannot drop a constraint: rebuild the table.
    old = [c for c in MESSAGE_COLUMNS if c != "extra"]
    conn.execute(text("DROP INDEX ix_messages_ts"))
    conn.execute(text("ALTER TABLE messages RENAME TO messages_v1"))
    metadata.create_all(conn, tables=[messages_table])
    columns = ", ".join(old)
    conn.execute(text(f"INSERT INTO messages ({columns}) SELECT {columns} FROM messages_v1"))
    conn.execute(text("DROP TABLE messages_v1"))


# Schema migrations in order; the Nth entry takes the schema from version N-1 to N. Append only.
MIGRATIONS = [_migration_1, _migration_2, _migration_rooms]


def row_to_message(row: Any) -> Message:
    """A `messages` row as a record (JSON columns decoded)."""
    return Message(
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
        None if row.extra is None else json.loads(row.extra),
    )
