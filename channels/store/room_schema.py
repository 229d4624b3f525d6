"""The SQL tables of agent rooms (addressees, loop-brake counts, claims, runs, input requests) and
the migration that creates them. Every row here changes only inside a group commit that holds its
channel's row lock, so one channel's room rows have one writer at a time on every database."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Connection

from agentchat_server.core.agentrooms import ClaimRow
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.runs import RunRecord

room_metadata = MetaData()

# One row per addressee of a message: "to me" filters find a reader's messages by key.
message_to_table = Table(
    "message_to",
    room_metadata,
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("client_id", String(64), nullable=False),
    PrimaryKeyConstraint("channel", "serial", "client_id"),
)

# Agent turns since the last human message, and the agent speaking now, per channel (the loop brake).
channel_rooms_table = Table(
    "channel_rooms",
    room_metadata,
    Column("channel", String(200), primary_key=True),
    Column("agent_turns", BigInteger, nullable=False),
    Column("speaker", String(64)),
)

claims_table = Table(
    "claims",
    room_metadata,
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("holder", String(64), nullable=False),
    Column("session", String(64), nullable=False),
    Column("token", BigInteger, nullable=False),
    Column("state", String(16), nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("display_name", String(200)),
    PrimaryKeyConstraint("channel", "serial"),
    Index("ix_claims_due", "state", "expires_at"),
)

runs_table = Table(
    "runs",
    room_metadata,
    Column("run_id", String(64), primary_key=True),
    Column("channel", String(200), nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("kind", String(16), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("pending", BigInteger, nullable=False),
    Column("writer", String(64)),
    Column("parent_id", String(64)),
    Column("depth", Integer, nullable=False),
    Column("reply_to", BigInteger),
    Column("requester", String(64)),
    Column("claim_token", BigInteger),
    Column("display_name", String(200)),
    Column("error", Text),
    Column("cancelled_by", String(64)),
    Column("node", String(32)),
    Column("lease_until", BigInteger, nullable=False, default=0),
    UniqueConstraint("channel", "serial", name="uq_runs_channel_serial"),
    Index("ix_runs_channel_status", "channel", "status"),
    Index("ix_runs_status", "status"),
)

requests_table = Table(
    "input_requests",
    room_metadata,
    Column("request_id", String(64), primary_key=True),
    Column("channel", String(200), nullable=False),
    Column("serial", BigInteger, nullable=False),
    Column("client_id", String(64), nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("prompt", Text, nullable=False),
    Column("shape", Text, nullable=False),
    Column("data", Text),
    Column("to_ids", Text),
    Column("run_id", String(64)),
    Column("deadline", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("answer", Text),
    UniqueConstraint("channel", "serial", name="uq_input_requests_channel_serial"),
    Index("ix_input_requests_due", "status", "deadline"),
    Index("ix_input_requests_channel", "channel", "status", "serial"),
)

ROOM_TABLES = [message_to_table, channel_rooms_table, claims_table, runs_table, requests_table]


def migration_rooms(conn: Connection) -> None:
    """Agent rooms: addressees, loop-brake counts, claims, runs and input requests (new tables only)."""
    room_metadata.create_all(conn, tables=ROOM_TABLES)


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def claim_from_row(row: Any) -> ClaimRow:
    """A `claims` row as a record."""
    return ClaimRow(
        row.channel,
        row.serial,
        row.holder,
        row.session,
        row.token,
        row.state,
        row.expires_at,
        row.display_name,
    )


def claim_to_row(claim: ClaimRow) -> dict[str, Any]:
    """A claim record as `claims` column values."""
    return {
        "channel": claim.channel,
        "serial": claim.serial,
        "holder": claim.holder,
        "session": claim.session,
        "token": claim.token,
        "state": claim.state,
        "expires_at": claim.expires_at,
        "display_name": claim.display_name,
    }


def run_from_row(row: Any) -> RunRecord:
    """A `runs` row as a record."""
    return RunRecord(
        row.run_id,
        row.channel,
        row.client_id,
        row.kind,
        row.serial,
        row.ts,
        row.status,
        row.version,
        row.pending,
        row.writer,
        row.parent_id,
        row.depth,
        row.reply_to,
        row.requester,
        row.claim_token,
        row.display_name,
        _json(row.error),
        row.cancelled_by,
        row.node,
        row.lease_until,
    )


def run_to_row(run: RunRecord) -> dict[str, Any]:
    """A run record as `runs` column values."""
    return {
        "run_id": run.run_id,
        "channel": run.channel,
        "client_id": run.client_id,
        "kind": run.kind,
        "serial": run.serial,
        "ts": run.ts,
        "status": run.status,
        "version": run.version,
        "pending": run.pending,
        "writer": run.writer,
        "parent_id": run.parent_id,
        "depth": run.depth,
        "reply_to": run.reply_to,
        "requester": run.requester,
        "claim_token": run.claim_token,
        "display_name": run.display_name,
        "error": None if run.error is None else json.dumps(run.error),
        "cancelled_by": run.cancelled_by,
        "node": run.node,
        "lease_until": run.lease_until,
    }


def request_from_row(row: Any) -> RequestRecord:
    """An `input_requests` row as a record."""
    return RequestRecord(
        row.request_id,
        row.channel,
        row.serial,
        row.client_id,
        row.ts,
        row.prompt,
        json.loads(row.shape),
        row.deadline,
        _json(row.data),
        _json(row.to_ids),
        row.run_id,
        row.status,
        _json(row.answer),
    )


def request_to_row(request: RequestRecord) -> dict[str, Any]:
    """A request record as `input_requests` column values."""
    return {
        "request_id": request.request_id,
        "channel": request.channel,
        "serial": request.serial,
        "client_id": request.client_id,
        "ts": request.ts,
        "prompt": request.prompt,
        "shape": json.dumps(request.shape),
        "data": None if request.data is None else json.dumps(request.data),
        "to_ids": None if request.to is None else json.dumps(request.to),
        "run_id": request.run_id,
        "deadline": request.deadline,
        "status": request.status,
        "answer": None if request.answer is None else json.dumps(request.answer),
    }
