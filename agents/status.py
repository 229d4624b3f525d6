"""A bot's presence status (`idle`, `thinking`, `streaming`), kept in step with its handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


class StatusKeeper:
    """Counts running handlers and answer streams that have begun; `run` publishes the status.

    `streaming` while any answer stream has its first chunk, else `thinking` while any handler
    runs, else `idle`. Changes within `debounce` seconds are merged into one update.
    """

    def __init__(self, debounce: float = 0.05) -> None:
        self.debounce = debounce
        self.status = "idle"
        self._busy = 0
        self._streams = 0
        self._dirty = asyncio.Event()

    @property
    def wanted(self) -> str:
        """The status the counts call for now."""
        return "streaming" if self._streams else "thinking" if self._busy else "idle"

    def handler_started(self) -> None:
        """A handler began to run."""
        self._busy += 1
        self._dirty.set()

    def handler_finished(self) -> None:
        """A handler ended, however it ended."""
        self._busy -= 1
        self._dirty.set()

    def streams_changed(self, delta: int) -> None:
        """An answer stream began streaming (+1) or is over (-1)."""
        self._streams += delta
        self._dirty.set()

    async def run(self, publish: Callable[[str], Awaitable[None]]) -> None:
        """Call `publish(status)` for each change, until cancelled.

        One task sends every update, so presence never shows an older status after a newer one.
        """
        while True:
            await self._dirty.wait()
            # Let a burst of changes settle (a stream ending, then its handler) into one update.
            await asyncio.sleep(self.debounce)
            self._dirty.clear()
            status = self.wanted
            if status != self.status:
                self.status = status
                await publish(status)
