"""The ordering rule for a reader of durable messages, shared by the SDK (and mirrored by the web client).

Rules:
- A reader's `position` is the serial of the last durable message it delivered (None before any).
- A serial at or below the position is a duplicate: dropped.
- position + 1 is delivered and becomes the position. Without a position, any serial is.
- A serial beyond position + 1 is a gap. The server promises none within an attachment, so a gap
  means something upstream broke: the reader never accepts the jump. It recovers by attaching
  again from its position (the server replays what follows), and holds (drops) every live
  serial until that attach is answered; the replay brings them again, in order.
- An `attached` reply with `resumed: true` ends the recovery; the position stays where it was.
- `resumed: false` (continuity lost, the reason says why) moves the position to the one the
  reply carries: delivery continues from there, and the reader's application is told.
- A first attach without a position takes the reply's position.

`tests/vectors/ordering.json` holds the cases; the server's delivery cursor
(`agentchat_server.core.ordering`), this module and `web/agentchat.js` all run them.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    """What a reader does with one durable message."""

    DELIVER = "deliver"
    DUPLICATE = "duplicate"
    GAP = "gap"  # start recovering: attach again from `position`
    HOLD = "hold"  # recovering: drop it, the replay brings it again


class Sequencer:
    """The rule above for one reader of one channel; no I/O."""

    __slots__ = ("position", "recovering")

    def __init__(self, position: int | None = None) -> None:
        self.position = position
        self.recovering = False

    def offer(self, serial: int) -> Verdict:
        """Judge a durable message; DELIVER and GAP update the state."""
        position = self.position
        if position is not None and serial <= position:
            return Verdict.DUPLICATE
        if self.recovering:
            return Verdict.HOLD
        if position is None or serial == position + 1:
            self.position = serial
            return Verdict.DELIVER
        self.recovering = True
        return Verdict.GAP

    def attached(self, position: int, resumed: bool) -> None:
        """An `attached` reply arrived: keep the position if continuity held, else take the reply's."""
        if not resumed or self.position is None:
            self.position = position
        self.recovering = False
