"""A feed of the latest change per key (a claim per message, a run per id): newest wins, bounded."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable
from typing import Any, Generic, TypeVar

from agentchat.events import ChannelEvent, Ended
from agentchat.ports import ChannelView

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LatestFeed(Generic[K, V]):
    """An async iterator of changes picked from a channel's events by `pick` (None: not one).

    Changes of one key that wait unread are merged, newest wins: a slow reader skips steps, never
    the latest state. Bounded by `max_keys` keys waiting (the oldest dropped, counted in `dropped`).
    """

    def __init__(
        self,
        channel: ChannelView,
        pick: Callable[[ChannelEvent], tuple[K, V] | None],
        max_keys: int = 1000,
    ) -> None:
        self.channel = channel
        self._pick = pick
        self._waiting: OrderedDict[K, V] = OrderedDict()
        self._max = max_keys
        self._wakeup = asyncio.Event()
        self._end: BaseException | None = None
        self.dropped = 0
        self._unlisten = channel.listen(self._on_event)

    async def start(self) -> LatestFeed[K, V]:
        """Wait until the channel is attached."""
        await self.channel.attach()
        return self

    def __await__(self) -> Generator[Any, None, LatestFeed[K, V]]:
        return self.start().__await__()

    def __aiter__(self) -> LatestFeed[K, V]:
        return self

    async def __anext__(self) -> V:
        while not self._waiting:
            if self._end is not None:
                raise self._end
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._waiting.popitem(last=False)[1]

    def close(self) -> None:
        """Stop this feed; a waiting `__anext__` ends the iteration."""
        self._finish(StopAsyncIteration())

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Ended):
            self._finish(event.error)
            return
        picked = self._pick(event)
        if picked is None or self._end is not None:
            return
        key, value = picked
        if key not in self._waiting and len(self._waiting) >= self._max:
            self._waiting.popitem(last=False)
            self.dropped += 1
        self._waiting.pop(key, None)
        self._waiting[key] = value
        self._wakeup.set()

    def _finish(self, error: BaseException) -> None:
        if self._end is None:
            self._end = error
            self._unlisten()
        self._wakeup.set()
