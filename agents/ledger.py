"""A bot's record of which messages it has answered, is answering, or must answer again; no I/O.

Rules:
- A message (a trigger, by channel and serial) is answered once one of the bot's own messages
  replies to it with any status but `aborted`, or it was settled without an answer (the loop
  brake refused it). A `failed` answer counts unless a later attempt was `aborted` (the bot died
  while retrying it): then it is answered again.
- An `aborted` answer (the bot died mid-stream, or lost its session) asks for another attempt, up
  to `max_attempts` answers in all; attempt n > 0 answers with a new id.
- A run answers its trigger like a message: its start record (`agentchat.run`, `reply_to` the
  trigger) is an answer in progress, its end record gives the answer's status (`completed` counts
  as `complete`). An answer in progress (the bot died, or parked the run waiting for input) is
  started again with the same attempt number, so the same run id finds the run again.
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
IN_PROGRESS = "running"  # a run started, its end not seen yet
RUN_RECORD = "agentchat.run"
_RUN_ENDS = {"completed": "complete", "failed": "failed", "cancelled": "cancelled", "aborted": "aborted"}


class AnswerLedger:
    """The answers one bot (`me`) has seen or is writing, per trigger."""

    def __init__(self, me: str, max_attempts: int, remembered: int = REMEMBERED_TRIGGERS) -> None:
        self.me = me
        self.max_attempts = max_attempts
        self._statuses: OrderedDict[Trigger, list[str | None]] = OrderedDict()
        self._remembered = remembered
        self._running: set[Trigger] = set()
        self._again: set[Trigger] = set()
        self._runs: OrderedDict[str, Trigger] = OrderedDict()

    def note(self, message: Message) -> None:
        """Record `message` if it is one of my answers (it carries `reply_to`; events never count),
        or the end of one of my runs."""
        answer = self.answer_of(message)
        if answer is None:
            return
        key, status = answer
        statuses = self._statuses.get(key)
        if message.reply_to is None and statuses and statuses[-1] == IN_PROGRESS:
            statuses[-1] = status  # a run's end: the answer in progress is over
            return
        self._add(key, status)

    def answer_of(self, message: Message) -> tuple[Trigger, str | None] | None:
        """(trigger, status) when `message` is one of my answers or my run's end record, else None."""
        if message.client_id != self.me or message.action is not None:
            return None
        if message.name == RUN_RECORD and message.run_id is not None and isinstance(message.data, dict):
            state = message.data.get("status")
            if message.reply_to is not None:
                key = (message.channel, message.reply_to)
                self._runs[message.run_id] = key
                while len(self._runs) > self._remembered:
                    self._runs.popitem(last=False)
                return key, IN_PROGRESS if state == "running" else _RUN_ENDS.get(str(state))
            ended = self._runs.get(message.run_id)
            return (ended, _RUN_ENDS.get(str(state))) if ended is not None else None
        if message.reply_to is None:
            return None
        return (message.channel, message.reply_to), message.status

    def answered(self, key: Trigger) -> bool:
        """True when an answer to `key` exists that did not end `aborted`."""
        statuses = self._statuses.get(key, ())
        if statuses and statuses[-1] == "failed":
            return True
        return any(status not in ("aborted", "failed", IN_PROGRESS) for status in statuses)

    def in_progress(self, key: Trigger) -> bool:
        """True when my last answer to `key` is a run whose end I have not seen (I died writing it,
        or parked it waiting for input)."""
        statuses = self._statuses.get(key)
        return statuses is not None and bool(statuses) and statuses[-1] == IN_PROGRESS

    def settle(self, key: Trigger) -> None:
        """Count `key` as answered though no answer exists (the server refused it for good)."""
        self._add(key, SETTLED)

    def next_attempt(self, key: Trigger) -> int | None:
        """The attempt number to start for `key` now, or None (answered, running, or out of attempts)."""
        if key in self._running or self.answered(key):
            return None
        statuses = self._statuses.get(key, ())
        attempt = len(statuses) - (1 if statuses and statuses[-1] == IN_PROGRESS else 0)
        return attempt if attempt < self.max_attempts else None

    def wants_retry(self, answer: Message) -> Trigger | None:
        """For my `aborted` answer (or run): the trigger to answer again now, or None (later, or not
        at all)."""
        found = self.answer_of(answer)
        if found is None or found[1] != "aborted":
            return None
        key = found[0]
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
