"""A Channel: attach at a position, publish, read history, and fan incoming frames out to local views."""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal, overload

from agentchat.errors import AgentChatError, ContinuityLost, RequestError, request_error
from agentchat.models import HistoryPage, LiveEvent, Message, Position
from agentchat.presence import Presence
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, Subscription
from agentchat_server.protocol import Code, Sequencer, Verdict

if TYPE_CHECKING:
    from agentchat.client import Client

log = logging.getLogger("agentchat.channel")


class Channel:
    """One channel seen through a Client. Get it with `client.channel(name)`.

    `position` is the last durable message delivered on this connection; after a reconnect the
    channel re-attaches from it, so subscriptions continue without gap or duplicate.
    """

    def __init__(self, client: Client, name: str) -> None:
        self.client = client
        self.name = name
        self.presence = Presence(self)
        self._sequencer = Sequencer()
        self._epoch: str | None = None
        self._want = False
        self._attached = asyncio.Event()
        self._attaching: asyncio.Future[dict[str, Any]] | None = None
        self._error: AgentChatError | None = None
        self._subscriptions: weakref.WeakSet[Subscription] = weakref.WeakSet()
        self._feeds: weakref.WeakSet[EventFeed] = weakref.WeakSet()

    def __repr__(self) -> str:
        return f"<Channel {self.name} position={self.position}>"

    @property
    def position(self) -> Position | None:
        """The last durable message delivered (None before the first attach)."""
        serial = self._sequencer.position
        return None if serial is None else Position(serial, self._epoch)

    @property
    def attached(self) -> bool:
        """True while attached on the current connection."""
        return self._attached.is_set()

    # --- attach / detach -------------------------------------------------------------------

    async def attach(self) -> Position:
        """Attach (once; kept across reconnects) and return the channel's position at that moment.

        Raises RequestError if the server refuses (e.g. `40300`); calling again retries.
        """
        if not self._want:
            self._error = None
        self._want = True
        while not self._attached.is_set():
            if self._error is not None:
                raise self._error
            if self._attaching is None or self._attaching.done():
                if not self.client.connected:
                    await self.client.wait_connected()
                    continue
                self._attaching = self._send_attach()
            try:
                await asyncio.shield(self._attaching)
            except RequestError as exc:
                self._want = False
                raise exc
            except AgentChatError:
                raise
            except Exception:
                continue  # the connection ended; the next one re-attaches
        assert self.position is not None
        return self.position

    async def detach(self) -> None:
        """Detach: stop receiving and leave presence in this channel; open views end."""
        self._want = False
        self.presence._forget()
        # A later attach starts from then, not from here: the gap is not this view's business.
        self._sequencer = Sequencer()
        self._epoch = None
        if self._attached.is_set():
            self._attached.clear()
            try:
                await self.client.request({"type": "detach", "channel": self.name}, retain=False)
            except Exception as exc:  # a dropped link detaches too
                log.debug("detach of %s: %s", self.name, exc)
        self._end_views(StopAsyncIteration())

    def subscribe(self, *, after: int | None = None, max_buffer: int = 1000) -> Subscription:
        """A view of durable messages after serial `after` (default: from now), live, in order.

        Use `async for message in channel.subscribe()` or `async with channel.subscribe() as sub`.
        """
        if after is None and self._attached.is_set() and self.position is not None:
            after = self.position.serial
        subscription = Subscription(self, after, max_buffer)
        if after is not None and not self._want and self.position is None:
            # Not attached yet: attach from `after` so the server replays what follows it.
            self._sequencer = Sequencer(after)
        self._subscriptions.add(subscription)
        return subscription

    def events(self, *, max_buffer: int = 1000) -> EventFeed:
        """A view of live-only frames: stream_*, ephemeral messages, presence (drops oldest when full)."""
        feed = EventFeed(self, max_buffer)
        self._feeds.add(feed)
        return feed

    # --- requests --------------------------------------------------------------------------

    @overload
    async def publish(
        self,
        data: Any,
        *,
        name: str = ...,
        id: str | None = ...,
        reply_to: int | None = ...,
        if_serial: int | None = ...,
        ephemeral: Literal[False] = ...,
    ) -> int: ...

    @overload
    async def publish(
        self,
        data: Any,
        *,
        name: str = ...,
        id: str | None = ...,
        reply_to: int | None = ...,
        if_serial: int | None = ...,
        ephemeral: Literal[True],
    ) -> None: ...

    async def publish(
        self,
        data: Any,
        *,
        name: str = "message",
        id: str | None = None,
        reply_to: int | None = None,
        if_serial: int | None = None,
        ephemeral: bool = False,
    ) -> int | None:
        """Publish one message; return its serial once committed (None for ephemeral).

        An `id` (a uuid if none is given) makes retries safe: the server keeps the message once.
        Raises ConflictError when `if_serial` is not the channel's last serial.
        """
        message: dict[str, Any] = {"data": data, "name": name, "id": id or uuid.uuid4().hex}
        if reply_to is not None:
            message["reply_to"] = reply_to
        if ephemeral:
            message["ephemeral"] = True
        serials = await self.publish_many([message], if_serial=if_serial)
        return serials[0]

    async def publish_many(
        self, messages: Sequence[dict[str, Any]], *, if_serial: int | None = None
    ) -> list[int | None]:
        """Publish 1-100 messages atomically (dicts with data, name, id, reply_to, ephemeral)."""
        batch = [{**m, "id": m.get("id") or uuid.uuid4().hex} for m in messages]
        frame: dict[str, Any] = {"type": "publish", "channel": self.name, "messages": batch}
        if if_serial is not None:
            frame["if_serial"] = if_serial
        # Ephemeral messages are not worth resending after a drop; durable ones dedupe by id.
        durable = not any(m.get("ephemeral") for m in batch)
        reply = await self.client.request(frame, retain=durable)
        return list(reply.get("serials") or [])

    async def history(
        self,
        *,
        limit: int = 50,
        before: int | None = None,
        after: int | None = None,
        direction: Literal["backwards", "forwards"] = "backwards",
    ) -> HistoryPage:
        """One page of history; `backwards` (default) is newest first. Bounds are exclusive serials."""
        frame: dict[str, Any] = {
            "type": "history",
            "channel": self.name,
            "limit": limit,
            "direction": direction,
        }
        if before is not None:
            frame["before"] = before
        if after is not None:
            frame["after"] = after
        reply = await self.client.request(frame)
        messages = [Message.from_wire(m, self.name) for m in reply.get("messages") or []]
        return HistoryPage(messages, bool(reply.get("has_more")))

    async def occupancy(self) -> dict[str, int]:
        """Counts of connections, subscribers, publishers and presence members in the channel."""
        reply = await self.client.request({"type": "occupancy", "channel": self.name})
        return dict(reply.get("occupancy") or {})

    def stream(
        self,
        *,
        name: str = "message",
        reply_to: int | None = None,
        id: str | None = None,
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float = 0.04,
    ) -> Stream:
        """A token stream writer; use `async with channel.stream(...) as stream` (see Stream)."""
        return Stream(self, name=name, reply_to=reply_to, id=id, meta=meta, format=format, coalesce=coalesce)

    async def cancel_stream(self, stream_id: str) -> int | None:
        """Cancel another member's open stream (needs `cancel`); return the final message's serial."""
        reply = await self.client.request({"type": "stream_cancel", "stream_id": stream_id})
        serial = reply.get("serial")
        return serial if isinstance(serial, int) else None

    # --- connection events (called by the Client) ------------------------------------------

    def _send_attach(self) -> asyncio.Future[dict[str, Any]]:
        frame: dict[str, Any] = {"type": "attach", "channel": self.name, "presence": True}
        if self.position is not None:
            frame["position"] = self.position.to_wire()
        future = self.client.submit(frame, retain=False)
        future.add_done_callback(self._attach_done)
        return future

    def _attach_done(self, future: asyncio.Future[dict[str, Any]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, RequestError):
            log.warning("attach %s refused: %s", self.name, error)
            self._want = False
            self._error = error
            self._end_views(error)

    async def _restore(self) -> None:
        if not self._want:
            return
        self._attaching = self._send_attach()
        try:
            await self._attaching
        except RequestError:
            return
        try:
            await self.presence._restore()
        except RequestError as exc:
            log.warning("re-entering presence in %s refused: %s", self.name, exc)

    def _link_lost(self) -> None:
        self._attached.clear()

    def _shut(self, error: AgentChatError) -> None:
        self._attached.clear()
        self._end_views(error)

    def _end_views(self, error: BaseException) -> None:
        for subscription in list(self._subscriptions):
            subscription._finish(error)
        for feed in list(self._feeds):
            feed._finish(error)

    # --- incoming frames -------------------------------------------------------------------

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            if frame.get("serial") is None:
                self._live(frame)
            else:
                self._on_message(frame)
        elif kind == "attached":
            self._on_attached(frame)
        elif kind == "detached":
            if frame.get("code") is not None:
                error = request_error(frame)
                log.warning("server detached %s: %s", self.name, error)
                self._want = False
                self._attached.clear()
                self._error = error
                self._end_views(error)
        elif kind in ("presence", "presence_sync"):
            self.presence._on_frame(frame)
            self._live(frame)
        else:
            self._live(frame)

    def _on_attached(self, frame: dict[str, Any]) -> None:
        position = Position.from_wire(frame.get("position"))
        resumed = frame.get("resumed", True) is not False
        self._sequencer.attached(position.serial, resumed)
        if not resumed or self._epoch is None:
            self._epoch = position.epoch
        if not resumed:
            reason = frame.get("reason") or {}
            lost = ContinuityLost(
                self.name,
                int(reason.get("code", Code.HISTORY_LOST)),
                str(reason.get("message", "")),
                position,
            )
            for subscription in list(self._subscriptions):
                subscription._lost(lost)
        self.presence._on_attached()
        self._attached.set()

    def _on_message(self, frame: dict[str, Any]) -> None:
        serial = int(frame["serial"])
        before = self._sequencer.position
        verdict = self._sequencer.offer(serial)
        if verdict is Verdict.GAP:
            # The server promises no gaps; never skip one: attach again from the position and hold
            # newer serials until the reply (the replay brings them in order).
            log.error("gap in %s: got serial %d after %s; re-attaching", self.name, serial, before)
            if self.client.connected:
                self._attaching = self._send_attach()
            return
        if verdict is not Verdict.DELIVER:
            return
        message = Message.from_wire(frame, self.name)
        for subscription in list(self._subscriptions):
            subscription._offer(message)

    def _live(self, frame: dict[str, Any]) -> None:
        if not self._feeds:
            return
        event = LiveEvent(str(frame.get("type")), self.name, frame)
        for feed in list(self._feeds):
            feed._offer(event)
