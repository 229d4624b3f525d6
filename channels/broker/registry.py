"""What this node knows of each channel it serves, loaded on first use and forgotten when idle."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agentchat_server.broker.connections import Attachment, Connection
from agentchat_server.bus import Bus
from agentchat_server.core.reorder import Reorder
from agentchat_server.core.runs import ChannelRuns
from agentchat_server.core.streams import Stream
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Encoded
from agentchat_server.store import Store


@dataclass(slots=True)
class ChannelState:
    """One channel on this node: its position, readers, open streams, live queue, and its view
    of the channel's active runs (for readers that attach)."""

    name: str
    epoch: str
    head: int  # last serial known committed
    first_serial: int
    subscribers: dict[Connection, Attachment] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    reserved_ids: set[str] = field(default_factory=set)  # message ids of streams being opened
    # Live frames of this loop tick awaiting the flush pass, with their presence-only flag.
    live: list[tuple[Encoded, bool]] = field(default_factory=list)
    order: Reorder = field(init=False)  # arrival order of commits -> serial order for readers
    hole_wait: asyncio.TimerHandle | None = None  # the short wait before a hole is read
    repair: asyncio.Task[None] | None = None  # the one Store read filling this node's hole
    runs: ChannelRuns = field(default_factory=ChannelRuns)

    def __post_init__(self) -> None:
        self.order = Reorder(self.head)

    def idle(self) -> bool:
        """Nothing on this node needs the channel: it may be forgotten."""
        return not self.subscribers and not self.streams and not self.reserved_ids and self.repair is None

    def stop(self) -> None:
        """Cancel the channel's timers and tasks (it is being forgotten)."""
        if self.hole_wait is not None:
            self.hole_wait.cancel()
            self.hole_wait = None


class ChannelRegistry:
    """The channels this node serves; `load` subscribes to the bus before reading the position."""

    def __init__(self, store: Store, bus: Bus, metrics: Metrics) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self._channels: dict[str, ChannelState] = {}
        self._loading: dict[str, asyncio.Future[ChannelState]] = {}
        # The newest commit (serial, epoch) the bus brought for a channel being loaded: it may have
        # landed after the Store read, and belongs to the position the channel starts from.
        self._heard: dict[str, tuple[int, str]] = {}

    def __len__(self) -> int:
        return len(self._channels)

    def get(self, name: str) -> ChannelState | None:
        """The channel's state if this node serves it now."""
        return self._channels.get(name)

    def require(self, name: str) -> ChannelState:
        """The channel's state; the caller knows it is served (it holds an attachment)."""
        return self._channels[name]

    def heard(self, name: str, serial: int, epoch: str) -> None:
        """The bus brought commits up to `serial` for a channel this node does not serve yet; if it
        is being loaded, they count in its starting position (they precede its first readers)."""
        if name in self._loading and serial > self._heard.get(name, (0, ""))[0]:
            self._heard[name] = (serial, epoch)

    def names(self) -> list[str]:
        """The channels served now."""
        return list(self._channels)

    async def load(self, name: str) -> ChannelState:
        """This node's state of a channel, loading its position from the Store the first time.

        Concurrent loads of one channel share one read; a failed load leaves nothing behind."""
        ch = self._channels.get(name)
        if ch is not None:
            return ch
        pending = self._loading.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[ChannelState] = asyncio.get_running_loop().create_future()
        self._loading[name] = future
        try:
            # Subscribe before reading the position, so nothing committed elsewhere falls between.
            self.bus.watch(name)
            await self.bus.ready(name)
            info = await self.store.channel(name)
        except BaseException as exc:
            self._loading.pop(name, None)
            self._heard.pop(name, None)
            if self._channels.get(name) is None:
                self.bus.unwatch(name)
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        heard, epoch = self._heard.pop(name, (0, ""))
        ch = self._channels.get(name)  # a commit may have created it meanwhile
        if ch is None:
            # A commit heard after the Store read starts the channel past it: without this, the
            # node would hold every later commit behind that "hole" until it gave up waiting.
            last = max(info.last_serial, heard)
            ch = ChannelState(name, info.epoch or epoch, last, info.first_serial)
            self._channels[name] = ch
            self.metrics.channels.set(len(self._channels))
        else:
            ch.head = max(ch.head, info.last_serial)
            ch.epoch = ch.epoch or info.epoch
            ch.order.exists_up_to(info.last_serial)
        self._loading.pop(name, None)
        future.set_result(ch)
        return ch

    def forget_if_idle(self, ch: ChannelState) -> None:
        """Drop a channel nothing on this node needs any more (and stop watching its bus)."""
        if ch.idle() and self._channels.get(ch.name) is ch:
            ch.stop()
            del self._channels[ch.name]
            self.bus.unwatch(ch.name)
            self.metrics.channels.set(len(self._channels))
