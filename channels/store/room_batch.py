"""The agent-room part of one group-commit transaction: checks before messages are stored, and the
rows that change with them (loop-brake counts, claims, runs, input requests, addressees).

Called by `store.batch.Batch`, which holds the row lock of every channel involved, so these rows
have one writer at a time on PostgreSQL as on SQLite. Reads are cached for the transaction and
every change is written at once, so later operations of the same commit see earlier ones.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from agentchat_server.core import inputs, runs
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.records import Message, NewMessage
from agentchat_server.core.rooms import (
    ClaimRow,
    Refusal,
    brake,
    brake_notice,
    check_reply,
    decide_claim,
    decide_release,
)
from agentchat_server.core.runs import RunRecord
from agentchat_server.protocol import Code, encode_value
from agentchat_server.store.room_ops import (
    MAX_RUN_DEPTH,
    AskInput,
    ClaimChange,
    ClaimResult,
    CloseInput,
    LoseWriter,
    RoomWrite,
    RunChange,
    RunEnd,
    RunResult,
    RunStart,
)
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

RUN_RECORD = "agentchat.run"  # event name of a run's start and end records


@dataclass(slots=True)
class Checked:
    """The outcome of a write's checks: refused (with notices to store), skipped, or go (with the
    messages to store, downgraded to `aborted` when a soft check failed)."""

    refusal: Refusal | None = None
    notices: list[NewMessage] = field(default_factory=list)
    skip: bool = False  # nothing to store (a parked run); `run` says what changed
    messages: list[NewMessage] = field(default_factory=list)
    failed: Refusal | None = None  # a soft check failed
    turns: tuple[int, str | None] | None = None  # the loop brake's new count and speaker
    run: RunRecord | None = None
    claim: ClaimRow | None = None  # the claim the write answers, as checked


@dataclass(slots=True)
class Outcome:
    """What a write changed besides its messages."""

    claims: list[ClaimRow] = field(default_factory=list)
    run: RunRecord | None = None
    request: RequestRecord | None = None


class RoomBatch:
    """Room rows of one transaction (see the module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._claims: dict[tuple[str, int], ClaimRow | None] = {}
        self._runs: dict[str, RunRecord | None] = {}
        self._requests: dict[str, RequestRecord | None] = {}
        self._turns: dict[str, tuple[int, str | None] | None] = {}

    # --- reads (cached for the transaction) ---------------------------------------------------

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

    def _turn_count(self, channel: str) -> tuple[int, str | None]:
        """The channel's agent turns since a human spoke, and the agent speaking now."""
        if channel not in self._turns:
            c = channel_rooms_table.c
            row = self.conn.execute(select(c.agent_turns, c.speaker).where(c.channel == channel)).first()
            self._turns[channel] = None if row is None else (row[0], row[1])
        return self._turns[channel] or (0, None)

    def _addressed(self, channel: str, serial: int, client_id: str) -> bool:
        c = message_to_table.c
        query = select(c.serial).where(c.channel == channel, c.serial == serial, c.client_id == client_id)
        return self.conn.execute(query).first() is not None

    def _count(self, table: Any, channel: str, statuses: tuple[str, ...]) -> int:
        query = (
            select(func.count())
            .select_from(table)
            .where(table.c.channel == channel, table.c.status.in_(statuses))
        )
        return int(self.conn.execute(query).scalar_one())

    # --- writes (at once) ---------------------------------------------------------------------

    def _put_claim(self, claim: ClaimRow) -> None:
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

    def _put_run(self, run: RunRecord) -> None:
        if self.run(run.run_id) is None:
            self.conn.execute(insert(runs_table).values(**run_to_row(run)))
        else:
            values = run_to_row(run)
            self.conn.execute(update(runs_table).where(runs_table.c.run_id == run.run_id).values(**values))
        self._runs[run.run_id] = run

    def _put_request(self, request: RequestRecord) -> None:
        values = request_to_row(request)
        if self.request(request.request_id) is None:
            self.conn.execute(insert(requests_table).values(**values))
        else:
            c = requests_table.c
            self.conn.execute(
                update(requests_table).where(c.request_id == request.request_id).values(**values)
            )
        self._requests[request.request_id] = request

    def _put_turns(self, channel: str, turns: int, speaker: str | None) -> None:
        c = channel_rooms_table.c
        known = self._turn_count(channel)
        if self._turns[channel] is None:
            if turns == 0:
                return  # no row counts as zero: a human's message in a quiet channel writes nothing
            self.conn.execute(
                insert(channel_rooms_table).values(channel=channel, agent_turns=turns, speaker=speaker)
            )
        elif known != (turns, speaker):
            update_turns = update(channel_rooms_table).where(c.channel == channel)
            self.conn.execute(update_turns.values(agent_turns=turns, speaker=speaker))
        self._turns[channel] = (turns, speaker)

    def human_spoke(self, channel: str) -> None:
        """A person's message was stored: the loop brake's count starts again (agents' turns
        later in the same commit count from zero)."""
        if self._turn_count(channel) != (0, None):
            self._put_turns(channel, 0, None)

    def address(self, message: Message) -> None:
        """Record a stored message's addressees (its `to`), for "to me" filters."""
        to = None if message.extra is None else message.extra.get("to")
        if to:
            rows = [{"channel": message.channel, "serial": message.serial, "client_id": c} for c in to]
            self.conn.execute(insert(message_to_table), rows)

    # --- claim and run changes ----------------------------------------------------------------

    def claim_change(self, op: ClaimChange) -> ClaimResult:
        """Claim, renew, release or expire a message's claim."""
        row = self.claim(op.channel, op.serial)
        if op.claimant is not None:
            decided = decide_claim(row, op.claimant, op.channel, op.serial, op.now)
        elif op.release is not None:
            decided = decide_release(row, op.release[0], op.release[1], op.now)
        else:
            if row is None or row.state != "held" or row.token != op.expire_token or row.expires_at > op.now:
                return ClaimResult(row)  # renewed, released or taken meanwhile: nothing to announce
            decided = dataclasses.replace(row, state="expired")
        if isinstance(decided, Refusal):
            return ClaimResult(row, decided)
        self._put_claim(decided)
        return ClaimResult(decided, changed=True)

    def run_change(self, op: RunChange) -> RunResult:
        """A session of the run's client takes the run over."""
        run = self.run(op.run_id)
        if run is None or run.channel != op.channel or not run.active:
            return RunResult(run, Refusal(Code.RUN_NOT_FOUND, "run not found or ended"))
        if run.client_id != op.client_id:
            return RunResult(run, Refusal(Code.NOT_RUN_WRITER, "only the run's own client may resume it"))
        run = runs.resumed(run, op.session)
        self._put_run(run)
        return RunResult(run)

    # --- checks before a write ----------------------------------------------------------------

    def check(self, w: RoomWrite, channel: str, messages: list[NewMessage], next_serial: int) -> Checked:
        """Check a write against the room's rules; the brake counts last, so a refused write
        never spends a turn."""
        out = Checked(messages=list(messages))
        run: RunRecord | None = None
        if w.run_id is not None:
            run = self.run(w.run_id)
            # A lane may close after its run ended (a cancel from another node): only its writer counts.
            refusal = _run_refusal(run, channel, w, active=not w.soft_run)
            if refusal is not None:
                if not w.soft_run:
                    return Checked(refusal)
                out.failed = refusal
            out.run = run
        refusal = self._check_effect(w, channel, run, out)
        if refusal is not None:
            return Checked(refusal)
        if out.skip:
            return out
        replies, token = w.replies, w.token
        if run is not None and token is None:
            replies, token = (() if run.reply_to is None else (run.reply_to,)), run.claim_token
        if w.kind == "agent" and out.failed is None:
            for reply_to in replies:
                claim = self.claim(channel, reply_to)
                refusal = check_reply(claim, w.writer, token, w.now)
                if refusal is None and w.addressed_only and token is None:
                    if not self._addressed(channel, reply_to, w.writer):
                        refusal = Refusal(
                            Code.REPLY_NOT_ALLOWED, "replies here answer a message to you, or one you claimed"
                        )
                if refusal is not None:
                    if not w.soft_claim:
                        return Checked(refusal)
                    out.failed = refusal
                    break
                if token is not None:
                    out.claim = claim
        if w.turn is not None:
            turns, speaker = self._turn_count(channel)
            decided = brake(turns, speaker, w.budget, w.turn, w.writer)
            if not decided.allowed:
                notices = []
                if decided.notice:
                    assert w.budget is not None
                    notice_id = (
                        f"loop_brake:{next_serial}:{secrets.token_hex(6)}"  # no member can pre-empt it
                    )
                    notices.append(brake_notice(notice_id, w.budget, w.writer, w.now))
                    self._put_turns(channel, decided.turns, decided.speaker)
                return Checked(
                    Refusal(
                        Code.LOOP_BRAKE,
                        "too many agent turns without a human message: wait for a person to speak",
                        {"budget": w.budget},
                    ),
                    notices,
                )
            out.turns = (decided.turns, decided.speaker)
        if out.failed is not None:
            out.messages = [_downgrade(m, out.failed) for m in out.messages]
        return out

    def _check_effect(
        self, w: RoomWrite, channel: str, run: RunRecord | None, out: Checked
    ) -> Refusal | None:
        effect = w.effect
        if isinstance(effect, RunStart):
            parent_id = effect.run.parent_id
            if parent_id is not None:
                parent = self.run(parent_id)
                if parent is None or parent.channel != channel or not parent.active:
                    return Refusal(Code.RUN_NOT_FOUND, "the parent run is not an active run of this channel")
                if parent.depth + 1 > MAX_RUN_DEPTH:
                    return Refusal(Code.INVALID_VALUE, f"runs nest at most {MAX_RUN_DEPTH} deep")
            if self._count(runs_table, channel, tuple(runs.ACTIVE)) >= effect.max_runs:
                return Refusal(Code.TOO_MANY_RUNS, f"at most {effect.max_runs} active runs per channel")
        elif isinstance(effect, AskInput):
            if self._count(requests_table, channel, ("pending",)) >= effect.max_open:
                return Refusal(
                    Code.TOO_MANY_REQUESTS, f"at most {effect.max_open} pending requests per channel"
                )
        elif isinstance(effect, CloseInput):
            request = self.request(effect.request_id)
            if request is None or request.channel != channel:
                return Refusal(Code.REQUEST_NOT_FOUND, "input request not found")
            if request.status != "pending":
                details = {"status": request.status, **({"answer": request.answer} if request.answer else {})}
                return Refusal(Code.REQUEST_CLOSED, "the request is closed already", details)
            if effect.status == "expired" and request.deadline > w.now:
                return Refusal(Code.REQUEST_CLOSED, "the request's deadline has not passed")
        elif isinstance(effect, LoseWriter):
            if run is not None and run.status == "input_required":
                out.run = runs.writer_lost(run)
                out.skip = True
                self._put_run(out.run)
        return None

    # --- effects after a write ----------------------------------------------------------------

    def apply(self, w: RoomWrite, channel: str, checked: Checked, stored: list[Message]) -> Outcome:
        """Write what the stored messages change: the brake's count, the answered claim, the effect."""
        out = Outcome()
        if checked.turns is not None:
            self._put_turns(channel, *checked.turns)
        if checked.skip:
            out.run = checked.run
            return out
        serial = stored[0].serial if stored else 0
        effect = w.effect
        run = checked.run
        finish = w.finish
        if isinstance(effect, RunStart):
            parent = None if effect.run.parent_id is None else self.run(effect.run.parent_id)
            depth = 0 if parent is None else parent.depth + 1
            run = dataclasses.replace(effect.run, serial=serial, depth=depth)
            self._put_run(run)
            out.run = run
        elif isinstance(effect, RunEnd | LoseWriter) and run is not None:
            if isinstance(effect, RunEnd) and checked.failed is None:
                run = runs.ended(run, effect.status, effect.error, effect.cancelled_by)
            else:
                error = None if checked.failed is None else _error(checked.failed)
                run = runs.ended(run, "aborted", error, None)
            finish = "done" if run.status == "completed" else "released"
            self._put_run(run)
            out.run = run
            if run.claim_token is not None and run.reply_to is not None and checked.failed is None:
                checked.claim = self.claim(channel, run.reply_to)
        elif isinstance(effect, AskInput):
            request = dataclasses.replace(effect.request, serial=serial)
            self._put_request(request)
            out.request = request
            if run is not None:
                out.run = runs.asked(run)
                self._put_run(out.run)
        elif isinstance(effect, CloseInput):
            asked = self.request(effect.request_id)
            assert asked is not None
            answer = {**effect.answer, "serial": serial}
            out.request = inputs.closed(asked, effect.status, answer)
            self._put_request(out.request)
            if asked.run_id is not None:
                owner = self.run(asked.run_id)
                if owner is not None and owner.active:
                    out.run = runs.request_closed(owner)
                    self._put_run(out.run)
        claim = checked.claim
        if finish is not None and claim is not None and checked.failed is None and claim.state == "held":
            claim = dataclasses.replace(claim, state="done" if finish == "done" else "released")
            self._put_claim(claim)
            out.claims.append(claim)
        return out

    def existing(self, w: RoomWrite, channel: str, serial: int) -> Outcome:
        """The outcome of a write whose messages all existed already (a retry): the run or
        request the first write made."""
        out = Outcome()
        if isinstance(w.effect, RunStart):
            row = self.conn.execute(
                select(runs_table).where(runs_table.c.channel == channel, runs_table.c.serial == serial)
            ).first()
            out.run = None if row is None else run_from_row(row)
        elif isinstance(w.effect, AskInput):
            c = requests_table.c
            row = self.conn.execute(
                select(requests_table).where(c.channel == channel, c.serial == serial)
            ).first()
            out.request = None if row is None else request_from_row(row)
        return out


def _run_refusal(run: RunRecord | None, channel: str, w: RoomWrite, *, active: bool) -> Refusal | None:
    if run is None or run.channel != channel or (active and not run.active):
        return Refusal(Code.RUN_NOT_FOUND, "run not found or ended")
    if w.session is not None and run.writer != w.session:
        return Refusal(Code.NOT_RUN_WRITER, "this connection does not write the run (see run_resume)")
    return None


def _error(refusal: Refusal) -> dict[str, Any]:
    return {"code": str(refusal.code), "message": refusal.message}


def _downgrade(message: NewMessage, refusal: Refusal) -> NewMessage:
    """A message a soft check refused, stored `aborted` with why (a stream's end, a run's end)."""
    error = _error(refusal)
    if message.name == RUN_RECORD and isinstance(message.data, dict):
        data = {**message.data, "status": "aborted", "error": error}
        return dataclasses.replace(message, data=data, data_json=encode_value(data))
    extra = {**(message.extra or {}), "error": error}
    return dataclasses.replace(message, status="aborted", extra=extra, extra_json=encode_value(extra))
