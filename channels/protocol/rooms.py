"""Client frames of agent rooms: addressing fields, claims, runs, input requests (approvals, questions).

`docs/protocol.md` ("Agent rooms") is the prose contract. The fields that ride on existing frames
(`to`, `claim`, `run_id`, `lane`, `tool_call`, `filter`, `error`) are defined here and used by
`protocol.frames`; the frames of their own are `ROOM_FRAMES` (type names `ROOM_FRAME_TYPES`).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, JsonValue, model_validator

from agentchat_server.protocol.codes import MAX_SERIAL
from agentchat_server.protocol.fields import ChannelName, ClientId, MessageId, Ref, Serial, StrictFrame

RESERVED_PREFIX = "agentchat."  # event names of the server's own records (runs, input requests, notices)
MAX_ADDRESSEES = 32


def _not_reserved(name: str) -> str:
    if name.startswith(RESERVED_PREFIX):
        raise ValueError(f"event names starting with {RESERVED_PREFIX!r} are the server's")
    return name


def _unique(ids: list[str]) -> list[str]:
    if len(set(ids)) != len(ids):
        raise ValueError("client ids must not repeat")
    return ids


ClientEventName = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_not_reserved)]
Addressees = Annotated[
    list[ClientId], Field(min_length=1, max_length=MAX_ADDRESSEES), AfterValidator(_unique)
]
ClaimToken = Annotated[int, Field(ge=1, le=MAX_SERIAL)]
RunId = Annotated[str, Field(min_length=1, max_length=64)]
RequestId = Annotated[str, Field(min_length=1, max_length=64)]
Lane = Literal["text", "reasoning", "tool_call", "tool_result"]
StreamLane = Literal["text", "reasoning", "tool_call"]
Filter = Literal["all", "to_me"]
Seconds = Annotated[int, Field(ge=1, le=30 * 86_400)]


class ToolCall(StrictFrame):
    """A tool call of a run: its id (unique in the run) and, on the `tool_call` lane, its tool's name."""

    id: str = Field(min_length=1, max_length=64)
    name: str | None = Field(default=None, min_length=1, max_length=64)


class ErrorInfo(StrictFrame):
    """Why a stream or run failed: a message for people and an optional machine-readable code."""

    message: str = Field(min_length=1, max_length=1000)
    code: str | None = Field(default=None, min_length=1, max_length=64)


def check_run_fields(
    *,
    run_id: str | None,
    lane: str | None,
    tool_call: ToolCall | None,
    claim: int | None,
    reply_to: int | None,
) -> None:
    """The rules tying a message's or stream's room fields together; raises ValueError."""
    if lane is not None and run_id is None:
        raise ValueError("lane needs run_id")
    if claim is not None and reply_to is None:
        raise ValueError("claim needs reply_to (the claimed message)")
    if claim is not None and run_id is not None:
        raise ValueError("a run's messages carry the run's claim: give claim on run_start only")
    needs_call = lane in ("tool_call", "tool_result")
    if needs_call != (tool_call is not None):
        raise ValueError("tool_call is given on the tool_call and tool_result lanes, and only there")
    if lane == "tool_call" and tool_call is not None and tool_call.name is None:
        raise ValueError("tool_call.name is needed on the tool_call lane")


# --- claims ---------------------------------------------------------------------------------------


class ClaimFrame(StrictFrame):
    """Claim message `serial` (or renew one's lease on it by giving its `token`)."""

    type: Literal["claim"]
    ref: Ref
    channel: ChannelName
    serial: Annotated[int, Field(ge=1, le=MAX_SERIAL)]
    token: ClaimToken | None = None
    ttl: Seconds | None = None


class ClaimReleaseFrame(StrictFrame):
    """Give a claim up (the holder, with its token): others may claim the message again."""

    type: Literal["claim_release"]
    ref: Ref
    channel: ChannelName
    serial: Annotated[int, Field(ge=1, le=MAX_SERIAL)]
    token: ClaimToken


class ClaimsFrame(StrictFrame):
    """List the channel's held claims, a page at a time (after a serial)."""

    type: Literal["claims"]
    ref: Ref
    channel: ChannelName
    after: Serial | None = None


# --- runs -----------------------------------------------------------------------------------------


class RunStartFrame(StrictFrame):
    """Start a run: what one agent does for one request (text, reasoning and tool-call lanes)."""

    type: Literal["run_start"]
    ref: Ref
    channel: ChannelName
    id: MessageId | None = None  # idempotency key of the run's start record
    reply_to: Serial | None = None
    claim: ClaimToken | None = None
    parent: RunId | None = None
    to: Addressees | None = None

    @model_validator(mode="after")
    def _claim_needs_reply_to(self) -> Self:
        if self.claim is not None and self.reply_to is None:
            raise ValueError("claim needs reply_to (the claimed message)")
        return self


class RunEndFrame(StrictFrame):
    """End one's run: completed (with an optional result), failed (with the error) or cancelled."""

    type: Literal["run_end"]
    ref: Ref
    run_id: RunId
    status: Literal["completed", "failed", "cancelled"]
    error: ErrorInfo | None = None
    result: JsonValue = None

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if (self.status == "failed") != (self.error is not None):
            raise ValueError("error is given when, and only when, status is failed")
        return self


class RunStateFrame(StrictFrame):
    """Share a run's state with the room: a whole `snapshot`, or a `delta` (JSON Patch operations)."""

    type: Literal["run_state"]
    ref: Ref | None = None
    run_id: RunId
    snapshot: JsonValue = None
    delta: list[dict[str, JsonValue]] | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _one_of(self) -> Self:
        if (self.snapshot is None) == (self.delta is None):
            raise ValueError("give either snapshot or delta")
        if self.delta is not None:
            for op in self.delta:
                if op.get("op") not in ("add", "remove", "replace", "move", "copy", "test"):
                    raise ValueError("each delta operation has an RFC 6902 op")
                if not isinstance(op.get("path"), str):
                    raise ValueError("each delta operation has a path")
        return self


class RunCancelFrame(StrictFrame):
    """Cancel a run (its writer, or any member with `cancel`)."""

    type: Literal["run_cancel"]
    ref: Ref
    run_id: RunId


class RunResumeFrame(StrictFrame):
    """Take one's run over on this connection (after a restart, or to carry on after input)."""

    type: Literal["run_resume"]
    ref: Ref
    run_id: RunId


# --- input requests (approvals and questions) ----------------------------------------------------


class ApprovalShape(StrictFrame):
    """Answered with approve or deny."""

    kind: Literal["approval"]


class ChoiceShape(StrictFrame):
    """Answered with one of `options` (or deny)."""

    kind: Literal["choice"]
    options: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _distinct(self) -> Self:
        _unique(self.options)
        return self


class TextShape(StrictFrame):
    """Answered with a string (or deny)."""

    kind: Literal["text"]


class JsonShape(StrictFrame):
    """Answered with any JSON value (or deny)."""

    kind: Literal["json"]


Shape = Annotated[ApprovalShape | ChoiceShape | TextShape | JsonShape, Field(discriminator="kind")]


class AskFrame(StrictFrame):
    """Ask the room for input: a durable request with a prompt, the answer's shape and a deadline."""

    type: Literal["ask"]
    ref: Ref
    channel: ChannelName
    prompt: str = Field(min_length=1, max_length=4000)
    shape: Shape = Field(default_factory=lambda: ApprovalShape(kind="approval"))
    data: JsonValue = None  # context for the people answering (e.g. the tool call to approve)
    deadline: Seconds | None = None
    run_id: RunId | None = None
    to: Addressees | None = None  # only these members may answer
    id: MessageId | None = None  # idempotency key of the request's record


class AnswerBody(StrictFrame):
    """An answer to an input request: approve, deny, or data of the request's shape."""

    outcome: Literal["approve", "deny", "data"]
    data: JsonValue = None


class AnswerFrame(AnswerBody):
    """Answer an input request (needs `answer`; the first answer wins)."""

    type: Literal["answer"]
    ref: Ref
    channel: ChannelName
    request_id: RequestId


class RequestsFrame(StrictFrame):
    """List the channel's input requests: pending (default), closed or any; `mine` for one's own."""

    type: Literal["requests"]
    ref: Ref
    channel: ChannelName
    status: Literal["pending", "closed", "any"] = "pending"
    mine: bool = False
    after: Serial | None = None
    limit: int = Field(default=50, ge=1, le=200)


ROOM_FRAMES = (
    ClaimFrame,
    ClaimReleaseFrame,
    ClaimsFrame,
    RunStartFrame,
    RunEndFrame,
    RunStateFrame,
    RunCancelFrame,
    RunResumeFrame,
    AskFrame,
    AnswerFrame,
    RequestsFrame,
)
ROOM_FRAME_TYPES = frozenset(
    {
        "claim",
        "claim_release",
        "claims",
        "run_start",
        "run_end",
        "run_state",
        "run_cancel",
        "run_resume",
        "ask",
        "answer",
        "requests",
    }
)
