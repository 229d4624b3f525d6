"""Per-reader delivery cursors: durable messages pass in serial order, gaps trigger a fill.

Rules:
- A cursor remembers `last`, the last serial handed to its reader.
- A serial <= last is a duplicate and is dropped.
- last + 1 is delivered (state LIVE).
- Anything beyond last + 1 is a gap: the cursor turns FILLING, drops live serials while it fills
  (remembering the highest as `target`) and the owner reads the gap from the Store.
- The owner reports each filled serial with `filled`; `fill_done` turns the cursor LIVE again only
  when nothing newer than `last` is known to exist, so a fill loop ends without a race.
"""

from __future__ import annotations

from enum import IntEnum


class Offer(IntEnum):
    """What a cursor says of a live durable message: deliver it, skip it, or start a fill."""

    DELIVER = 0
    SKIP = 1
    START_FILL = 2


class Cursor:
    """Delivery position of one reader in one channel."""

    __slots__ = ("filling", "last", "target")

    def __init__(self, last: int) -> None:
        self.last = last
        self.target = last
        self.filling = False

    def offer(self, serial: int) -> Offer:
        """Decide what to do with a live durable message; START_FILL means: read the gap now."""
        if serial <= self.last:
            return Offer.SKIP
        if self.filling:
            if serial > self.target:
                self.target = serial
            return Offer.SKIP
        if serial == self.last + 1:
            self.last = serial
            return Offer.DELIVER
        self.filling = True
        self.target = serial
        return Offer.START_FILL

    def begin_fill(self, target: int) -> bool:
        """Start filling up to `target` (a known existing serial); False if nothing is missing."""
        if target <= self.last:
            return False
        self.target = max(self.target, target)
        self.filling = True
        return True

    def filled(self, serial: int) -> bool:
        """Record a serial read from the Store; True if it is the next one and must be delivered."""
        if serial != self.last + 1:
            return False
        self.last = serial
        return True

    def fill_done(self) -> bool:
        """True (and LIVE again) when the fill reached everything known; else read again."""
        if self.last >= self.target:
            self.filling = False
            return True
        return False
