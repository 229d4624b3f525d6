"""Double texting: what a bot does when a person writes again while it still answers them.

Rules (docs/protocol.md, "Double texting"):
- The signal is a durable message from a person whose earlier message (same channel, lower serial)
  the bot is answering right now; messages from agents never are.
- `queue` (the default): answer the newer message after the earlier answers, in serial order.
- `interrupt`: cancel the earlier answers (they end `cancelled`), then answer the newer message.
- `reject`: keep answering the earlier message; answer the newer one with a short notice only.
- `Bot(double_texting=...)` overrides the channel's policy (`attached.policy.double_texting`).
"""

from __future__ import annotations

import asyncio
from typing import Literal, get_args

DoubleTexting = Literal["queue", "interrupt", "reject"]
POLICIES: frozenset[str] = frozenset(get_args(DoubleTexting))
DEFAULT: DoubleTexting = "queue"

REJECT_NOTICE = "I am still answering your previous message; send this one again once I am done."


def checked(policy: str | None) -> DoubleTexting | None:
    """`policy` if it is a known one (or None); ValueError otherwise."""
    if policy is None:
        return None
    if policy not in POLICIES:
        raise ValueError(f"double_texting is one of {sorted(POLICIES)}, not {policy!r}")
    return policy  # type: ignore[return-value]


class Requesters:
    """The answers a bot is running, per person: (channel, client_id) -> {trigger serial: task}."""

    def __init__(self) -> None:
        self._running: dict[tuple[str, str], dict[int, asyncio.Task[None]]] = {}

    def earlier(self, channel: str, requester: str, serial: int) -> list[asyncio.Task[None]]:
        """The running answers to this person's messages older than `serial`, oldest first."""
        answers = self._running.get((channel, requester), {})
        return [task for trigger, task in sorted(answers.items()) if trigger < serial]

    def add(self, channel: str, requester: str, serial: int, task: asyncio.Task[None]) -> None:
        """Track `task`, the answer to message `serial` of `requester`, until it is done."""
        key = (channel, requester)
        self._running.setdefault(key, {})[serial] = task
        task.add_done_callback(lambda _: self._remove(key, serial))

    def _remove(self, key: tuple[str, str], serial: int) -> None:
        answers = self._running.get(key)
        if answers is not None:
            answers.pop(serial, None)
            if not answers:
                del self._running[key]
