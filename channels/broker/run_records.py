"""The durable records of runs: a run's start and end are `agentchat.run` messages of its client."""

from __future__ import annotations

import secrets
from typing import Any

from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import RoomRules, Writer, wire_fields
from agentchat_server.core.records import NewMessage
from agentchat_server.core.runs import RUN_RECORD
from agentchat_server.protocol import encode_value
from agentchat_server.store import AppendResult, LoseWriter, Outcome, RoomWrite


def run_record(
    writer: Writer,
    run_id: str,
    status: str,
    *,
    message_id: str,
    display_name: str | None,
    reply_to: int | None = None,
    to: list[str] | None = None,
    parent: str | None = None,
    error: dict[str, Any] | None = None,
    result: Any = None,
    cancelled_by: str | None = None,
) -> NewMessage:
    """A run's start or end record: an `agentchat.run` message of the run's client, whose data
    holds the status (and the parent run, error, result or who cancelled)."""
    data: dict[str, Any] = {"status": status}
    optional = {"parent_run_id": parent, "error": error, "result": result, "cancelled_by": cancelled_by}
    data.update({k: v for k, v in optional.items() if v is not None})
    extra = wire_fields(run_id=run_id, display_name=display_name, to=to)
    return NewMessage(
        message_id,
        RUN_RECORD,
        data,
        encode_value(data),
        writer.client_id,
        writer.kind,
        now_ms(),
        reply_to,
        extra=extra,
        extra_json=encode_value(extra),
    )


def lost_writer(
    rules: RoomRules, writer: Writer, channel: str, run_id: str, session: str, display_name: str | None
) -> tuple[NewMessage, RoomWrite]:
    """The record and room write of a run whose writer `session` is gone: the commit parks the run
    if it waits for input (nothing stored), else ends it `aborted`; it does nothing once the run's
    writer is another session (a compare-and-set: one node of several wins)."""
    message = run_record(
        writer,
        run_id,
        "aborted",
        message_id=f"run:{run_id}:lost:{secrets.token_hex(6)}",
        display_name=display_name,
    )
    write = rules.write(
        writer,
        channel,
        turn=False,
        run_id=run_id,
        session=session,
        soft=True,
        effect=LoseWriter(run_id, session),
    )
    return message, write


def appended(result: Outcome) -> AppendResult:
    """The result of an Append (the committer resolves each operation with its own kind)."""
    assert isinstance(result, AppendResult)
    return result
