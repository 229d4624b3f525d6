"""A bot's record of which messages it has answered, is answering, or must answer again; no I/O.

Rules:
- A message (a trigger, by channel and serial) is answered once one of the bot's own messages
  replies to it with any status but `aborted`, or it was settled without an answer (the loop
  brake refused it). A `failed` answer counts unless a later attempt was `aborted` (the bot died
  while retrying it): then it is answered again.
- An `aborted` answer (the bot died mid-stream, or lost its session) asks for another attempt, up
  to `max_attempts` answers in all; attempt n > 0 answers with a new id.
- A trigger being answered right now is not started again; an `aborted` answer seen while it runs
  (its handler has not noticed yet) is retried once that handler finished.
- At most `remembered` triggers are kept, the least recently touched forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict

from agentchat.models import Message

Trigger = tuple[str, int]
"""A message a bot may answer: (channel, serial)."""

REMEMBERED_TRIGGERS = 10_000
SETTLED = "settled"  # a status no message has: the trigger needs no answer


class AnswerLedger:
    """The answers one bot (`me`) has seen or is writing, per trigger."""

    def __init__(self, me: str, max_attempts: int, remembered: int = REMEMBERED_TRIGGERS) -> None:
        self.me = me
        self.max_attempts = max_attempts
        self._statuses: OrderedDict[Trigger, list[str | None]] = OrderedDict()
        self._remembered = remembered
        self._running: set[Trigger] = set()
        self._again: set[Trigger] = set()

    def note(self, message: Message) -> None:
        """Record `message` if it is one of my answers (it carries `reply_to`; events never count)."""
        if message.client_id != self.me or message.reply_to is None or message.action is not None:
            return
        self._add((message.channel, message.reply_to), message.status)

    def answered(self, key: Trigger) -> bool:
        """True when an answer to `key` exists that did not end `aborted`."""
        statuses = self._statuses.get(key, ())
        if statuses and statuses[-1] == "failed":
            return True
        return any(status not in ("aborted", "failed") for status in statuses)

    def settle(self, key: Trigger) -> None:
        """Count `key` as answered though no answer exists (the server refused it for good)."""
        self._add(key, SETTLED)

    def next_attempt(self, key: Trigger) -> int | None:
        """The attempt number to start for `key` now, or None (answered, running, or out of attempts)."""
        if key in self._running or self.answered(key):
            return None
        attempt = len(self._statuses.get(key, ()))
        return attempt if attempt < self.max_attempts else None

    def wants_retry(self, answer: Message) -> Trigger | None:
        """For my `aborted` answer: the trigger to answer again now, or None (later, or not at all)."""
        if answer.client_id != self.me or answer.status != "aborted" or answer.reply_to is None:
            return None
        key = (answer.channel, answer.reply_to)
        if key in self._running:
            # The handler that wrote it has not noticed yet; answer again once it has finished.
            self._again.add(key)
            return None
        return None if self.answered(key) else key

    def start(self, key: Trigger) -> None:
        """A handler starts answering `key`."""
        self._running.add(key)

    def finish(self, key: Trigger) -> bool:
        """The handler for `key` finished; True when an answer must be tried again now."""
        self._running.discard(key)
        if key in self._again:
            self._again.discard(key)
            return True
        return False

    def _add(self, key: Trigger, status: str | None) -> None:
        self._statuses.setdefault(key, []).append(status)
        self._statuses.move_to_end(key)
        while len(self._statuses) > self._remembered:
            self._statuses.popitem(last=False)
