"""The seams between the SDK's views and the layers under them, as Protocols.

Views (Channel, Presence, Stream, Subscription, feeds) depend on these, never on the Client or on
each other's modules, so the import graph of `agentchat` has no cycles: the Client implements
`Hub`, the Channel implements `ChannelView`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Literal, Protocol

from agentchat.channel_state import Filter as Filter
from agentchat.events import ChannelEvent
from agentchat.models import HistoryPage, Message, Position
from agentchat.roommodels import RunUpdate
from agentchat.state import ClientState

Listener = Callable[[ChannelEvent], None]
"""Called with each event of one channel, in order, synchronously; it must not block."""

View = Literal["all", "main"]
"""Which messages history gives: `all` (events included) or `main` (top-level messages only)."""


class Hub(Protocol):
    """What views need from the asyncio layer: the core's state, requests, and a channel's events."""

    @property
    def state(self) -> ClientState:
        """The sans-I/O core (read its state; call its methods to change what is wanted)."""
        ...

    @property
    def limits(self) -> dict[str, int]:
        """The server's limits from the last `connected` frame."""
        ...

    def submit(self, frame: dict[str, Any], *, retain: bool = True) -> asyncio.Future[dict[str, Any]]:
        """Send a request; the future holds its reply."""
        ...

    async def request(self, frame: dict[str, Any], *, retain: bool = True) -> dict[str, Any]:
        """Send a request and return its reply (RequestError on `nack`)."""
        ...

    def listen(self, channel: str, callback: Listener) -> Callable[[], None]:
        """Call `callback` with every event of `channel`; returns the function that stops it."""
        ...


class ChannelView(Protocol):
    """What subscriptions, feeds, presence and stream writers need from their channel."""

    @property
    def name(self) -> str:
        """The channel's name."""
        ...

    @property
    def client(self) -> Hub:
        """The client the channel belongs to."""
        ...

    @property
    def position(self) -> Position | None:
        """The last durable message delivered on this connection (None before the first attach)."""
        ...

    async def attach(self) -> Position:
        """Attach (kept across reconnects) and return the position at that moment."""
        ...

    async def history(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        direction: Literal["backwards", "forwards"] = "backwards",
        thread: int | None = None,
        view: View = "all",
        filter: Filter = "all",
    ) -> HistoryPage:
        """One page of history (of one thread, top-level messages with `view="main"`, or the reader's
        own share with `filter="to_me"`)."""
        ...

    def messages(
        self,
        *,
        before: int | None = None,
        after: int | None = None,
        direction: Literal["backwards", "forwards"] = "backwards",
        limit: int | None = None,
        page_size: int = 100,
        thread: int | None = None,
        view: View = "all",
        filter: Filter = "all",
    ) -> AsyncIterator[Message]:
        """Every message of history between the bounds, page by page (following `has_more`)."""
        ...

    def listen(self, callback: Listener) -> Callable[[], None]:
        """Call `callback` with every event of this channel; returns the function that stops it."""
        ...

    @property
    def runs(self) -> Mapping[str, RunUpdate]:
        """The runs of the channel this client knows now, by run id."""
        ...
