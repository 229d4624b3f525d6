"""The flush pass: once per loop tick, deferred fan-out runs, then every outbox written to flushes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Flushable(Protocol):
    """Something holding bytes to write at the end of the tick (an outbox)."""

    def flush_now(self) -> None:
        """Write what is queued."""


class Flusher:
    """Flushes every outbox that got bytes this loop tick, in one scheduled callback.

    One callback per tick instead of one per outbox: a message to 1,000 subscribers schedules
    one flush pass, not 1,000 callbacks. Work given to `defer` runs at the start of that pass,
    so whatever it pushes is written in the same pass (the hub batches a channel's live frames
    of one tick this way)."""

    __slots__ = ("_deferred", "_dirty", "_loop", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Flushable] = []
        self._deferred: list[tuple[Callable[[Any], None], Any]] = []
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None

    def _schedule(self) -> None:
        self._scheduled = True
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        self._loop.call_soon(self._run)

    def mark(self, outbox: Flushable) -> None:
        """`outbox` got bytes this tick: flush it in this tick's pass."""
        self._dirty.append(outbox)
        if not self._scheduled:
            self._schedule()

    def defer(self, fn: Callable[[Any], None], arg: Any) -> None:
        """Call `fn(arg)` at the start of this tick's flush pass, before outboxes are written."""
        self._deferred.append((fn, arg))
        if not self._scheduled:
            self._schedule()

    def _run(self) -> None:
        if self._deferred:
            deferred, self._deferred = self._deferred, []
            for fn, arg in deferred:
                try:
                    fn(arg)
                except Exception:
                    log.exception("deferred fan-out failed")
        # Still marked scheduled while deferred work pushes, so its outboxes join this pass.
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush_now()
