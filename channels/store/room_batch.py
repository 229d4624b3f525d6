"""The agent-room rules of one group-commit transaction: checks before messages are stored, and
what changes with them (loop-brake counts, claims, runs, input requests), through `RoomRows`.

Called by `store.batch.Batch`, which holds the row lock of every channel involved, so these rows
have one writer at a time on PostgreSQL as on SQLite.
"""

from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from typing import Any

from agentchat_server.core import inputs, runs
from agentchat_server.core.agentrooms import (
    ClaimRow,
    brake,
    brake_notice,
    check_reply,
    decide_claim,
    decide_release,
)
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.records import Message, NewMessage
from agentchat_server.core.refusal import Refusal
from agentchat_server.core.runs import RUN_RECORD, RunRecord
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
from agentchat_server.store.room_rows import RoomRows
from agentchat_server.store.room_schema import (
    requests_table,
    runs_table,
)


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
    """The room rules of one transaction (see the module docstring)."""

    def __init__(self, rows: RoomRows) -> None:
        self.rows = rows

    # --- claim and run changes ----------------------------------------------------------------

    def claim_change(self, op: ClaimChange) -> ClaimResult:
        """Claim, renew, release or expire a message's claim."""
        row = self.rows.claim(op.channel, op.serial)
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
        self.rows.put_claim(decided)
        return ClaimResult(decided, changed=True)

    def run_change(self, op: RunChange) -> RunResult:
        """A session of the run's client takes the run over."""
        run = self.rows.run(op.run_id)
        if run is None or run.channel != op.channel or not run.active:
            return RunResult(run, Refusal(Code.RUN_NOT_FOUND, "run not found or ended"))
        if run.client_id != op.client_id:
            return RunResult(run, Refusal(Code.NOT_RUN_WRITER, "only the run's own client may resume it"))
        run = runs.resumed(run, op.session, op.node, op.lease_until)
        self.rows.put_run(run)
        return RunResult(run)

    # --- checks before a write ----------------------------------------------------------------

    def check(self, w: RoomWrite, channel: str, messages: list[NewMessage], next_serial: int) -> Checked:
        """Check a write against the room's rules; the brake counts last, so a refused write
        never spends a turn."""
        out = Checked(messages=list(messages))
        run: RunRecord | None = None
        if w.run_id is not None:
            run = self.rows.run(w.run_id)
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
                claim = self.rows.claim(channel, reply_to)
                refusal = check_reply(claim, w.writer, token, w.now)
                if refusal is None and w.addressed_only and token is None:
                    if not self.rows.addressed(channel, reply_to, w.writer):
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
            turns, speaker = self.rows.turns(channel)
            decided = brake(turns, speaker, w.budget, w.turn, w.writer)
            if not decided.allowed:
                notices = []
                if decided.notice:
                    assert w.budget is not None
                    notice_id = (
                        f"loop_brake:{next_serial}:{secrets.token_hex(6)}"  # no member can pre-empt it
                    )
                    notices.append(brake_notice(notice_id, w.budget, w.writer, w.now))
                    self.rows.put_turns(channel, decided.turns, decided.speaker)
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
                parent = self.rows.run(parent_id)
                if parent is None or parent.channel != channel or not parent.active:
                    return Refusal(Code.RUN_NOT_FOUND, "the parent run is not an active run of this channel")
                if parent.depth + 1 > MAX_RUN_DEPTH:
                    return Refusal(Code.INVALID_VALUE, f"runs nest at most {MAX_RUN_DEPTH} deep")
            if self.rows.count(runs_table, channel, tuple(runs.ACTIVE)) >= effect.max_runs:
                return Refusal(Code.TOO_MANY_RUNS, f"at most {effect.max_runs} active runs per channel")
        elif isinstance(effect, AskInput):
            if self.rows.count(requests_table, channel, ("pending",)) >= effect.max_open:
                return Refusal(
                    Code.TOO_MANY_REQUESTS, f"at most {effect.max_open} pending requests per channel"
                )
        elif isinstance(effect, CloseInput):
            request = self.rows.request(effect.request_id)
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
                self.rows.put_run(out.run)
        return None

    # --- effects after a write ----------------------------------------------------------------

    def apply(self, w: RoomWrite, channel: str, checked: Checked, stored: list[Message]) -> Outcome:
        """Write what the stored messages change: the brake's count, the answered claim, the effect."""
        out = Outcome()
        if checked.turns is not None:
            self.rows.put_turns(channel, *checked.turns)
        if checked.skip:
            out.run = checked.run
            return out
        serial = stored[0].serial if stored else 0
        effect = w.effect
        run = checked.run
        finish = w.finish
        if isinstance(effect, RunStart):
            parent = None if effect.run.parent_id is None else self.rows.run(effect.run.parent_id)
            depth = 0 if parent is None else parent.depth + 1
            run = dataclasses.replace(effect.run, serial=serial, depth=depth)
            self.rows.put_run(run)
            out.run = run
        elif isinstance(effect, RunEnd | LoseWriter) and run is not None:
            if isinstance(effect, RunEnd) and checked.failed is None:
                run = runs.ended(run, effect.status, effect.error, effect.cancelled_by)
            else:
                error = None if checked.failed is None else _error(checked.failed)
                run = runs.ended(run, "aborted", error, None)
            finish = "done" if run.status == "completed" else "released"
            self.rows.put_run(run)
            out.run = run
            if run.claim_token is not None and run.reply_to is not None and checked.failed is None:
                checked.claim = self.rows.claim(channel, run.reply_to)
        elif isinstance(effect, AskInput):
            request = dataclasses.replace(effect.request, serial=serial)
            self.rows.put_request(request)
            out.request = request
            if run is not None:
                out.run = runs.asked(run)
                self.rows.put_run(out.run)
        elif isinstance(effect, CloseInput):
            asked = self.rows.request(effect.request_id)
            assert asked is not None
            answer = {**effect.answer, "serial": serial}
            out.request = inputs.closed(asked, effect.status, answer)
            self.rows.put_request(out.request)
            if asked.run_id is not None:
                owner = self.rows.run(asked.run_id)
                if owner is not None and owner.active:
                    out.run = runs.request_closed(owner)
                    self.rows.put_run(out.run)
        claim = checked.claim
        if finish is not None and claim is not None and checked.failed is None and claim.state == "held":
            claim = dataclasses.replace(claim, state="done" if finish == "done" else "released")
            self.rows.put_claim(claim)
            out.claims.append(claim)
        return out

    def existing(self, w: RoomWrite, channel: str, serial: int) -> Outcome:
        """The outcome of a write whose messages all existed already (a retry): the run or
        request the first write made."""
        out = Outcome()
        if isinstance(w.effect, RunStart):
            out.run = self.rows.run_at(channel, serial)
        elif isinstance(w.effect, AskInput):
            out.request = self.rows.request_at(channel, serial)
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
