"""The room rows one group-commit transaction reads and writes: claims, runs, input requests, the
loop brake's count, a message's addressees. Reads are cached for the transaction, so later
operations of the same commit see earlier ones. Claims, runs and requests are written at once; the
loop brake's counts and the addressee rows, which busy channels change on nearly every message,
are written once per commit by `flush`."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from agentchat_server.core.agentrooms import ClaimRow
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.records import Message
from agentchat_server.core.runs import RunRecord
from agentchat_server.store.room_schema import (
    channel_rooms_table,
    claim_from_row,
    claim_to_row,
    claims_table,
    message_to_table,
    request_from_row,
    request_to_row,
    requests_table,
    run_from_row,
    run_to_row,
    runs_table,
)


class RoomRows:
    """Cached reads and writes of room rows, on the transaction's connection (the caller holds
    the row lock of each channel whose rows it touches, and calls `flush` before committing)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._claims: dict[tuple[str, int], ClaimRow | None] = {}
        self._runs: dict[str, RunRecord | None] = {}
        self._requests: dict[str, RequestRecord | None] = {}
        self._turns: dict[str, tuple[int, str | None] | None] = {}  # as the row holds it (None: no row)
        self._new_turns: dict[str, tuple[int, str | None]] = {}  # changed in this commit, not written yet
        self._addressees: list[dict[str, Any]] = []
        self._addressed: set[tuple[str, int, str]] = set()

    def claim(self, channel: str, serial: int) -> ClaimRow | None:
        """The claim on a message."""
        key = (channel, serial)
        if key not in self._claims:
            c = claims_table.c
            row = self.conn.execute(
                select(claims_table).where(c.channel == channel, c.serial == serial)
            ).first()
            self._claims[key] = None if row is None else claim_from_row(row)
        return self._claims[key]

    def run(self, run_id: str) -> RunRecord | None:
        """A run by id."""
        if run_id not in self._runs:
            row = self.conn.execute(select(runs_table).where(runs_table.c.run_id == run_id)).first()
            self._runs[run_id] = None if row is None else run_from_row(row)
        return self._runs[run_id]

    def request(self, request_id: str) -> RequestRecord | None:
        """An input request by id."""
        if request_id not in self._requests:
            query = select(requests_table).where(requests_table.c.request_id == request_id)
            row = self.conn.execute(query).first()
            self._requests[request_id] = None if row is None else request_from_row(row)
        return self._requests[request_id]

    def turns(self, channel: str) -> tuple[int, str | None]:
        """The channel's agent turns since a human spoke, and the agent speaking now."""
        if channel not in self._turns:
            c = channel_rooms_table.c
            row = self.conn.execute(select(c.agent_turns, c.speaker).where(c.channel == channel)).first()
            self._turns[channel] = None if row is None else (row[0], row[1])
        if channel in self._new_turns:
            return self._new_turns[channel]
        return self._turns[channel] or (0, None)

    def addressed(self, channel: str, serial: int, client_id: str) -> bool:
        """True when message `serial` names `client_id` in its `to`."""
        if (channel, serial, client_id) in self._addressed:
            return True
        c = message_to_table.c
        query = select(c.serial).where(c.channel == channel, c.serial == serial, c.client_id == client_id)
        return self.conn.execute(query).first() is not None

    def count(self, table: Any, channel: str, statuses: tuple[str, ...]) -> int:
        """Rows of `table` (runs or requests) in the channel with one of `statuses`."""
        query = (
            select(func.count())
            .select_from(table)
            .where(table.c.channel == channel, table.c.status.in_(statuses))
        )
        return int(self.conn.execute(query).scalar_one())

    def put_claim(self, claim: ClaimRow) -> None:
        """Write a claim (insert or update)."""
        key = (claim.channel, claim.serial)
        if self.claim(*key) is None:
            self.conn.execute(insert(claims_table).values(**claim_to_row(claim)))
        else:
            c = claims_table.c
            self.conn.execute(
                update(claims_table)
                .where(c.channel == claim.channel, c.serial == claim.serial)
                .values(**claim_to_row(claim))
            )
        self._claims[key] = claim

    def put_run(self, run: RunRecord) -> None:
        """Write a run (insert or update)."""
        if self.run(run.run_id) is None:
            self.conn.execute(insert(runs_table).values(**run_to_row(run)))
        else:
            values = run_to_row(run)
            self.conn.execute(update(runs_table).where(runs_table.c.run_id == run.run_id).values(**values))
        self._runs[run.run_id] = run

    def put_request(self, request: RequestRecord) -> None:
        """Write an input request (insert or update)."""
        values = request_to_row(request)
        if self.request(request.request_id) is None:
            self.conn.execute(insert(requests_table).values(**values))
        else:
            c = requests_table.c
            self.conn.execute(
                update(requests_table).where(c.request_id == request.request_id).values(**values)
            )
        self._requests[request.request_id] = request

    def put_turns(self, channel: str, turns: int, speaker: str | None) -> None:
        """Set the loop brake's count and the agent speaking now (no row means zero); written by
        `flush`, once per channel however many turns this commit takes."""
        self.turns(channel)  # know whether the row exists
        self._new_turns[channel] = (turns, speaker)

    def human_spoke(self, channel: str) -> None:
        """A person's message was stored: the loop brake's count starts again (agents' turns
        later in the same commit count from zero)."""
        if self.turns(channel) != (0, None):
            self.put_turns(channel, 0, None)

    def address(self, message: Message) -> None:
        """Record a stored message's addressees (its `to`), for "to me" filters; written by `flush`."""
        to = None if message.extra is None else message.extra.get("to")
        for client_id in to or ():
            self._addressees.append(
                {"channel": message.channel, "serial": message.serial, "client_id": client_id}
            )
            self._addressed.add((message.channel, message.serial, client_id))

    def flush(self) -> None:
        """Write the loop brake's counts and the addressee rows this commit changed."""
        c = channel_rooms_table.c
        for channel, value in self._new_turns.items():
            stored = self._turns[channel]
            if stored is None and value != (0, None):
                self.conn.execute(
                    insert(channel_rooms_table).values(
                        channel=channel, agent_turns=value[0], speaker=value[1]
                    )
                )
            elif stored is not None and stored != value:
                update_turns = update(channel_rooms_table).where(c.channel == channel)
                self.conn.execute(update_turns.values(agent_turns=value[0], speaker=value[1]))
            self._turns[channel] = value
        self._new_turns.clear()
        if self._addressees:
            self.conn.execute(insert(message_to_table), self._addressees)
            self._addressees = []
            self._addressed.clear()

    def run_at(self, channel: str, serial: int) -> RunRecord | None:
        """The run whose start record is message `serial`."""
        row = self.conn.execute(
            select(runs_table).where(runs_table.c.channel == channel, runs_table.c.serial == serial)
        ).first()
        return None if row is None else run_from_row(row)

    def request_at(self, channel: str, serial: int) -> RequestRecord | None:
        """The input request whose record is message `serial`."""
        c = requests_table.c
        row = self.conn.execute(
            select(requests_table).where(c.channel == channel, c.serial == serial)
        ).first()
        return None if row is None else request_from_row(row)
