"""The broker: the async coordinator of channels, sessions, fan-out, presence and history.

Transports hand it validated frames and identities; it owns the Store, the Bus, the committer
and every timer. Stream operations live in `agentchat_server.broker.streams`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import time
from collections.abc import Sequence
from typing import Any

from agentchat_server.auth import Authenticator, Identity
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.state import Attachment, ChannelState, Connection, Session, now_ms
from agentchat_server.broker.streams import StreamManager
from agentchat_server.bus import Bus, BusEvent
from agentchat_server.core.ordering import Cursor, Offer
from agentchat_server.core.presence import Diff
from agentchat_server.core.ratelimit import TokenBucket
from agentchat_server.metrics import Metrics
from agentchat_server.outbox import Encoded, Flusher, Outbox
from agentchat_server.protocol import (
    CloseCode,
    Code,
    Format,
    OutgoingMessage,
    ProtocolError,
    ResumeToken,
    encode_value,
)
from agentchat_server.settings import Settings
from agentchat_server.store import (
    Append,
    AppendResult,
    NewMessage,
    OpenMarker,
    Operation,
    Store,
    StoredMessage,
)

log = logging.getLogger(__name__)

FILL_PAGE = 500
SWEEP_SLICES = 8  # the connection sweep runs in this many slices per period


def dumps(value: Any) -> str:
    """JSON text of client data; ProtocolError(INVALID_VALUE) for NaN, huge ints, bad unicode."""
    return encode_value(value)


class Broker:
    """Owns every live record of one node. Create, `await start()`, serve, `await close()`."""

    def __init__(
        self, settings: Settings, store: Store, bus: Bus, auth: Authenticator, metrics: Metrics
    ) -> None:
        self.settings = settings
        self.store = store
        self.bus = bus
        self.auth = auth
        self.metrics = metrics
        self.node_id = secrets.token_hex(4)
        self._ids = _RandomIds()
        self.channels: dict[str, ChannelState] = {}
        self._loading: dict[str, asyncio.Future[ChannelState]] = {}
        self.sessions: dict[str, Session] = {}
        self.connections: set[Connection] = set()
        self.per_client: dict[str, int] = {}
        self.committer = Committer(store, metrics, self._on_committed, settings.commit_batch)
        self.flusher = Flusher()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.Task[None] | None = None
        self.closing = False
        self.streams = StreamManager(self)
        self._bytes_closed = 0  # bytes written by connections that have ended
        metrics.count_bytes_out(self.bytes_out)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.open()
        await self.bus.start(self._on_bus)
        self.committer.start()
        await self.streams.abort_orphans()
        self._sweeper = asyncio.create_task(self._sweep(), name="agentchat-sweeper")
        if self.settings.retention_days is not None:
            self.spawn(self._retention(), "agentchat-retention")

    async def close(self) -> None:
        """End open streams as aborted, close connections (1001), commit what is queued."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.streams.abort_all("server shutting down")
        for conn in list(self.connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        for session in self.sessions.values():
            session.cancel_timers()
        await self.committer.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bus.stop()
        await self.store.close()

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task the broker owns (cancelled at close; errors logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # --- connections and sessions --------------------------------------------------------

    def bytes_out(self) -> int:
        """Bytes written to client transports since start, ended connections included."""
        return self._bytes_closed + sum(conn.outbox.sent_bytes for conn in self.connections)

    def new_connection(
        self, identity: Identity, fmt: Format, outbox: Outbox, closer: Any, *, sse: bool = False
    ) -> Connection:
        """Register a transport; raises ProtocolError when its client has too many connections."""
        if self.closing:
            raise ProtocolError(Code.UNAVAILABLE, "server shutting down")
        count = self.per_client.get(identity.client_id, 0)
        if count >= self.settings.max_connections_per_client:
            raise ProtocolError(Code.TOO_MANY_CONNECTIONS, "too many connections for this client_id")
        now = time.monotonic()
        conn = Connection(
            identity,
            fmt,
            outbox,
            closer,
            now,
            sse=sse,
        )
        self.per_client[identity.client_id] = count + 1
        self.connections.add(conn)
        self.metrics.connections.labels("sse" if sse else "ws").inc()
        return conn

    def connect(self, conn: Connection, resume: ResumeToken | None) -> dict[str, Any]:
        """Bind a session to a new connection (resumed if possible); returns the `connected` frame."""
        identity = conn.identity
        reason: dict[str, Any] | None = None
        session: Session | None = None
        if resume is not None:
            found = self.sessions.get(resume.session_id)
            if (
                found is not None
                and secrets.compare_digest(found.key, resume.key)
                and found.client_id == identity.client_id
            ):
                session = found
                previous = session.connection
                if previous is not None and previous is not conn:
                    # The old transport loses the session; its drop must not start grace timers.
                    previous.session = None
                    self._drop_attachments(previous)
                    previous.close(CloseCode.SESSION_TAKEN_OVER, "session resumed elsewhere")
                session.cancel_timers()
            else:
                reason = {"code": Code.SESSION_EXPIRED, "message": "session unknown or expired"}
        resumed = session is not None
        if session is None:
            session = Session(
                secrets.token_urlsafe(12), secrets.token_urlsafe(24), identity.client_id, identity.kind
            )
            self.sessions[session.session_id] = session
            self.metrics.sessions.set(len(self.sessions))
        session.connection = conn
        conn.session = session
        frame: dict[str, Any] = {
            "type": "connected",
            "session_id": session.session_id,
            "key": session.key,
            "client_id": identity.client_id,
            "kind": identity.kind,
            "resumed": resumed,
            "channels": sorted(session.channels),
            "heartbeat_interval": self.settings.heartbeat_interval,
            "resume_window": self.settings.resume_window,
            "expires_at": identity.expires_at,
            "limits": {
                "max_frame_bytes": self.settings.max_frame_bytes,
                "max_message_bytes": self.settings.max_message_bytes,
                "history_max_page": self.settings.history_max_page,
                "max_channels": self.settings.max_channels,
                "max_stream_bytes": self.settings.max_stream_bytes,
            },
        }
        if reason is not None:
            frame["reason"] = reason
        return frame

    def disconnect(self, conn: Connection, graceful: bool) -> None:
        """A transport ended. Graceful (client closed with 1000): the session ends now.
        Otherwise presence and streams wait out their grace and the session its resume window."""
        if conn not in self.connections:
            return
        conn.closed = True
        self.connections.discard(conn)
        self._bytes_closed += conn.outbox.sent_bytes
        self.metrics.connections.labels("sse" if conn.sse else "ws").dec()
        left = self.per_client.get(conn.identity.client_id, 1) - 1
        if left:
            self.per_client[conn.identity.client_id] = left
        else:
            self.per_client.pop(conn.identity.client_id, None)
        session = conn.session
        if session is not None and session.connection is conn:
            session.channels = tuple(conn.attachments)
        self._drop_attachments(conn)
        if session is None or session.connection is not conn:
            return
        session.connection = None
        if graceful or self.closing or conn.sse:
            self.end_session(session, "left")
            return
        loop = asyncio.get_running_loop()
        s = self.settings
        if session.presence:
            session.timers.append(loop.call_later(s.presence_grace, self._presence_timeout, session))
        if session.streams:
            session.timers.append(loop.call_later(s.stream_grace, self._stream_timeout, session))
        session.timers.append(loop.call_later(s.resume_window, self._session_timeout, session))

    def _drop_attachments(self, conn: Connection) -> None:
        for name, att in list(conn.attachments.items()):
            if att.fill is not None:
                att.fill.cancel()
            ch = self.channels.get(name)
            if ch is not None:
                ch.subscribers.pop(conn, None)
                self._maybe_forget(ch)
        conn.attachments.clear()

    def _presence_timeout(self, session: Session) -> None:
        if session.connection is None:
            self._leave_all(session)

    def _stream_timeout(self, session: Session) -> None:
        if session.connection is None:
            self.streams.abort_session(session, "writer lost")

    def _session_timeout(self, session: Session) -> None:
        if session.connection is None:
            self.end_session(session, "expired")

    def end_session(self, session: Session, why: str) -> None:
        session.cancel_timers()
        self._leave_all(session)
        self.streams.abort_session(session, f"session {why}")
        self.sessions.pop(session.session_id, None)
        self.metrics.sessions.set(len(self.sessions))

    def _leave_all(self, session: Session) -> None:
        for name in list(session.presence):
            self._presence_leave(session, name)

    # --- channels ------------------------------------------------------------------------

    async def channel(self, name: str) -> ChannelState:
        """This node's state of a channel, loading its position from the Store the first time."""
        ch = self.channels.get(name)
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
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it
            raise
        ch = self.channels.get(name)  # a commit may have created it meanwhile
        if ch is None:
            ch = ChannelState(name, info.epoch, info.last_serial, info.first_serial)
            self.channels[name] = ch
            self.metrics.channels.set(len(self.channels))
        else:
            ch.head = max(ch.head, info.last_serial)
            ch.epoch = ch.epoch or info.epoch
        self._loading.pop(name, None)
        future.set_result(ch)
        return ch

    def _maybe_forget(self, ch: ChannelState) -> None:
        if ch.idle() and self.channels.get(ch.name) is ch:
            del self.channels[ch.name]
            self.bus.unwatch(ch.name)
            self.metrics.channels.set(len(self.channels))

    # --- attach / detach -----------------------------------------------------------------

    async def attach(
        self,
        conn: Connection,
        name: str,
        position: tuple[int, str | None] | None,
        presence: bool,
        ref: int | None,
    ) -> None:
        """Attach, reply `attached`, replay after `position`, then stream snapshots and presence."""
        conn.identity.require(name, "subscribe")
        if name not in conn.attachments and len(conn.attachments) >= self.settings.max_channels:
            raise ProtocolError(
                Code.TOO_MANY_CHANNELS, f"at most {self.settings.max_channels} channels per connection"
            )
        ch = await self.channel(name)
        if conn.closed:
            return
        resumed, reason, start = True, None, ch.head
        if position is not None:
            serial, epoch = position
            if epoch and ch.epoch and epoch != ch.epoch:
                resumed, reason = False, {"code": Code.EPOCH_CHANGED, "message": "channel history was reset"}
            elif serial > ch.head:
                resumed, reason = (
                    False,
                    {"code": Code.EPOCH_CHANGED, "message": "position is ahead of the channel"},
                )
            elif serial + 1 < ch.first_serial:
                resumed, reason = (
                    False,
                    {"code": Code.HISTORY_LOST, "message": "history after the position is gone"},
                )
            else:
                start = serial
        old = conn.attachments.get(name)
        if old is not None and old.fill is not None:
            old.fill.cancel()
        if ch.live:
            # Live frames queued this tick predate this reader: its snapshots below include them.
            self._fan_out_live(ch)
        att = Attachment(conn, Cursor(start), presence)
        conn.attachments[name] = att
        ch.subscribers[conn] = att
        if conn.sse:
            conn.sse_epoch = ch.epoch
        reply: dict[str, Any] = {
            "type": "attached",
            "channel": name,
            "position": {"serial": ch.head, "epoch": ch.epoch},
            "resumed": resumed,
        }
        if ref is not None:
            reply["ref"] = ref
        if reason is not None:
            reply["reason"] = reason
        conn.send(reply)
        if att.cursor.begin_fill(ch.head):
            att.fill = self.spawn(self._fill(ch, att), f"fill:{name}")
        for stream in ch.streams.values():
            conn.send(stream.snapshot_frame())
        if presence:
            page_size = self.settings.presence_page_size
            for members, last in ch.presence.pages(page_size):
                conn.send(
                    {
                        "type": "presence_sync",
                        "channel": name,
                        "members": [m.to_wire() for m in members],
                        "last": last,
                    }
                )

    def detach(self, conn: Connection, name: str) -> None:
        att = conn.attachments.pop(name, None)
        if att is not None and att.fill is not None:
            att.fill.cancel()
        if conn.session is not None:
            if name in conn.session.presence:
                self._presence_leave(conn.session, name)
        ch = self.channels.get(name)
        if ch is not None:
            ch.subscribers.pop(conn, None)
            self._maybe_forget(ch)

    async def _fill(self, ch: ChannelState, att: Attachment) -> None:
        """Read a reader's gap from the Store and deliver it; turn it live when caught up."""
        conn, cursor = att.connection, att.cursor
        while True:
            page = await self.store.history(
                ch.name, before=None, after=cursor.last, limit=FILL_PAGE, forwards=True
            )
            if conn.closed or conn.attachments.get(ch.name) is not att:
                return
            for message in page:
                if not cursor.filled(message.serial):
                    if message.serial > cursor.last + 1:
                        # Retention removed part of the gap: say so, never skip silently.
                        conn.send(
                            {
                                "type": "attached",
                                "channel": ch.name,
                                "position": {"serial": cursor.last, "epoch": ch.epoch},
                                "resumed": False,
                                "reason": {
                                    "code": Code.HISTORY_LOST,
                                    "message": "history in the gap is gone",
                                },
                            }
                        )
                        cursor.last = message.serial
                    else:
                        continue
                conn.deliver(Encoded(message.to_wire()), message.serial, ch.epoch)
            if len(page) < FILL_PAGE and cursor.fill_done():
                att.fill = None
                return
            if not page and cursor.target > cursor.last:
                # The Store has not got what the bus announced yet: give the commit a moment.
                await asyncio.sleep(0.01)
            # Replay follows the reader's pace; the transport offers no drain event to await here.
            while conn.outbox.buffered() > conn.outbox.limit // 2 and not conn.closed:  # noqa: ASYNC110
                await asyncio.sleep(0.005)

    # --- publish -------------------------------------------------------------------------

    def prepare_messages(
        self,
        identity: Identity,
        channel: str,
        messages: Sequence[OutgoingMessage],
        *,
        stream_fields: bool = False,
    ) -> list[NewMessage]:
        """Validate sizes and ids, stamp sender and time; raises ProtocolError."""
        ts = now_ms()
        prepared: list[NewMessage] = []
        seen: set[str] = set()
        limit = self.settings.max_message_bytes
        for m in messages:
            data_json = dumps(m.data)
            if len(data_json) > limit:
                raise ProtocolError(Code.MESSAGE_TOO_LARGE, f"message data exceeds {limit} bytes")
            message_id = m.id or self._ids.new()
            if message_id in seen:
                raise ProtocolError(Code.INVALID_VALUE, "two messages of one batch share an id")
            seen.add(message_id)
            prepared.append(
                NewMessage(
                    message_id,
                    m.name,
                    m.data,
                    data_json,
                    identity.client_id,
                    identity.kind,
                    ts,
                    m.reply_to,
                    fresh_id=m.id is None,  # 128 random bits: cannot collide with a stored id
                )
            )
        return prepared

    def publish(
        self,
        identity: Identity,
        channel: str,
        messages: Sequence[OutgoingMessage],
        if_serial: int | None,
        conn: Connection | None = None,
    ) -> asyncio.Future[AppendResult | None] | list[None]:
        """Check rights and limits, then fan out (ephemeral) or queue for commit (durable).

        Returns a future of the commit for durable messages; the caller acks when it resolves."""
        identity.require(channel, "publish")
        if conn is not None:
            now = time.monotonic()
            bucket = conn.publish_bucket
            if bucket is None:
                bucket = conn.publish_bucket = TokenBucket(
                    self.settings.publish_rate, self.settings.publish_burst, now
                )
            if not bucket.take(now):
                raise ProtocolError(
                    Code.RATE_LIMITED, "publish rate exceeded", retry_after=round(bucket.retry_after(), 3)
                )
        prepared = self.prepare_messages(identity, channel, messages)
        if messages[0].ephemeral:
            for m, sent in zip(prepared, messages, strict=True):
                frame: dict[str, Any] = {
                    "type": "message",
                    "channel": channel,
                    "serial": None,
                    "name": m.name,
                    "data": m.data,
                    "client_id": m.client_id,
                    "kind": m.kind,
                    "ts": m.ts,
                    "ephemeral": True,
                }
                if sent.id is not None:
                    frame["id"] = sent.id  # live-only: nothing to dedupe, so no server-made id
                if m.reply_to is not None:
                    frame["reply_to"] = m.reply_to
                self.bus.publish(BusEvent(channel, frame=frame, origin=self.node_id))
            self.metrics.publishes_ephemeral.inc(len(prepared))
            return [None] * len(prepared)
        self.metrics.publishes_durable.inc(len(prepared))
        return self.committer.submit(Append(channel, prepared, if_serial))

    @staticmethod
    def publish_reply(result: AppendResult | None) -> dict[str, Any]:
        """The ack fields for a committed publish; raises ProtocolError on an if_serial conflict."""
        assert result is not None
        if result.conflict is not None:
            raise ProtocolError(Code.CONFLICT, "channel moved on (if_serial)", last_serial=result.conflict)
        return {"serials": result.serials, "duplicates": result.duplicates}

    def _on_committed(self, ops: Sequence[Operation], results: Sequence[AppendResult | None]) -> None:
        # One bus event per channel per commit (one transaction: one epoch per channel), so
        # each live reader gets the commit's messages in one write.
        batches: dict[str, tuple[str, list[StoredMessage]]] = {}
        for op, result in zip(ops, results, strict=True):
            if isinstance(op, OpenMarker) or result is None or not result.stored:
                continue
            batches.setdefault(op.channel, (result.epoch, []))[1].extend(result.stored)
        for channel, (epoch, messages) in batches.items():
            self.bus.publish(BusEvent(channel, messages=messages, origin=self.node_id, epoch=epoch))

    # --- fan-out -------------------------------------------------------------------------

    def _on_bus(self, event: BusEvent) -> None:
        ch = self.channels.get(event.channel)
        if ch is None:
            return
        if event.messages:
            if not ch.epoch:
                ch.epoch = event.epoch
            self._fan_out_messages(ch, event.messages)
        elif event.frame is not None:
            self.fan_out_frame(ch, event.frame, presence_only=event.presence)

    def _fan_out_messages(self, ch: ChannelState, messages: Sequence[StoredMessage]) -> None:
        """Deliver committed messages (ascending serials) to every reader in order.

        The hot path: a live WebSocket reader right behind the first serial gets the whole run
        in one write of bytes built once per format. Anyone else goes message by message through
        its cursor (duplicates dropped, a gap starts a fill from the Store)."""
        first, last = messages[0].serial, messages[-1].serial
        if last > ch.head:
            ch.head = last
        if not ch.subscribers:
            return
        n = len(messages)
        encoded = [Encoded(m.to_wire()) for m in messages]
        run = first - 1 if last - first == n - 1 else -1  # cursor position that takes the whole run
        as_json = as_msgpack = b""
        count = 0
        for conn, att in ch.subscribers.items():
            cursor = att.cursor
            if cursor.last == run and not cursor.filling and not conn.sse:
                cursor.last = last
                count += n
                # One committed batch, one write per reader now: nothing to coalesce it with.
                if conn.fmt == "msgpack":
                    if not as_msgpack:
                        as_msgpack = _joined(encoded, "msgpack")
                    conn.outbox.send_now(as_msgpack)
                else:
                    if not as_json:
                        as_json = _joined(encoded, "json")
                    conn.outbox.send_now(as_json)
                continue
            for event, message in zip(encoded, messages, strict=True):
                offer = cursor.offer(message.serial)
                if offer is Offer.DELIVER:
                    count += 1
                    conn.deliver(event, message.serial, ch.epoch)
                elif offer is Offer.START_FILL and att.fill is None:
                    att.fill = self.spawn(self._fill(ch, att), f"fill:{ch.name}")
        self.metrics.deliveries.inc(count)

    def fan_out_frame(self, ch: ChannelState, frame: dict[str, Any], presence_only: bool = False) -> None:
        """Queue a live frame (ephemeral message, stream frame, presence diff) for the channel's
        readers; the frames of one loop tick go out together, in order, in the flush pass."""
        if not ch.subscribers:
            return
        if not ch.live:
            self.flusher.defer(self._fan_out_live, ch)
        ch.live.append((Encoded(frame), presence_only))

    def _fan_out_live(self, ch: ChannelState) -> None:
        events, ch.live = ch.live, []
        if not events or not ch.subscribers:
            return
        mixed = any(presence_only for _, presence_only in events)
        # Joined bytes (and their frame count) per wire format, with or without presence diffs.
        joined: dict[tuple[Format, bool], tuple[bytes, int]] = {}
        count = 0
        for conn, att in ch.subscribers.items():
            wants_all = att.presence or not mixed
            if conn.sse:
                for encoded, presence_only in events:
                    if wants_all or not presence_only:
                        conn.deliver(encoded)
                        count += 1
                continue
            key = (conn.fmt, wants_all)
            batch = joined.get(key)
            if batch is None:
                chosen = [e for e, presence_only in events if wants_all or not presence_only]
                batch = joined[key] = (_joined(chosen, conn.fmt), len(chosen))
            if batch[1]:
                # In the flush pass (or an attach draining the queue): write now, no second pass.
                conn.outbox.send_now(batch[0])
                count += batch[1]
        self.metrics.deliveries.inc(count)

    # --- history -------------------------------------------------------------------------

    async def history(
        self,
        identity: Identity,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
    ) -> dict[str, Any]:
        identity.require(channel, "history")
        limit = min(limit, self.settings.history_max_page)
        rows = await self.store.history(
            channel, before=before, after=after, limit=limit + 1, forwards=forwards
        )
        has_more = len(rows) > limit
        return {"messages": [m.to_wire() for m in rows[:limit]], "has_more": has_more}

    # --- presence ------------------------------------------------------------------------

    def presence(self, conn: Connection, name: str, action: str, data: Any) -> None:
        conn.identity.require(name, "presence")
        session = conn.session
        if session is None or name not in conn.attachments:
            raise ProtocolError(Code.NOT_ATTACHED, f"attach {name} before entering its presence")
        if len(dumps(data)) > self.settings.max_message_bytes:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, "presence data too large")
        ch = self.channels[name]
        if action == "leave":
            self._presence_leave(session, name)
            return
        diff = ch.presence.enter(session.client_id, session.session_id, session.kind, data, now_ms())
        session.add_presence(name)
        if diff is not None:
            self._broadcast_presence(ch, diff)

    def _presence_leave(self, session: Session, name: str) -> None:
        session.drop_presence(name)
        ch = self.channels.get(name)
        if ch is None:
            return
        diff = ch.presence.leave(session.session_id, now_ms())
        if diff is not None:
            self._broadcast_presence(ch, diff)
        self._maybe_forget(ch)

    def _broadcast_presence(self, ch: ChannelState, diff: Diff) -> None:
        frame = {
            "type": "presence",
            "channel": ch.name,
            "action": diff.action,
            "member": diff.member.to_wire(),
        }
        self.bus.publish(BusEvent(ch.name, frame=frame, origin=self.node_id, presence=True))

    async def presence_members(self, identity: Identity, name: str) -> list[dict[str, Any]]:
        identity.require(name, "subscribe")
        ch = self.channels.get(name)
        return [] if ch is None else [m.to_wire() for m in ch.presence.members()]

    async def occupancy(self, identity: Identity, name: str) -> dict[str, int]:
        identity.require(name, "subscribe")
        ch = self.channels.get(name)
        if ch is None:
            return {"connections": 0, "subscribers": 0, "publishers": 0, "presence_members": 0}
        conns = list(ch.subscribers)
        return {
            "connections": len(conns),
            "subscribers": sum(1 for c in conns if c.identity.can(name, "subscribe")),
            "publishers": sum(1 for c in conns if c.identity.can(name, "publish")),
            "presence_members": len(ch.presence),
        }

    def spend_bad_frame(self, conn: Connection) -> bool:
        """Count a bad frame against the connection's budget; False when the budget is spent."""
        now = time.monotonic()
        if conn.bad_frames is None:
            limit = self.settings.max_bad_frames
            conn.bad_frames = TokenBucket(limit / 60.0, limit, now)
        return conn.bad_frames.take(now)

    # --- retention -----------------------------------------------------------------------

    async def prune_now(self) -> int:
        """Delete messages older than the retention; returns how many channels lost some.
        Readers from before a channel's new start learn of it (80002)."""
        days = self.settings.retention_days
        if days is None:
            return 0
        first_serials = await self.store.prune(now_ms() - int(days * 86_400_000))
        for name, first in first_serials.items():
            ch = self.channels.get(name)
            if ch is not None:
                ch.first_serial = max(ch.first_serial, first)
        return len(first_serials)

    async def _retention(self) -> None:
        assert self.settings.retention_days is not None
        period = max(1.0, min(3600.0, self.settings.retention_days * 86_400 / 2))
        while True:
            try:
                await self.prune_now()
            except Exception:
                log.exception("retention prune failed")
            await asyncio.sleep(period)

    # --- auth renewal, heartbeats, dead peers --------------------------------------------

    def renew(self, conn: Connection, token: str) -> int:
        identity = self.auth.verify(token)
        if identity.client_id != conn.identity.client_id or identity.kind != conn.identity.kind:
            raise ProtocolError(Code.TOKEN_INVALID, "a renewed token must be for the same client_id and kind")
        conn.identity = identity
        conn.renew_sent = False
        # Capabilities may have shrunk: detach what the new token no longer allows.
        for name in list(conn.attachments):
            if not identity.can(name, "subscribe"):
                self.detach(conn, name)
                conn.send(
                    {
                        "type": "detached",
                        "channel": name,
                        "code": Code.FORBIDDEN,
                        "message": "capability removed",
                    }
                )
        return identity.expires_at

    async def _sweep(self) -> None:
        """Check every connection once per period (heartbeats, expiry), a slice at a time: one
        pass over 10,000 connections would stall fan-out for milliseconds at once."""
        interval = self.settings.heartbeat_interval
        period = max(0.05, min(1.0, interval / 3))
        while True:
            conns = list(self.connections)
            size = -(-len(conns) // SWEEP_SLICES)
            for k in range(SWEEP_SLICES):
                await asyncio.sleep(period / SWEEP_SLICES)
                batch = conns[k * size : (k + 1) * size]
                try:
                    self._sweep_once(batch, time.monotonic(), time.time(), interval)
                except Exception:
                    log.exception("sweep failed")

    def _sweep_once(self, conns: list[Connection], mono: float, wall: float, interval: float) -> None:
        for conn in conns:
            if conn.closed:
                continue
            if conn.outbox.transport.is_closing():
                conn.close(CloseCode.GOING_AWAY, "transport closed")
                continue
            expires = conn.identity.expires_at
            if wall >= expires:
                conn.close(CloseCode.TOKEN_EXPIRED, "token expired")
                continue
            lifetime_left = expires - wall
            if not conn.renew_sent and not conn.sse and lifetime_left <= 30:
                conn.renew_sent = True
                conn.send({"type": "auth_renew", "expires_at": expires})
            if not conn.sse and mono - conn.last_recv > 2 * interval:
                conn.close(
                    CloseCode.HEARTBEAT_TIMEOUT, "no frame from the client within 2 heartbeat intervals"
                )
                continue
            sent = conn.outbox.sent_bytes
            if sent != conn.hb_bytes:
                conn.hb_bytes = sent
                conn.hb_since = mono
            elif mono - conn.hb_since >= interval:
                conn.hb_since = mono
                if conn.sse:
                    conn.outbox.push(b": hb\n\n")
                else:
                    conn.send({"type": "heartbeat", "ts": now_ms()})


def _joined(events: Sequence[Encoded], fmt: Format) -> bytes:
    """The WebSocket frames of `events` back to back: one write for a reader."""
    if len(events) == 1:
        return events[0].ws(fmt)
    return b"".join([e.ws(fmt) for e in events])


class _RandomIds:
    """Server-made message ids: 128 unpredictable bits each, from one os.urandom call per 256 ids
    (a syscall per id was a tenth of a durable publish's CPU). Unpredictable matters: a client
    that could guess the next id could take it first and make someone else's publish fail."""

    __slots__ = ("_pool", "_used")

    def __init__(self) -> None:
        self._pool = b""
        self._used = 0

    def new(self) -> str:
        if self._used >= len(self._pool):
            self._pool, self._used = os.urandom(16 * 256), 0
        start = self._used
        self._used = start + 16
        return "m_" + base64.urlsafe_b64encode(self._pool[start : start + 16]).rstrip(b"=").decode()
