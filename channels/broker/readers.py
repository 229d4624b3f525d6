"""Readers: attach and detach, the replay of a gap from the Store, and catch-ups at the reader's pace.

Nothing sent to a reader outside the live path is sent faster than the reader takes it: a fill
reads the Store a byte-bounded page at a time and waits for the reader's buffer to drain between
pages; the snapshots of an attach (open streams, presence) are written at once when they fit in
half the send buffer, and otherwise paced the same way, with the channel's live frames held
behind them so their order is kept. The snapshots come in a fixed order: active runs (parents
first), open streams, presence.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from agentchat_server.broker.connections import Attachment, Connection
from agentchat_server.broker.hub import Hub, message_event, wanted
from agentchat_server.broker.members import Members
from agentchat_server.broker.positions import Positions
from agentchat_server.broker.registry import ChannelRegistry, ChannelState
from agentchat_server.core.ordering import Cursor
from agentchat_server.core.sessions import attach_start
from agentchat_server.core.streams import snapshot_of
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code, Encoded, ProtocolError
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import Store
from agentchat_server.streambuf import StreamBuffer

log = logging.getLogger(__name__)

FILL_PAGE = 500  # messages per Store read of a fill (pages are also cut by bytes)
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]


class RunSnapshots(Protocol):
    """Where an attach gets the snapshots of a channel's active runs."""

    def snapshots(self, ch: ChannelState, att: Attachment) -> list[frames.Frame]:
        """`run_snapshot` frames of the runs this node knows; runs it learns later from the Store
        reach `att` then."""


class Readers:
    """Attachments of this node's connections to channels."""

    def __init__(
        self,
        settings: Settings,
        registry: ChannelRegistry,
        hub: Hub,
        members: Members,
        positions: Positions,
        store: Store,
        buffer: StreamBuffer,
        metrics: Metrics,
        spawn: Spawn,
        runs: RunSnapshots | None = None,
    ) -> None:
        self.runs = runs
        self.settings = settings
        self.registry = registry
        self.hub = hub
        self.members = members
        self.positions = positions
        self.store = store
        self.buffer = buffer
        self.metrics = metrics
        self.spawn = spawn
        self.watermark = settings.max_outbox_bytes // 2
        self.patience = settings.slow_consumer_timeout
        hub.start_fill = self.start_fill

    async def attach(
        self,
        conn: Connection,
        name: str,
        position: tuple[int, str | None] | None,
        presence: bool,
        ref: int | None,
        to_me: bool = False,
    ) -> None:
        """Attach, reply `attached` (with the room's policy), replay after `position`, then the
        snapshots of active runs, open streams and presence. `to_me`: deliver only messages to
        nobody, to this client, or from it."""
        conn.identity.require(name, "subscribe")
        if name not in conn.attachments and len(conn.attachments) >= self.settings.max_channels:
            raise ProtocolError(
                Code.TOO_MANY_CHANNELS, f"at most {self.settings.max_channels} channels per connection"
            )
        ch = await self.registry.load(name)
        if conn.closed:
            self.registry.forget_if_idle(ch)
            return
        if position is not None and position[0] > ch.head:
            # This node may not have heard of the newest commits yet (another node made them):
            # ask the Store, the authority, before telling the reader it is ahead.
            info = await self.store.channel(name)
            ch.epoch = ch.epoch or info.epoch
            if info.last_serial > ch.head:
                ch.head = info.last_serial
                ch.order.exists_up_to(info.last_serial)
                self.positions.watch(ch)
            if conn.closed:
                self.registry.forget_if_idle(ch)
                return
        start = attach_start(position, head=ch.head, first_serial=ch.first_serial, epoch=ch.epoch)
        old = conn.attachments.get(name)
        if old is not None:
            old.cancel_tasks()
        if ch.live:
            # Live frames queued this tick predate this reader: its snapshots below include them.
            self.hub.flush_live(ch)
        att = Attachment(conn, Cursor(start.start), presence, to_me=conn.client_id if to_me else None)
        # Live frames from now on wait behind the snapshots gathered below.
        att.backlog = deque()
        conn.attachments[name] = att
        ch.subscribers[conn] = att
        why = None if start.reason is None else frames.reason(*start.reason)
        policy = self.settings.policy(name).advertised()
        conn.send(frames.attached(name, ch.head, ch.epoch, start.resumed, ref=ref, why=why, policy=policy))
        if att.cursor.begin_fill(ch.head):
            self.start_fill(ch, att)
        catch_up = [] if self.runs is None else [Encoded(f) for f in self.runs.snapshots(ch, att)]
        catch_up.extend(Encoded(stream.snapshot_frame()) for stream in ch.streams.values())
        try:
            for header, chunks in await self.buffer.open_streams(name):
                if header.get("stream_id") not in ch.streams:
                    catch_up.append(Encoded(snapshot_of(header, chunks)))  # held by another node
            if presence:
                catch_up.extend(Encoded(page) for page in await self.members.sync_pages(name))
        except Exception:
            if conn.attachments.get(name) is att:
                self.detach(conn, name)
            raise
        if conn.attachments.get(name) is att:
            self._send_catch_up(att, catch_up)

    def _send_catch_up(self, att: Attachment, events: list[Encoded]) -> None:
        transport = att.connection.transport
        fmt = transport.fmt
        held = att.backlog or deque()
        room = self.watermark - transport.buffered()
        if sum(e.size(fmt) for e in events) + att.backlog_bytes <= room:
            att.backlog = None
            att.backlog_bytes = 0
            for event in events:
                att.connection.deliver(event)
            for event, _ in held:
                att.connection.deliver(event)
            return
        att.backlog = deque([(event, 0) for event in events] + list(held))
        att.pacer = self.spawn(self._pace(att), "catch-up")

    async def _pace(self, att: Attachment) -> None:
        """Write an attach's snapshots, then the live frames held behind them, at the reader's pace."""
        conn = att.connection
        transport = conn.transport
        backlog = att.backlog
        assert backlog is not None
        while backlog:
            if not await transport.drained(self.watermark, self.patience) or att.backlog is not backlog:
                return
            room = self.watermark - transport.buffered()
            while backlog and room > 0:
                event, held = backlog.popleft()
                att.backlog_bytes -= held
                room -= event.size(transport.fmt)
                conn.deliver(event)
        att.backlog = None
        att.backlog_bytes = 0
        att.pacer = None

    def detach(self, conn: Connection, name: str) -> None:
        """Detach one channel; the connection's presence in it leaves (in the background)."""
        att = conn.attachments.pop(name, None)
        if att is not None:
            att.cancel_tasks()
        if conn.session_id is not None and self.members.present(conn.session_id, name):
            self.spawn(self.members.leave(conn.session_id, name), "presence-leave")
        ch = self.registry.get(name)
        if ch is not None:
            ch.subscribers.pop(conn, None)
            self.registry.forget_if_idle(ch)

    def detach_all(self, conn: Connection) -> None:
        """The connection is gone (or lost its session): drop its attachments, keep its presence."""
        for name, att in list(conn.attachments.items()):
            att.cancel_tasks()
            ch = self.registry.get(name)
            if ch is not None:
                ch.subscribers.pop(conn, None)
                self.registry.forget_if_idle(ch)
        conn.attachments.clear()

    def start_fill(self, ch: ChannelState, att: Attachment) -> None:
        """Begin reading a reader's gap from the Store (its cursor is FILLING)."""
        if att.fill is None:
            att.fill = self.spawn(self._fill(ch, att), f"fill:{ch.name}")

    async def _fill(self, ch: ChannelState, att: Attachment) -> None:
        """Read a reader's gap from the Store and deliver it; turn it live when caught up."""
        conn, cursor = att.connection, att.cursor
        transport = conn.transport
        page_bytes = self.settings.max_page_bytes
        while True:
            if not await transport.drained(self.watermark, self.patience):
                return
            self.metrics.store_reads.labels("fill").inc()
            page = await self.store.history(
                ch.name, before=None, after=cursor.last, limit=FILL_PAGE, forwards=True, max_bytes=page_bytes
            )
            if conn.closed or conn.attachments.get(ch.name) is not att:
                return
            for message in page.messages:
                if not cursor.filled(message.serial):
                    if message.serial <= cursor.last:
                        continue
                    # Retention removed part of the gap: say so, never skip silently. The position
                    # is where delivery continues from: right before the next message.
                    why = frames.reason(Code.HISTORY_LOST, "history in the gap is gone")
                    conn.send(frames.attached(ch.name, message.serial - 1, ch.epoch, False, why=why))
                    cursor.last = message.serial - 1
                    cursor.filled(message.serial)
                if att.to_me is None or wanted(message, att.to_me):
                    conn.deliver(message_event(message, ch.epoch))
            self.metrics.deliveries.inc(len(page.messages))
            if not page.has_more and cursor.fill_done():
                att.fill = None
                return
            if not page.messages and cursor.target > cursor.last:
                # The Store has not got what the bus announced yet: give the commit a moment.
                await asyncio.sleep(0.01)

    async def occupancy(self, name: str) -> dict[str, int]:
        """Counts of this node's connections, subscribers and publishers, and presence members."""
        presence_members = await self.members.count(name)
        ch = self.registry.get(name)
        if ch is None:
            return {"connections": 0, "subscribers": 0, "publishers": 0, "presence_members": presence_members}
        conns = list(ch.subscribers)
        return {
            "connections": len(conns),
            "subscribers": sum(1 for c in conns if c.identity.can(name, "subscribe")),
            "publishers": sum(1 for c in conns if c.identity.can(name, "publish")),
            "presence_members": presence_members,
        }
