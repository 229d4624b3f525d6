"""Input requests, pure: what a request keeps, who may answer it, and which answers fit its shape.

Rules:
- A request is `pending` until its first answer (`answered`) or its deadline (`expired`); either
  closes it for good, and a later answer is refused (`40907`).
- When the request names addressees (`to`), only they may answer (`40300`); otherwise any member
  with `answer` on the channel may.
- Every shape may be declined with `deny`. `approval` is answered `approve` (with optional
  `data`, e.g. a note); `choice` with `data` set to one of its options; `text` with a string;
  `json` with any JSON value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from agentchat_server.core.refusal import Refusal
from agentchat_server.protocol import Code


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """An input request as the Store keeps it. `serial` is its record in the channel; times in ms."""

    request_id: str
    channel: str
    serial: int
    client_id: str
    ts: int
    prompt: str
    shape: dict[str, Any]
    deadline: int
    data: Any = None
    to: list[str] | None = None
    run_id: str | None = None
    status: str = "pending"
    answer: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        """The request as `requests` replies and REST list it."""
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "channel": self.channel,
            "serial": self.serial,
            "client_id": self.client_id,
            "ts": self.ts,
            "prompt": self.prompt,
            "shape": self.shape,
            "deadline": self.deadline,
            "status": self.status,
        }
        optional = {"data": self.data, "to": self.to, "run_id": self.run_id, "answer": self.answer}
        fields.update({k: v for k, v in optional.items() if v is not None})
        return fields


def may_answer(request: RequestRecord, client_id: str) -> Refusal | None:
    """Whether `client_id` may answer the request (its addressees, when it names any)."""
    if request.to and client_id not in request.to:
        return Refusal(Code.FORBIDDEN, "this request asks other members", {"to": request.to})
    return None


def check_answer(shape: dict[str, Any], outcome: str, data: Any) -> Refusal | None:
    """Whether an answer fits the request's shape (see the rules above)."""
    if outcome == "deny":
        return None
    kind = shape.get("kind")
    if kind == "approval":
        if outcome != "approve":
            return Refusal(Code.INVALID_VALUE, "an approval is answered approve or deny")
        return None
    if outcome != "data":
        return Refusal(Code.INVALID_VALUE, f"a {kind} request is answered with data (or deny)")
    if kind == "choice" and data not in shape.get("options", ()):
        return Refusal(Code.INVALID_VALUE, "the answer must be one of the options")
    if kind == "text" and not isinstance(data, str):
        return Refusal(Code.INVALID_VALUE, "a text request is answered with a string")
    return None


def closed(request: RequestRecord, status: str, answer: dict[str, Any]) -> RequestRecord:
    """The request once answered or expired, with what closed it."""
    return replace(request, status=status, answer=answer)
