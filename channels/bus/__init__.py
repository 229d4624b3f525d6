"""The Bus port: carries committed messages and live events to every node serving a channel.

`LocalBus` serves one process. Receivers order durable messages by serial and fill gaps from the
Store, so an at-most-once bus (Redis pub/sub) still keeps promise 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from agentchat_server.core.records import Message


@dataclass(slots=True)
class BusEvent:
    """What crosses the bus: `messages` (committed, with serials, of one epoch) or a live `frame`."""

    channel: str
    messages: list[Message] | None = None
    frame: dict[str, Any] | None = None
    epoch: str = ""
    presence: bool = False  # a presence diff: only for readers that asked for presence
    control: dict[str, Any] | None = None  # node-to-node news about the channel (never sent to readers)


Handler = Callable[[BusEvent], None]


class Bus(Protocol):
    """Carries events to every node serving a channel, this one included, in publish order per channel."""

    async def start(self, handler: Handler, on_lost: Callable[[], None] = ...) -> None:
        """Begin delivering events to `handler`, synchronously and in publish order per channel;
        `on_lost` is called when events may have been lost (the node then resyncs from the Store)."""

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Stop delivering; what is queued for other nodes is sent first, for at most `flush_timeout`."""

    def publish(self, event: BusEvent) -> None:
        """Send an event to every node, this one included; never blocks."""

    def watch(self, channel: str) -> None:
        """This node serves the channel from now on."""

    async def ready(self, channel: str) -> None:
        """Return once events of a watched channel are sure to reach this node."""

    def unwatch(self, channel: str) -> None:
        """This node no longer serves the channel."""


class LocalBus:
    """One process: publish calls the handler directly."""

    def __init__(self) -> None:
        self._handler: Handler | None = None

    async def start(self, handler: Handler, on_lost: Callable[[], None] = lambda: None) -> None:
        """Deliver events to `handler` from now on (nothing is ever lost in one process)."""
        self._handler = handler

    async def stop(self, flush_timeout: float = 2.0) -> None:
        """Stop delivering."""
        self._handler = None

    def publish(self, event: BusEvent) -> None:
        """Hand the event to the handler at once."""
        if self._handler is not None:
            self._handler(event)

    def watch(self, channel: str) -> None:
        """Nothing to subscribe to in one process."""

    async def ready(self, channel: str) -> None:
        """Always ready."""

    def unwatch(self, channel: str) -> None:
        """Nothing to unsubscribe from."""
