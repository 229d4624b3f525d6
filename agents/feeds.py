"""Async feeds over a channel's events: one base (waiting, ending, closing) and the two ways of
keeping what waits unread: every event, bounded (`EventFeed` in subscription.py), or the latest
change per key, newest wins (`LatestFeed`: a claim per message, a run per id, a stream per id)."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Generator, Hashable, Iterable
from typing import Any, Generic, Self, TypeVar

from agentchat.events import ChannelEvent, Ended
from agentchat.ports import ChannelView

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Feed(Generic[T]):
    """An async iterator fed by a channel's events; ends with the channel's error, or
    StopAsyncIteration after `close()`. Subclasses keep what waits (`_ready`, `_pop`) and take
    events in `_take`; `attaches`: reading attaches the channel first."""

    attaches = True

    def __init__(self, channel: ChannelView) -> None:
        self.channel = channel
        self._wakeup = asyncio.Event()
        self._end: BaseException | None = None
        self.dropped = 0  # items dropped because too many waited unread
        self._unlisten = channel.listen(self._on_event)

    async def start(self) -> Self:
        """Wait until the channel is attached; events from then on are kept for this feed."""
        await self.channel.attach()
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self.start().__await__()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        if self.attaches and self._end is None:
            await self.channel.attach()
        while not self._ready():
            if self._end is not None:
                raise self._end
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._pop()

    def close(self) -> None:
        """Stop this feed; a waiting `__anext__` ends the iteration."""
        self._finish(StopAsyncIteration())

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Ended):
            self._finish(event.error)
        elif self._end is None and self._take(event):
            self._wakeup.set()

    def _take(self, event: ChannelEvent) -> bool:
        """Keep what `event` brings; True when something now waits."""
        raise NotImplementedError

    def _ready(self) -> bool:
        raise NotImplementedError

    def _pop(self) -> T:
        raise NotImplementedError

    def _finish(self, error: BaseException) -> None:
        if self._end is None:
            self._end = error
            self._unlisten()
        self._wakeup.set()


class LatestFeed(Feed[V], Generic[K, V]):
    """An async iterator of changes picked from a channel's events by `pick` (None: not one).

    Changes of one key that wait unread are merged, newest wins, in the place of the key's first
    waiting change: a slow reader skips steps, never the latest state. Bounded by `max_keys` keys
    waiting (the oldest dropped, counted in `dropped`).
    """

    attaches = False

    def __init__(
        self,
        channel: ChannelView,
        pick: Callable[[ChannelEvent], tuple[K, V] | None],
        max_keys: int = 1000,
        current: Iterable[tuple[K, V]] = (),
    ) -> None:
        self._pick = pick
        self._waiting: OrderedDict[K, V] = OrderedDict(current)
        self._max = max_keys
        super().__init__(channel)

    def _take(self, event: ChannelEvent) -> bool:
        picked = self._pick(event)
        if picked is None:
            return False
        key, value = picked
        if key not in self._waiting and len(self._waiting) >= self._max:
            self._waiting.popitem(last=False)
            self.dropped += 1
        self._waiting[key] = value
        return True

    def _ready(self) -> bool:
        return bool(self._waiting)

    def _pop(self) -> V:
        return self._waiting.popitem(last=False)[1]
