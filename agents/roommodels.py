"""Plain values of agent rooms: a namespace's policy, claim changes, run views, input requests."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentchat.models import Message

TERMINAL_RUN = frozenset({"completed", "failed", "cancelled", "aborted"})
"""Run statuses after which a run never changes again."""

RUN_RECORD = "agentchat.run"
REQUEST_RECORD = "agentchat.input_request"
ANSWER_RECORD = "agentchat.input_answer"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _dict(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, dict) else None


def _ids(value: Any) -> tuple[str, ...] | None:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else None


@dataclass(frozen=True, slots=True)
class Policy:
    """A namespace's settings for agents (`attached.policy`; docs/protocol.md, "Namespace policies")."""

    reply_policy: str = "open"
    loop_budget: int | None = 10
    double_texting: str = "queue"
    claim_ttl: int = 30
    input_deadline: int = 86_400

    @classmethod
    def from_wire(cls, value: Any) -> Policy:
        """The policy from an `attached` frame's `policy` (defaults for missing fields)."""
        wire = value if isinstance(value, dict) else {}
        default = cls()
        budget = wire.get("loop_budget", default.loop_budget)
        return cls(
            reply_policy=_str(wire.get("reply_policy")) or default.reply_policy,
            loop_budget=_int(budget),
            double_texting=_str(wire.get("double_texting")) or default.double_texting,
            claim_ttl=_int(wire.get("claim_ttl")) or default.claim_ttl,
            input_deadline=_int(wire.get("input_deadline")) or default.input_deadline,
        )


@dataclass(frozen=True, slots=True)
class ClaimEvent:
    """A change of one message's claim, as the room sees it: `state` is held, released, expired or
    done; `token` the fencing token (a reader keeps the highest per message)."""

    channel: str
    serial: int
    client_id: str
    token: int
    state: str
    expires_at: int | None = None
    display_name: str | None = None

    @classmethod
    def from_wire(cls, frame: dict[str, Any], channel: str) -> ClaimEvent:
        """A claim change from a live `claim` frame, or an entry of a `claims` listing (held)."""
        return cls(
            channel=str(frame.get("channel") or channel),
            serial=_int(frame.get("serial")) or 0,
            client_id=str(frame.get("client_id", "")),
            token=_int(frame.get("token")) or 0,
            state=_str(frame.get("state")) or "held",
            expires_at=_int(frame.get("expires_at")),
            display_name=_str(frame.get("display_name")),
        )


@dataclass(frozen=True, slots=True)
class RunUpdate:
    """What a reader knows of one run now: its status (`version` grows with each change), who writes
    it, what it answers, how it ended, and its shared `state` (snapshot with deltas applied).

    `status` is running, input_required, completed, failed (with `error`), cancelled (with
    `cancelled_by`) or aborted (the writer was lost). `pending` counts its open input requests.
    """

    run_id: str
    channel: str
    status: str
    version: int
    client_id: str = ""
    kind: str = "agent"
    display_name: str | None = None
    serial: int | None = None
    ts: int = 0
    pending: int = 0
    writer: str | None = None
    requester: str | None = None
    reply_to: int | None = None
    parent: str | None = None
    error: dict[str, Any] | None = None
    cancelled_by: str | None = None
    result: Any = None
    state: Any = field(default=None, compare=False)

    @property
    def done(self) -> bool:
        """True once the run ended (completed, failed, cancelled or aborted)."""
        return self.status in TERMINAL_RUN

    @classmethod
    def from_wire(cls, frame: dict[str, Any], channel: str, state: Any = None) -> RunUpdate:
        """A run from a `run_status` or `run_snapshot` frame (`state` as the reader assembled it)."""
        return cls(
            run_id=str(frame.get("run_id", "")),
            channel=str(frame.get("channel") or channel),
            status=_str(frame.get("status")) or "running",
            version=_int(frame.get("version")) or 0,
            client_id=str(frame.get("client_id", "")),
            kind=str(frame.get("kind", "agent")),
            display_name=_str(frame.get("display_name")),
            serial=_int(frame.get("serial")),
            ts=_int(frame.get("ts")) or 0,
            pending=_int(frame.get("pending")) or 0,
            writer=_str(frame.get("writer")),
            requester=_str(frame.get("requester")),
            reply_to=_int(frame.get("reply_to")),
            parent=_str(frame.get("parent_run_id")),
            error=_dict(frame.get("error")),
            cancelled_by=_str(frame.get("cancelled_by")),
            state=state,
        )


@dataclass(frozen=True, slots=True)
class InputAnswer:
    """The answer that closed an input request: `outcome` (approve, deny, answer, expired, ...) and
    `data`, from `client_id` (`agentchat` when it expired) in the message at `serial`."""

    request_id: str
    outcome: str
    data: Any = None
    client_id: str = ""
    ts: int = 0
    serial: int | None = None
    run_id: str | None = None

    @property
    def approved(self) -> bool:
        """True when the outcome is `approve`."""
        return self.outcome == "approve"

    @classmethod
    def from_wire(cls, value: dict[str, Any], request_id: str) -> InputAnswer:
        """An answer from a `requests` entry's `answer`."""
        return cls(
            request_id=request_id,
            outcome=str(value.get("outcome", "")),
            data=value.get("data"),
            client_id=str(value.get("client_id", "")),
            ts=_int(value.get("ts")) or 0,
            serial=_int(value.get("serial")),
            run_id=_str(value.get("run_id")),
        )

    @classmethod
    def from_message(cls, message: Message) -> InputAnswer | None:
        """The answer an `agentchat.input_answer` message carries (None for any other message)."""
        if message.name != ANSWER_RECORD or message.request_id is None or not isinstance(message.data, dict):
            return None
        return cls(
            request_id=message.request_id,
            outcome=str(message.data.get("outcome", "")),
            data=message.data.get("data"),
            client_id=message.client_id,
            ts=message.ts,
            serial=message.serial,
            run_id=message.run_id,
        )


@dataclass(frozen=True, slots=True)
class InputRequest:
    """An input request (approval or question) of a channel: `shape` says how to answer it
    (`{"kind": "approval" | "choice" | "text" | "json", ...}`); `status` pending, answered or expired."""

    request_id: str
    channel: str
    prompt: str
    shape: dict[str, Any]
    deadline: int
    status: str = "pending"
    serial: int | None = None
    client_id: str = ""
    ts: int = 0
    data: Any = None
    to: tuple[str, ...] | None = None
    run_id: str | None = None
    answer: InputAnswer | None = None

    @classmethod
    def from_wire(cls, value: dict[str, Any], channel: str) -> InputRequest:
        """A request from an entry of a `requests` listing."""
        request_id = str(value.get("request_id", ""))
        answer = value.get("answer")
        return cls(
            request_id=request_id,
            channel=str(value.get("channel") or channel),
            prompt=str(value.get("prompt", "")),
            shape=_dict(value.get("shape")) or {"kind": "approval"},
            deadline=_int(value.get("deadline")) or 0,
            status=_str(value.get("status")) or "pending",
            serial=_int(value.get("serial")),
            client_id=str(value.get("client_id", "")),
            ts=_int(value.get("ts")) or 0,
            data=value.get("data"),
            to=_ids(value.get("to")),
            run_id=_str(value.get("run_id")),
            answer=InputAnswer.from_wire(answer, request_id) if isinstance(answer, dict) else None,
        )

    @classmethod
    def from_message(cls, message: Message) -> InputRequest | None:
        """The request an `agentchat.input_request` record carries (None for any other message)."""
        if message.name != REQUEST_RECORD or message.request_id is None or not isinstance(message.data, dict):
            return None
        data = message.data
        return cls(
            request_id=message.request_id,
            channel=message.channel,
            prompt=str(data.get("prompt", "")),
            shape=_dict(data.get("shape")) or {"kind": "approval"},
            deadline=_int(data.get("deadline")) or 0,
            serial=message.serial,
            client_id=message.client_id,
            ts=message.ts,
            data=data.get("data"),
            to=message.to,
            run_id=message.run_id,
        )
