"""A bot's retry policy for failed answers: which failures are worth another attempt, and when."""

from __future__ import annotations

from dataclasses import dataclass, field

import aiohttp

from agentchat.connection import Backoff

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
"""HTTP statuses of a model endpoint that say "try again later" (plus every 5xx)."""


@dataclass(frozen=True, slots=True)
class Retry:
    """Answer a message again after a retryable failure: `attempts` answers in all (the failed ones
    stay in the room, `failed`), waiting `backoff.delay(n)` before attempt n+1.

    Retryable: an error with an HTTP `status` (or `status_code`) of 408, 409, 425, 429 or 5xx, such
    as `agentchat.llm.LLMError`, a lost connection (aiohttp.ClientConnectionError, ConnectionError)
    and a timeout. Anything else fails once.
    """

    attempts: int = 3
    backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.5, maximum=8.0))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry.attempts counts the first answer too: at least 1")

    def should_retry(self, error: BaseException, attempt: int) -> bool:
        """True when answer `attempt` (0-based) failed with `error` and another attempt is due."""
        return attempt + 1 < self.attempts and retryable(error)


NO_RETRY = Retry(attempts=1)
"""The default: a failed answer stays failed."""


def retryable(error: BaseException) -> bool:
    """True for failures that may pass on their own: overload, rate limits, lost connections."""
    status = http_status(error)
    if status is not None:
        return status in RETRYABLE_STATUSES or 500 <= status <= 599
    return isinstance(error, aiohttp.ClientConnectionError | ConnectionError | TimeoutError)


def error_info(error: BaseException) -> tuple[str, str]:
    """The (message, code) a failed answer carries: `upstream_<status>` for a model's HTTP refusal,
    else the exception's class name; the message is cut to the protocol's 1000 characters."""
    message = str(error).strip() or type(error).__name__
    status = http_status(error)
    code = f"upstream_{status}" if status is not None else type(error).__name__
    return message[:1000], code[:64]


def http_status(error: BaseException) -> int | None:
    """The HTTP status a model client's error carries (`status`, or `status_code` as in openai)."""
    # Read by name, not by class: agentchat.llm builds on Bot, and other model clients name it so.
    for name in ("status", "status_code"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None
