"""Agent-room operations of a group commit: the rules an Append is checked against in its
transaction (`RoomWrite`), what it changes besides messages (effects), and claim and run changes.

The broker builds these; `store.room_batch.RoomBatch` carries them out under the channel's row
lock, so a claim's fencing token, a run's writer and the loop brake's count are compare-and-set
in the same transaction as the messages they guard, whatever node commits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentchat_server.core.agentrooms import Claimant, ClaimRow, Turn
from agentchat_server.core.inputs import RequestRecord
from agentchat_server.core.refusal import Refusal
from agentchat_server.core.runs import RunRecord

MAX_RUN_DEPTH = 8  # sub-runs of sub-runs: a run's depth below its top run


@dataclass(slots=True)
class RunStart:
    """Insert the run (its `serial` is the start record's, filled in by the commit)."""

    run: RunRecord
    max_runs: int


@dataclass(slots=True)
class RunEnd:
    """End the run (`session` None: whoever ends it need not be its writer, as a member's cancel)."""

    run_id: str
    status: str
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    session: str | None = None


@dataclass(slots=True)
class LoseWriter:
    """The run's writer session ended: park the run if it waits for input, else end it aborted."""

    run_id: str
    session: str


@dataclass(slots=True)
class AskInput:
    """Insert the input request (serial filled in); its run, if any, waits for input."""

    request: RequestRecord
    max_open: int


@dataclass(slots=True)
class CloseInput:
    """Close a pending request: answered (`answer` says how) or expired."""

    request_id: str
    status: str
    answer: dict[str, Any]


Effect = RunStart | RunEnd | LoseWriter | AskInput | CloseInput


@dataclass(slots=True)
class RoomWrite:
    """The room rules of one write: turns (loop brake), the reply policy, the claim it answers,
    the run it belongs to, and its effect. `soft_claim` / `soft_run`: a failed claim or run check
    still stores the message (a stream's or run's end), as `aborted` with the error, instead of
    refusing it. Without `session`, a run write is not checked for its writer (a member's cancel)."""

    writer: str
    kind: str
    now: int
    turn: Turn | None = None
    budget: int | None = None
    replies: tuple[int, ...] = ()  # the messages it answers (with `token`, the one claimed)
    addressed_only: bool = False
    token: int | None = None
    finish: str | None = None  # what success does to the answered claim: "done" or "released"
    soft_claim: bool = False
    soft_run: bool = False
    run_id: str | None = None
    session: str | None = None
    effect: Effect | None = None
    to: list[str] | None = None


@dataclass(slots=True)
class ClaimChange:
    """Claim, renew, release or expire a message's claim."""

    channel: str
    serial: int
    now: int
    claimant: Claimant | None = None  # claim or renew
    release: tuple[str, int] | None = None  # (holder, token) giving it up
    expire_token: int | None = None  # the lapsed lease's token, when the sweep ends it


@dataclass(slots=True)
class ClaimResult:
    """A claim change: the claim now (`changed` when the commit wrote it), or why it was refused."""

    claim: ClaimRow | None
    refusal: Refusal | None = None
    changed: bool = False


@dataclass(slots=True)
class RunChange:
    """A session of the run's client takes the run over (`run_resume`)."""

    channel: str
    run_id: str
    client_id: str
    session: str
    node: str
    lease_until: int


@dataclass(slots=True)
class RunResult:
    """A run change: the run now, or why it was refused."""

    run: RunRecord | None
    refusal: Refusal | None = None
