"""Per-consumer views of a channel: durable messages in serial order, and live-only events."""

from __future__ import annotations

import asyncio
from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING

from agentchat.errors import ContinuityLost
from agentchat.models import LiveEvent, Message

if TYPE_CHECKING:
    from agentchat.channel import Channel


class Subscription:
    """An async iterator over a channel's durable messages, in serial order, no gaps, no duplicates.

    The channel is attached on first use. If messages may have been missed (retention, epoch
    change) the next `__anext__` raises ContinuityLost; iterating again continues live. The buffer
    is bounded (`max_buffer`): a consumer that falls behind stops buffering and catches up from
    history when it reads again, so nothing is lost and memory stays bounded.
    """

    def __init__(self, channel: Channel, after: int | None, max_buffer: int) -> None:
        self.channel = channel
        self._last = after
        self._max = max_buffer
        self._buffer: deque[Message | ContinuityLost] = deque()
        self._behind = False
        self._wakeup = asyncio.Event()
        self._end: BaseException | None = None
        self._started = False

    @property
    def last_serial(self) -> int | None:
        """The serial of the last message this subscription yielded (or started after)."""
        return self._last

    async def start(self) -> Subscription:
        """Attach the channel and fix the starting point; later messages are buffered for this view."""
        if not self._started:
            self._started = True
            position = await self.channel.attach()
            if self._last is None:
                self._last = position.serial
            elif self._last < position.serial:
                first = self._buffer[0] if self._buffer else None
                if not (isinstance(first, Message) and first.serial == self._last + 1):
                    # Older than what the channel has delivered: fill the difference from history.
                    self._buffer.clear()
                    self._behind = True
        return self

    def close(self) -> None:
        """Stop this view; a waiting `__anext__` ends the iteration."""
        self._finish(StopAsyncIteration())

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        await self.start()
        while True:
            if self._buffer:
                item = self._buffer.popleft()
                if isinstance(item, ContinuityLost):
                    self._last = item.position.serial
                    raise item
                if item.serial is None or (self._last is not None and item.serial <= self._last):
                    continue
                self._last = item.serial
                return item
            if self._end is not None:
                raise self._end
            if self._behind:
                await self._catch_up()
                continue
            self._wakeup.clear()
            await self._wakeup.wait()

    # --- fed by the channel ----------------------------------------------------------------

    def _offer(self, message: Message) -> None:
        if self._behind or self._end is not None:
            return
        if len(self._buffer) >= self._max:
            # Overflow policy: stop buffering; the reader refills from history when it gets here.
            self._behind = True
        else:
            self._buffer.append(message)
        self._wakeup.set()

    def _lost(self, error: ContinuityLost) -> None:
        if self._behind:
            # What was dropped cannot be told apart from what was lost: report one gap, go live.
            self._buffer.clear()
            self._behind = False
        self._buffer.append(error)
        self._wakeup.set()

    def _finish(self, error: BaseException) -> None:
        if self._end is None:
            self._end = error
        self._wakeup.set()

    async def _catch_up(self) -> None:
        after = self._last or 0
        page = await self.channel.history(after=after, direction="forwards", limit=min(self._max, 1000))
        fresh = [m for m in page.messages if m.serial is not None and m.serial > after]
        self._buffer.extend(fresh)
        newest = fresh[-1].serial if fresh else after
        assert newest is not None
        live = self.channel.position.serial if self.channel.position else 0
        if newest >= live:
            self._behind = False
        elif not fresh:
            # History cannot reach the live position: retention removed it.
            self._behind = False
            position = self.channel.position
            self._buffer.append(
                ContinuityLost(self.channel.name, 80002, "history after the position is gone", position)
            )


class EventFeed:
    """An async iterator over live-only frames (stream chunks, ephemeral messages, presence diffs).

    Bounded: when more than `max_buffer` events wait, the oldest are dropped (they are previews;
    the durable messages carry the truth). Not replayed after a reconnect.
    """

    def __init__(self, channel: Channel, max_buffer: int) -> None:
        self.channel = channel
        self._events: deque[LiveEvent] = deque(maxlen=max_buffer)
        self._wakeup = asyncio.Event()
        self._end: BaseException | None = None
        self.dropped = 0

    async def start(self) -> EventFeed:
        """Attach the channel; events from then on are kept for this feed."""
        await self.channel.attach()
        return self

    def __aiter__(self) -> EventFeed:
        return self

    async def __anext__(self) -> LiveEvent:
        await self.channel.attach()
        while not self._events:
            if self._end is not None:
                raise self._end
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._events.popleft()

    def close(self) -> None:
        """Stop this feed; a waiting `__anext__` ends the iteration."""
        self._finish(StopAsyncIteration())

    def _offer(self, event: LiveEvent) -> None:
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event)
        self._wakeup.set()

    def _finish(self, error: BaseException) -> None:
        if self._end is None:
            self._end = error
        self._wakeup.set()
