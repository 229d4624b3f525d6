"""Per-consumer views of a channel: durable messages in serial order, live-only events, streams read."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Generator, Mapping
from types import TracebackType
from typing import Any

from agentchat.assembly import StreamUpdate
from agentchat.errors import ContinuityLost
from agentchat.events import (
    Attached,
    ChannelEvent,
    ClaimChanged,
    Delivered,
    Ended,
    Live,
    Lost,
    RunChanged,
    StreamChanged,
)
from agentchat.feeds import Feed, LatestFeed
from agentchat.models import LiveEvent, Message
from agentchat.ports import ChannelView, Filter
from agentchat.roommodels import ClaimEvent, RunUpdate
from agentchat.runview import MAX_RUNS
from agentchat_server.protocol import Code


class Subscription:
    """An async iterator over a channel's durable messages, in serial order, no gaps, no duplicates.

    It starts after serial `after` when given, else at the channel's position when the channel has
    one, else at the position of the attach that `subscribe()` started. `await`ing it (or `start()`,
    or `async with`) waits for that attach. If messages may have been missed (retention, epoch
    change) the next `__anext__` raises ContinuityLost; iterating again continues live. The buffer
    is bounded (`max_buffer`): a consumer that falls behind stops buffering and catches up from
    history when it reads again, so nothing is lost and memory stays bounded.

    Agent rooms: `claims` yields ClaimEvents (the latest per message), `run_updates` yields
    RunUpdates (the latest per run), and `runs` is the current view of every run by id.
    """

    def __init__(
        self,
        channel: ChannelView,
        after: int | None,
        max_buffer: int,
        *,
        behind: bool = False,
        filter: Filter = "all",
    ) -> None:
        self.channel = channel
        self.filter: Filter = filter
        self.claims: LatestFeed[int, ClaimEvent] = LatestFeed(channel, _claim_change)
        self.run_updates: LatestFeed[str, RunUpdate] = LatestFeed(channel, _run_change)
        self._runs: dict[str, RunUpdate] = dict(channel.runs)
        self._last = after
        self._max = max_buffer
        self._buffer: deque[Message | ContinuityLost] = deque()
        # Older than what the channel delivers: the difference comes from history first.
        self._behind = behind
        self._wakeup = asyncio.Event()
        self._end: BaseException | None = None
        self._started = False
        self._unlisten = channel.listen(self._on_event)

    @property
    def runs(self) -> Mapping[str, RunUpdate]:
        """The channel's runs by id as this subscription saw them last: a reader that joins mid-run
        has each active run's snapshot (status, state) here after the attach."""
        return self._runs

    @property
    def last_serial(self) -> int | None:
        """The serial of the last message this subscription yielded (or started after)."""
        return self._last

    async def start(self) -> Subscription:
        """Wait until the channel is attached; messages committed from then on are yielded."""
        if not self._started:
            await self.channel.attach()
            self._started = True
        return self

    def __await__(self) -> Generator[Any, None, Subscription]:
        return self.start().__await__()

    def close(self) -> None:
        """Stop this view (and its `claims` and `run_updates`); a waiting `__anext__` ends."""
        self._finish(StopAsyncIteration())
        self.claims.close()
        self.run_updates.close()

    async def __aenter__(self) -> Subscription:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        if self._end is None:
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

    # --- fed by the channel's events -------------------------------------------------------

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Delivered):
            self._offer(event.message)
        elif isinstance(event, Attached):
            if self._last is None:
                self._last = event.position.serial
        elif isinstance(event, Lost):
            self._lost(event.error)
        elif isinstance(event, RunChanged):
            self._runs[event.run.run_id] = event.run
            if len(self._runs) > MAX_RUNS:
                ended = [r for r, u in self._runs.items() if u.done]
                for run_id in ended[: len(self._runs) - MAX_RUNS]:
                    del self._runs[run_id]
        elif isinstance(event, Ended):
            self._finish(event.error)

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
            self._unlisten()
        self._wakeup.set()

    async def _catch_up(self) -> None:
        after = self._last or 0
        # Whatever the channel delivered before this read was committed before it: history has it.
        before = self.channel.position
        page = await self.channel.history(
            after=after, direction="forwards", limit=min(self._max, 1000), filter=self.filter
        )
        fresh = [m for m in page if m.serial is not None and m.serial > after]
        self._buffer.extend(fresh)
        newest = fresh[-1].serial if fresh else after
        assert newest is not None
        now = self.channel.position
        if newest >= (now.serial if now is not None else 0):
            self._behind = False
        elif not page.has_more and newest < (before.serial if before is not None else 0):
            # History ends short of what the channel had delivered: retention removed the rest.
            self._behind = False
            self._buffer.append(
                ContinuityLost(
                    self.channel.name, Code.HISTORY_LOST, "history after the position is gone", now
                )
            )
        # Otherwise: more pages, or messages committed meanwhile: the next read goes on from `newest`.


class EventFeed(Feed[LiveEvent]):
    """An async iterator over live-only frames (stream chunks, ephemeral messages, presence diffs).

    Bounded: when more than `max_buffer` events wait, the oldest are dropped (they are previews;
    the durable messages carry the truth). Not replayed after a reconnect.
    """

    def __init__(self, channel: ChannelView, max_buffer: int) -> None:
        self._events: deque[LiveEvent] = deque(maxlen=max_buffer)
        super().__init__(channel)

    def _take(self, event: ChannelEvent) -> bool:
        if not isinstance(event, Live):
            return False
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
        self._events.append(event.event)
        return True

    def _ready(self) -> bool:
        return bool(self._events)

    def _pop(self) -> LiveEvent:
        return self._events.popleft()


class StreamFeed(LatestFeed[str, StreamUpdate]):
    """An async iterator of `StreamUpdate`s: the streams being written in a channel, as a reader shows them.

    It starts with the streams open now, then yields an update each time one grows (a snapshot or
    chunks, in index order, resends ignored) and once when it is over: the final durable message
    replaces the preview (`status` complete, cancelled or aborted, `message` set), or `lost` when
    it ended unseen. Updates of one stream that wait unread are merged, newest wins: a slow reader
    skips previews, never an end. Bounded by `max_streams` streams waiting (oldest dropped).
    """

    attaches = True

    def __init__(self, channel: ChannelView, current: list[StreamUpdate], max_streams: int = 1000) -> None:
        super().__init__(channel, _stream_change, max_streams, ((u.stream_id, u) for u in current))


def _stream_change(event: ChannelEvent) -> tuple[str, StreamUpdate] | None:
    return (event.update.stream_id, event.update) if isinstance(event, StreamChanged) else None


def _claim_change(event: ChannelEvent) -> tuple[int, ClaimEvent] | None:
    return (event.claim.serial, event.claim) if isinstance(event, ClaimChanged) else None


def _run_change(event: ChannelEvent) -> tuple[str, RunUpdate] | None:
    return (event.run.run_id, event.run) if isinstance(event, RunChanged) else None
