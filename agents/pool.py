"""Double texting across a pool: an instance leaves a person's newer message to whoever answers
their earlier one; no I/O.

Rules (docs/protocol.md, "Double texting", "the other agents of the pool"):
- A person's message is deferred while an earlier message of the same person, in the same
  channel, has a claim `held` by someone else (another instance, or another agent): that holder
  queues, interrupts or rejects it by the room's policy.
- When that claim changes (`done`, `released`, `expired`), the deferred messages are considered
  again: the holder has usually claimed them by then, else this instance may.
- Bounded: at most `remembered` senders and deferred messages are kept, oldest forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TypeVar

from agentchat.ledger import Trigger
from agentchat.models import Message
from agentchat.roommodels import ClaimEvent

REMEMBERED = 10_000
V = TypeVar("V")


class Deferrals:
    """What one pool instance knows of held claims and of people's messages waiting on them."""

    def __init__(self, remembered: int = REMEMBERED) -> None:
        self._senders: OrderedDict[Trigger, str] = OrderedDict()
        self._held: set[Trigger] = set()
        self._waiting: OrderedDict[Trigger, list[Message]] = OrderedDict()
        self._remembered = remembered

    def claim_changed(self, change: ClaimEvent) -> list[Message]:
        """Take a claim frame; the deferred messages to consider again now."""
        key = (change.channel, change.serial)
        if change.state == "held":
            self._held.add(key)
            return []
        self._held.discard(key)
        return self._waiting.pop(key, [])

    def defer(self, message: Message) -> bool:
        """Note a person's `message`; True when it must wait (see the rules), kept until then."""
        assert message.serial is not None
        key = (message.channel, message.serial)
        self._senders[key] = message.client_id
        _trim(self._senders, self._remembered)
        earlier = [
            held
            for held in self._held
            if held[0] == message.channel
            and held[1] < message.serial
            and self._senders.get(held) == message.client_id
        ]
        if not earlier:
            return False
        self._waiting.setdefault(max(earlier), []).append(message)
        _trim(self._waiting, self._remembered)
        return True


def _trim(entries: OrderedDict[Trigger, V], bound: int) -> None:
    # Overflow policy: forget the oldest. A deferred message forgotten is left to the other
    # instances (the holder of the earlier claim answers it anyway).
    while len(entries) > bound:
        entries.popitem(last=False)
