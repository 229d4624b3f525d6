"""Per-channel ordering of durable messages as they arrive at a node, before any reader sees them.

Rules:
- `delivered` is the last serial handed to the channel's readers, in order.
- Messages at or below `delivered` are duplicates and are dropped.
- A message right after `delivered` is released at once, with every held message that then
  follows without a hole (a run).
- A message beyond `delivered + 1` is held: with several nodes publishing, commits of another node
  may simply arrive later over the bus. The owner waits a short, bounded time for the hole to
  close; if it does not, it reads the hole once from the Store (one read per channel per node,
  shared by every reader) and offers what it read.
- Held messages are bounded (`max_held`); past the bound the owner reads the hole at once.
- `known` is the highest serial known to exist (held, or reported by the Store); when it passes
  `delivered` with nothing held, the owner reads the tail from the Store.
"""

from __future__ import annotations

from collections.abc import Iterable

from agentchat_server.core.records import Message


class Reorder:
    """The ordering state of one channel on one node."""

    __slots__ = ("_held", "delivered", "known", "max_held")

    def __init__(self, delivered: int, max_held: int = 10_000) -> None:
        self.delivered = delivered
        self.known = delivered
        self.max_held = max_held
        self._held: dict[int, Message] = {}

    def offer(self, messages: Iterable[Message]) -> list[Message]:
        """Take messages (any order); return the run that can go to readers now, in serial order."""
        held = self._held
        if not held and isinstance(messages, list) and messages:
            first, last = messages[0].serial, messages[-1].serial
            if first == self.delivered + 1 and last - first == len(messages) - 1:
                # The common case: one node's commits, in order. No holding, no copying.
                self.delivered = last
                if last > self.known:
                    self.known = last
                return messages
        for m in messages:
            if m.serial > self.delivered:
                held[m.serial] = m
                if m.serial > self.known:
                    self.known = m.serial
        run: list[Message] = []
        while held:
            nxt = held.pop(self.delivered + 1, None)
            if nxt is None:
                break
            m = nxt
            run.append(m)
            self.delivered = m.serial
        return run

    def exists_up_to(self, serial: int) -> None:
        """The Store says messages up to `serial` exist (a position check)."""
        if serial > self.known:
            self.known = serial

    @property
    def missing(self) -> tuple[int, int] | None:
        """The hole to read from the Store: (after, up to and including), or None."""
        if self.known <= self.delivered:
            return None
        return self.delivered, self.known

    @property
    def overfull(self) -> bool:
        """Too many messages held: read the hole now instead of waiting."""
        return len(self._held) > self.max_held

    @property
    def held(self) -> int:
        """Messages held behind a hole."""
        return len(self._held)

    def skip_to(self, serial: int) -> list[Message]:
        """The Store has nothing up to `serial` any more (retention): continue after it."""
        if serial > self.delivered:
            self.delivered = serial
            for s in [s for s in self._held if s <= serial]:
                del self._held[s]
        return self.offer(())
