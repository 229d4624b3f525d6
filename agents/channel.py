"""A Channel: a thin view over one channel's core state, with its requests (publish, history, streams)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Literal, overload

from agentchat.chatmodels import ReadMark
from agentchat.errors import AgentChatError
from agentchat.events import Attached, ChannelEvent, Ended
from agentchat.models import HistoryPage, Message, Position
from agentchat.ports import Filter, Hub, Listener, View
from agentchat.presence import Presence
from agentchat.roommodels import Policy, RunUpdate
from agentchat.rooms import AgentRoom
from agentchat.stream import Stream
from agentchat.subscription import EventFeed, StreamFeed, Subscription

log = logging.getLogger("agentchat.channel")


class Channel(AgentRoom):
    """One channel seen through a Client. Get it with `client.channel(name)`.

    `position` is the last durable message delivered on this connection; after a reconnect the
    channel re-attaches from it, so subscriptions continue without gap or duplicate.
    """

    def __init__(self, client: Hub, name: str) -> None:
        self._client = client
        self._name = name
        self._state = client.state.channel(name)
        self._changed = asyncio.Event()
        self.presence = Presence(self)
        client.listen(name, self._on_event)

    def __repr__(self) -> str:
        return f"<Channel {self.name} position={self.position}>"

    @property
    def name(self) -> str:
        """The channel's name."""
        return self._name

    @property
    def client(self) -> Hub:
        """The Client this channel belongs to."""
        return self._client

    @property
    def position(self) -> Position | None:
        """The last durable message delivered on this connection (None before the first attach)."""
        return self._state.position

    @property
    def policy(self) -> Policy:
        """The namespace's policy for agents (from the last `attached`; the defaults before)."""
        return self._state.policy or Policy()

    @property
    def runs(self) -> Mapping[str, RunUpdate]:
        """The runs of the channel this client knows now, by run id (active ones, then recent ended)."""
        return dict(self._state.book.runs)

    @property
    def attached(self) -> bool:
        """True while attached on the current connection."""
        return self._state.attached

    def listen(self, callback: Listener) -> Callable[[], None]:
        """Call `callback` with every event of this channel (`agentchat.events`), in order;
        returns the function that stops it."""
        return self._client.listen(self._name, callback)

    # --- attach / detach -------------------------------------------------------------------

    async def attach(self) -> Position:
        """Attach (once; kept across reconnects) and return the channel's position at that moment.

        Raises RequestError if the server refuses (e.g. `40300`); calling again retries.
        """
        core = self._client.state
        state = core.want(self._name)
        while not state.attached:
            if core.closed is not None:
                raise core.closed
            if state.error is not None:
                raise state.error
            if not state.wanted:
                state = core.want(self._name)  # detached meanwhile: this call wants it again
            self._changed.clear()
            await self._changed.wait()
        position = state.position
        assert position is not None
        return position

    async def detach(self) -> None:
        """Detach: stop receiving and leave presence in this channel; open views end."""
        if self._client.state.forget(self._name):
            try:
                await self._client.request({"type": "detach", "channel": self._name}, retain=False)
            except AgentChatError as exc:  # a dropped link detaches too
                log.debug("detach of %s: %s", self._name, exc)

    def subscribe(
        self, *, after: int | None = None, max_buffer: int = 1000, filter: Filter = "all"
    ) -> Subscription:
        """A view of durable messages after serial `after` (default: from now), live, in order.

        `filter="to_me"` attaches the channel so that only messages addressed to this client, to
        nobody, or sent by it arrive: one filter per channel and client (ValueError when another
        subscription chose the other one; `events()`, `streams()` and presence take it as it is).

        The channel is attached at this call. `await channel.subscribe()` returns once it is
        attached: every message committed after that is yielded. Use `async for message in ...` or
        `async with ... as sub`; see Subscription.
        """
        position = self._state.position
        start = after if after is not None else position.serial if position is not None else None
        behind = after is not None and position is not None and after < position.serial
        self._client.state.want(self._name, after, filter)
        return Subscription(self, start, max_buffer, behind=behind, filter=self._state.filter)

    def events(self, *, max_buffer: int = 1000) -> EventFeed:
        """A view of live-only frames: stream_*, ephemeral messages, presence (drops oldest when full).

        The channel is attached at this call."""
        feed = EventFeed(self, max_buffer)
        self._client.state.want(self._name)
        return feed

    def streams(self, *, max_streams: int = 1000) -> StreamFeed:
        """The streams being written in this channel, assembled: `async for update in channel.streams()`
        yields a StreamUpdate when one starts, grows or ends (see StreamFeed). Attaches at this call."""
        current = [assembly.update() for assembly in self._state.streams.values()]
        feed = StreamFeed(self, current, max_streams)
        self._client.state.want(self._name)
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
        thread: int | None = ...,
        to: Sequence[str] | None = ...,
        claim: int | None = ...,
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
        thread: int | None = ...,
        to: Sequence[str] | None = ...,
        claim: int | None = ...,
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
        thread: int | None = None,
        to: Sequence[str] | None = None,
        claim: int | None = None,
    ) -> int | None:
        """Publish one message; return its serial once committed (None for ephemeral).

        `to` addresses it to 1-32 client ids; `claim` is the fencing token of the claimed message it
        answers (`reply_to`): ClaimLost when that claim is no longer ours, ClaimHeld when another
        member holds it, NotAddressed under an `addressed` reply policy, LoopBrake past the budget.

        An `id` (a uuid if none is given) makes retries safe: the server keeps the message once.
        Raises ConflictError when `if_serial` is not the channel's last serial. With `thread` the
        message is a reply in the thread on that root: MessageNotFound when the root is no message,
        a 40004 RequestError whose `details["thread"]` is the real root when it is itself a reply.
        """
        message: dict[str, Any] = {"data": data, "name": name, "id": id or uuid.uuid4().hex}
        if reply_to is not None:
            message["reply_to"] = reply_to
        if thread is not None:
            message["thread"] = thread
        if to is not None:
            message["to"] = list(to)
        if claim is not None:
            message["claim"] = claim
        if ephemeral:
            message["ephemeral"] = True
        serials = await self.publish_many([message], if_serial=if_serial)
        return serials[0]

    async def publish_many(
        self, messages: Sequence[dict[str, Any]], *, if_serial: int | None = None
    ) -> list[int | None]:
        """Publish 1-100 messages atomically (dicts with data, name, id, reply_to, thread, ephemeral,
        to, claim, and a run's run_id, lane, tool_call)."""
        batch = [{**m, "id": m.get("id") or uuid.uuid4().hex} for m in messages]
        frame: dict[str, Any] = {"type": "publish", "channel": self._name, "messages": batch}
        if if_serial is not None:
            frame["if_serial"] = if_serial
        # Ephemeral messages are not worth resending after a drop; durable ones dedupe by id.
        durable = not any(m.get("ephemeral") for m in batch)
        reply = await self._client.request(frame, retain=durable)
        return list(reply.get("serials") or [])

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
        """One page of history; `backwards` (default) is newest first. Bounds are exclusive serials.

        Messages come in their current version. `view="main"` gives only top-level messages (no
        thread replies, no events): what a timeline shows; `thread=root` only that thread's replies;
        `filter="to_me"` only messages addressed to this client, to nobody, or sent by it.
        """
        frame: dict[str, Any] = {
            "type": "history",
            "channel": self._name,
            "limit": limit,
            "direction": direction,
        }
        if before is not None:
            frame["before"] = before
        if after is not None:
            frame["after"] = after
        if thread is not None:
            frame["thread"] = thread
        if view != "all":
            frame["view"] = view
        if filter != "all":
            frame["filter"] = filter
        reply = await self._client.request(frame)
        messages = [Message.from_wire(m, self._name) for m in reply.get("messages") or []]
        return HistoryPage(messages, bool(reply.get("has_more")))

    async def messages(
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
        """Every message of history between the exclusive bounds, newest first by default, read page
        by page (a page may be cut short: only `has_more` ends the paging); at most `limit` of them.
        `thread`, `view` and `filter` select as in `history`."""
        count = 0
        while limit is None or count < limit:
            size = page_size if limit is None else min(page_size, limit - count)
            page = await self.history(
                limit=size,
                before=before,
                after=after,
                direction=direction,
                thread=thread,
                view=view,
                filter=filter,
            )
            for message in page:
                yield message
                count += 1
            if not page.has_more or page.last_serial is None:
                return
            if direction == "backwards":
                before = page.last_serial
            else:
                after = page.last_serial

    async def occupancy(self) -> dict[str, int]:
        """Counts of connections, subscribers, publishers and presence members in the channel."""
        reply = await self._client.request({"type": "occupancy", "channel": self._name})
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
        thread: int | None = None,
        to: Sequence[str] | None = None,
        claim: int | None = None,
    ) -> Stream:
        """A token stream writer; use `async with channel.stream(...) as stream` (see Stream).
        With `thread` its final message is a reply in the thread on that root; `to` and `claim`
        as on `publish`."""
        return Stream(
            self,
            name=name,
            reply_to=reply_to,
            id=id,
            meta=meta,
            format=format,
            coalesce=coalesce,
            thread=thread,
            to=to,
            claim=claim,
        )

    # --- group chat: events on messages, read marks -------------------------------------------

    async def edit(self, serial: int, data: Any, *, id: str | None = None) -> int:
        """Replace the data of your message `serial`; return the serial of the edit event.

        An `id` (a uuid if none is given) makes a resend after a drop store one edit. Raises
        MessageNotFound (no such message, or an event), MessageDeleted, or a 40300 RequestError
        when the message is another member's.
        """
        frame = {"type": "edit", "channel": self._name, "serial": serial, "data": data}
        return _event_serial(await self._client.request({**frame, "id": id or uuid.uuid4().hex}))

    async def delete(self, serial: int) -> int:
        """Delete message `serial` (yours, or any with `moderate`): it becomes a tombstone. Returns
        the serial of the delete event (the first one's, when it was deleted already)."""
        frame = {"type": "delete", "channel": self._name, "serial": serial}
        return _event_serial(await self._client.request(frame))

    async def react(self, serial: int, reaction: str) -> int | None:
        """Add your `reaction` (one emoji, or a short name like `+1`) to message `serial`; return the
        event's serial, None when you had that reaction already. TooManyReactions past the bounds."""
        return await self._react(serial, reaction, remove=False)

    async def unreact(self, serial: int, reaction: str) -> int | None:
        """Take back your `reaction` to message `serial`; return the event's serial, None when you
        had not reacted so."""
        return await self._react(serial, reaction, remove=True)

    async def mark_read(self, serial: int) -> ReadMark:
        """Move your read mark in this channel to `serial` (stored; it never moves backwards).

        Returns the stored mark and whether it moved: a lower serial moves nothing, and the reply
        gives the mark another device set. A serial beyond the last message is a 40004 RequestError.
        """
        reply = await self._client.request({"type": "read", "channel": self._name, "serial": serial})
        stored = reply.get("serial")
        return ReadMark(stored if isinstance(stored, int) else serial, reply.get("moved") is True)

    async def _react(self, serial: int, reaction: str, *, remove: bool) -> int | None:
        frame: dict[str, Any] = {
            "type": "react",
            "channel": self._name,
            "serial": serial,
            "reaction": reaction,
        }
        if remove:
            frame["remove"] = True
        event = (await self._client.request(frame)).get("serial")
        return event if isinstance(event, int) else None

    async def cancel_stream(self, stream_id: str) -> int | None:
        """Cancel another member's open stream (needs `cancel`); return the final message's serial."""
        reply = await self._client.request({"type": "stream_cancel", "stream_id": stream_id})
        serial = reply.get("serial")
        return serial if isinstance(serial, int) else None

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Attached | Ended):
            self._changed.set()


def _event_serial(reply: dict[str, Any]) -> int:
    serial = reply.get("serial")
    if not isinstance(serial, int):
        raise AgentChatError(f"the server answered an edit or delete without a serial: {reply!r}")
    return serial
