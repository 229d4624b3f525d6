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
from agentchat_server.store import StreamMarker
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
    # Directory metadata (chat): the room's title and topic, and who set them when.
    Column("title", String(400)),
    Column("topic", Text),
    Column("meta_by", String(64)),
    Column("meta_ts", BigInteger),
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
    Column("thread", BigInteger),  # root serial of the thread the message replies in
    Column("action", String(16)),  # edit, delete, react, unreact: this row is an event on `target`
    Column("target", BigInteger),
    PrimaryKeyConstraint("channel", "serial"),
    # Ids are the publisher's idempotency keys, scoped to the publisher: one client's id can never
    # take (pre-empt) another client's message.
    UniqueConstraint("channel", "client_id", "id", name="uq_messages_channel_client_id"),
    Index("ix_messages_ts", "ts"),
    # Thread replies only: most messages are top level, and an index they are not in costs them nothing.
    Index(
        "ix_messages_thread",
        "channel",
        "thread",
        "serial",
        sqlite_where=text("thread IS NOT NULL"),
        postgresql_where=text("thread IS NOT NULL"),
    ),
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
    Column("thread", BigInteger),
    Column("node", String(32)),  # the node holding the stream, None while nobody does
    Column("lease_until", BigInteger, nullable=False, server_default="0"),
    Column("fence", BigInteger, nullable=False, server_default="1"),
    Column("secret", String(64), nullable=False, server_default=""),
    Column("content", Text),  # JSON of the content so far, saved when its node let go of it
    Column("chunks", BigInteger, nullable=False, server_default="0"),  # chunks that content holds
)

# Each member's reactions to a message: the truth behind the aggregate a message carries.
reactions_table = Table(
    "reactions",
    metadata,
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("reaction", String(64), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("channel", "serial", "reaction", "client_id"),
    Index("ix_reactions_member", "channel", "serial", "client_id"),
)

# Who a message names (protocol.mentions), for mention counts.
mentions_table = Table(
    "mentions",
    metadata,
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("client_id", String(64), nullable=False),
    PrimaryKeyConstraint("channel", "serial", "client_id"),
    Index("ix_mentions_member", "client_id", "channel", "serial"),
)

# Each member's last-read serial per channel; it never moves backwards.
read_marks_table = Table(
    "read_marks",
    metadata,
    Column("channel", String(200), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("channel", "client_id"),
    Index("ix_read_marks_member", "client_id", "channel"),
)

MESSAGE_COLUMNS = [column.name for column in messages_table.columns]

# Versions 1 of `channels`, `stream_markers` and `messages`, frozen: migration 1 must create exactly
# what it created then.
_v1 = MetaData()
_channels_v1 = Table(
    "channels",
    _v1,
    Column("name", String(200), primary_key=True),
    Column("epoch", String(32), nullable=False),
    Column("last_serial", BigInteger, nullable=False),
    Column("first_serial", BigInteger, nullable=False),
    Column("created_at", BigInteger, nullable=False),
)
_streams_v1 = Table(
    "stream_markers",
    _v1,
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


# Version 2 of `messages`, frozen: migration 2's SQLite rebuild must create exactly this.
_v2 = MetaData()
_messages_v2 = Table(
    "messages",
    _v2,
    *(Column(c.name, c.type, nullable=c.nullable) for c in _messages_v1.columns),
    Column("extra", Text),
    PrimaryKeyConstraint("channel", "serial"),
    UniqueConstraint("channel", "client_id", "id", name="uq_messages_channel_client_id"),
    Index("ix_messages_ts", "ts"),
)


def _migration_1(conn: Connection) -> None:
    _v1.create_all(conn, tables=[_channels_v1, _streams_v1, _messages_v1])


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
    old = [c.name for c in _messages_v1.columns]
    conn.execute(text("DROP INDEX ix_messages_ts"))
    conn.execute(text("ALTER TABLE messages RENAME TO messages_v1"))
    _v2.create_all(conn, tables=[_messages_v2])
    columns = ", ".join(old)
    conn.execute(text(f"INSERT INTO messages ({columns}) SELECT {columns} FROM messages_v1"))
    conn.execute(text("DROP TABLE messages_v1"))


def _migration_chat(conn: Connection) -> None:
    """Group chat: threads and events on messages, a thread on stream markers, room metadata on
    channels; reactions, mentions and read marks."""
    for table, column, kind in (
        ("messages", "thread", "BIGINT"),
        ("messages", "action", "VARCHAR(16)"),
        ("messages", "target", "BIGINT"),
        ("stream_markers", "thread", "BIGINT"),
        ("channels", "title", "VARCHAR(400)"),
        ("channels", "topic", "TEXT"),
        ("channels", "meta_by", "VARCHAR(64)"),
        ("channels", "meta_ts", "BIGINT"),
    ):
        conn.execute(text(f"ALTER TABLE {table} ADD COLUMN {column} {kind}"))
    conn.execute(text("CREATE INDEX ix_messages_thread ON messages (channel, thread, serial)"))
    metadata.create_all(conn, tables=[reactions_table, mentions_table, read_marks_table])


def _migration_stream_leases(conn: Connection) -> None:
    """Stream markers record who holds the stream, under which lease and fence, and its resume key."""
    for ddl in (
        "ALTER TABLE stream_markers ADD COLUMN node VARCHAR(32)",
        "ALTER TABLE stream_markers ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0",
        "ALTER TABLE stream_markers ADD COLUMN fence BIGINT NOT NULL DEFAULT 1",
        "ALTER TABLE stream_markers ADD COLUMN secret VARCHAR(64) NOT NULL DEFAULT ''",
        "ALTER TABLE stream_markers ADD COLUMN content TEXT",
        "ALTER TABLE stream_markers ADD COLUMN chunks BIGINT NOT NULL DEFAULT 0",
    ):
        conn.execute(text(ddl))
    conn.execute(text("CREATE INDEX ix_stream_markers_node ON stream_markers (node)"))


def _migration_partial_thread_index(conn: Connection) -> None:
    """The thread index holds thread replies only, so a top-level message (most of them) updates
    one index fewer when it is stored; `thread = ?` lookups use it as before."""
    conn.execute(text("DROP INDEX ix_messages_thread"))
    conn.execute(
        text("CREATE INDEX ix_messages_thread ON messages (channel, thread, serial) WHERE thread IS NOT NULL")
    )


# Schema migrations in order; the Nth entry takes the schema from version N-1 to N. Append only.
MIGRATIONS = [
    _migration_1,
    _migration_2,
    _migration_stream_leases,
    _migration_chat,
    _migration_rooms,
    _migration_partial_thread_index,
]


def row_to_marker(r: Any) -> StreamMarker:
    """A `stream_markers` row as a record."""
    return StreamMarker(
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
        node=r.node,
        lease_until=r.lease_until,
        fence=r.fence,
        secret=r.secret,
        content_json=r.content,
        chunks=r.chunks,
        thread=r.thread,
    )


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
        row.thread,
        row.action,
        row.target,
    )
