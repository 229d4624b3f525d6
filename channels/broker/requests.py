"""Client requests: a validated frame from a connection becomes one operation and exactly one reply.

A frame with a `ref` gets one `ack`, `nack` or `attached`/`detached` reply; without a `ref` only a
failure is answered (`error`). Replies that wait for a commit are sent from the commit's callback,
so the connection's reader never waits on the Store. A token that has expired refuses the frame
and closes the connection (4003) at once, whatever the sweep's timing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from agentchat_server.auth import Authenticator
from agentchat_server.broker.chat import Chat
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.history import History
from agentchat_server.broker.members import Members
from agentchat_server.broker.publisher import Publisher
from agentchat_server.broker.readers import Readers, Spawn
from agentchat_server.broker.room_requests import RoomRequests
from agentchat_server.broker.rooms import wire_fields
from agentchat_server.broker.streams import Streams
from agentchat_server.core.ratelimit import TokenBucket
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import (
    AttachFrame,
    AuthFrame,
    CloseCode,
    Code,
    ConnectFrame,
    DeleteFrame,
    DetachFrame,
    EditFrame,
    HistoryFrame,
    OccupancyFrame,
    PingFrame,
    PresenceFrame,
    PresenceGetFrame,
    ProtocolError,
    PublishFrame,
    ReactFrame,
    ReadFrame,
    RoomGetFrame,
    RoomSetFrame,
    RoomsFrame,
    StreamAppendFrame,
    StreamCancelFrame,
    StreamEndFrame,
    StreamOpenFrame,
    StreamResumeFrame,
    UnreadFrame,
)
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)


class Requests:
    """Carries out client frames against the node's objects and answers them."""

    def __init__(
        self,
        settings: Settings,
        auth: Authenticator,
        readers: Readers,
        members: Members,
        publisher: Publisher,
        streams: Streams,
        history: History,
        metrics: Metrics,
        spawn: Spawn,
        schedule_renewal: Callable[[Connection], None],
        chat: Chat,
        rooms: RoomRequests,
    ) -> None:
        self.rooms = rooms
        self.schedule_renewal = schedule_renewal
        self.chat = chat
        self.settings = settings
        self.auth = auth
        self.readers = readers
        self.members = members
        self.publisher = publisher
        self.streams = streams
        self.history = history
        self.metrics = metrics
        self.spawn = spawn

    async def handle(self, conn: Connection, frame: Any) -> None:
        """Carry out one validated client frame; never raises (refusals become `nack`/`error`)."""
        ref = getattr(frame, "ref", None)
        if time.time() >= conn.identity.expires_at:
            self.refuse(conn, ref, ProtocolError(Code.TOKEN_EXPIRED, "token expired"))
            conn.close(CloseCode.TOKEN_EXPIRED, "token expired")
            return
        try:
            await self._dispatch(conn, frame)
        except ProtocolError as exc:
            self.refuse(conn, exc.details.pop("ref", ref), exc)
        except Exception:
            log.exception("internal error handling a frame from %s", conn.client_id)
            self.refuse(conn, ref, ProtocolError(Code.INTERNAL, "internal error"))

    def refuse(self, conn: Connection, ref: int | None, exc: ProtocolError) -> None:
        """Answer a refused frame; malformed or invalid frames spend the bad-frame budget (4002)."""
        self.metrics.errors.labels(str(exc.code)).inc()
        conn.send(frames.nack(ref, exc.code, exc.message, **exc.details))
        if exc.code < 40100 or exc.code == Code.FRAME_TOO_LARGE:
            now = time.monotonic()
            if conn.bad_frames is None:
                limit = self.settings.max_bad_frames
                conn.bad_frames = TokenBucket(limit / 60.0, limit, now)
            if not conn.bad_frames.take(now):
                conn.close(CloseCode.PROTOCOL_ABUSE, "too many bad frames")

    async def _dispatch(self, conn: Connection, frame: Any) -> None:
        if isinstance(frame, PublishFrame):
            future = self.publisher.publish(
                conn.identity, frame.channel, frame.messages, frame.if_serial, conn
            )
            self._reply_later(conn, frame.ref, future, _same)
        elif isinstance(frame, StreamAppendFrame):
            self.streams.append(conn, frame.stream_id, frame.i, frame.d)
            _ack(conn, frame.ref)
        elif isinstance(frame, AttachFrame):
            position = None if frame.position is None else (frame.position.serial, frame.position.epoch)
            to_me = frame.filter == "to_me"
            await self.readers.attach(conn, frame.channel, position, frame.presence, frame.ref, to_me)
        elif isinstance(frame, DetachFrame):
            self.readers.detach(conn, frame.channel)
            conn.send(frames.detached(frame.channel, ref=frame.ref))
        elif isinstance(frame, HistoryFrame):
            self.history.admit(conn)
            self.spawn(self._history(conn, frame), "history")
        elif isinstance(frame, PresenceFrame):
            await self.members.update(conn, frame.channel, frame.action, frame.data, frame.replaces)
            _ack(conn, frame.ref)
        elif isinstance(frame, PresenceGetFrame):
            page = await self.members.get(conn.identity, frame.channel, frame.after)
            conn.send(frames.ack(frame.ref, **page))
        elif isinstance(frame, OccupancyFrame):
            conn.identity.require(frame.channel, "subscribe")
            conn.send(frames.ack(frame.ref, occupancy=await self.readers.occupancy(frame.channel)))
        elif isinstance(frame, StreamOpenFrame):
            if frame.run_id is not None:
                opened = await self.rooms.open_lane(conn, frame)
            else:
                opened = await self.streams.open(
                    conn,
                    frame.channel,
                    event_name=frame.name,
                    message_id=frame.id,
                    reply_to=frame.reply_to,
                    meta=frame.meta,
                    fmt=frame.format,
                    thread=frame.thread,
                    room=wire_fields(to=frame.to),
                    token=frame.claim,
                )
            conn.send(frames.ack(frame.ref, **opened))
        elif isinstance(frame, StreamResumeFrame):
            resumed = await self.streams.resume(conn, frame.stream_id, frame.key)
            conn.send(frames.ack(frame.ref, **resumed))
        elif isinstance(frame, StreamEndFrame):
            error = None if frame.error is None else frame.error.model_dump(exclude_none=True)
            ended = self.streams.end(conn, frame.stream_id, frame.status, frame.data, frame.chunks, error)
            self._reply_later(conn, frame.ref, ended, _serial)
        elif isinstance(frame, StreamCancelFrame):
            # Answered in order, once the end is committed (the stream may be held by another node).
            serial = await self.streams.cancel(conn, frame.stream_id)
            conn.send(frames.ack(frame.ref, serial=serial))
        elif isinstance(frame, AuthFrame):
            conn.send(frames.ack(frame.ref, expires_at=self.renew(conn, frame.token)))
        elif isinstance(frame, PingFrame):
            _ack(conn, frame.ref)
        elif self.rooms.handles(frame):
            await self.rooms.handle(conn, frame)
        elif isinstance(frame, ConnectFrame):
            raise ProtocolError(Code.INVALID_VALUE, "already connected")
        else:
            self._chat(conn, frame)

    def _chat(self, conn: Connection, frame: Any) -> None:
        """Group chat frames: events on messages and read marks commit; counts and the directory read."""
        identity, chat = conn.identity, self.chat
        if isinstance(frame, EditFrame):
            edited = chat.edit(identity, frame.channel, frame.serial, frame.data, frame.id, conn)
            self._reply_later(conn, frame.ref, edited, _same)
        elif isinstance(frame, DeleteFrame):
            deleted = chat.delete(identity, frame.channel, frame.serial, frame.id, conn)
            self._reply_later(conn, frame.ref, deleted, _same)
        elif isinstance(frame, ReactFrame):
            reacted = chat.react(identity, frame.channel, frame.serial, frame.reaction, frame.remove, conn)
            self._reply_later(conn, frame.ref, reacted, _same)
        elif isinstance(frame, ReadFrame):
            self._reply_later(
                conn, frame.ref, chat.mark_read(identity, frame.channel, frame.serial, conn), _same
            )
        elif isinstance(frame, RoomSetFrame):
            done = chat.set_room(identity, frame.channel, frame.title, frame.topic, frame.create, conn)
            self._reply_later(conn, frame.ref, done, _same)
        elif isinstance(frame, UnreadFrame):
            self._read_later(conn, frame.ref, chat.unread(identity, frame.channels, frame.after))
        elif isinstance(frame, RoomsFrame):
            self._read_later(conn, frame.ref, chat.rooms(identity, frame.after, frame.prefix, frame.limit))
        elif isinstance(frame, RoomGetFrame):
            self._read_later(conn, frame.ref, chat.room(identity, frame.channel))

    def _read_later(self, conn: Connection, ref: int, read: Coroutine[Any, Any, dict[str, Any]]) -> None:
        """Answer a Store read off the connection's reader, counted like a history request."""
        try:
            self.history.admit(conn)
        except ProtocolError:
            read.close()
            raise

        async def run() -> None:
            try:
                conn.send(frames.ack(ref, **(await read)))
            except ProtocolError as exc:
                self.refuse(conn, ref, exc)
            except Exception:
                log.exception("read failed")
                self.refuse(conn, ref, ProtocolError(Code.UNAVAILABLE, "store unavailable, retry"))
            finally:
                self.history.release(conn)

        self.spawn(run(), "chat-read")

    async def _history(self, conn: Connection, frame: HistoryFrame) -> None:
        try:
            await self.history.reply(
                conn,
                frame.ref,
                frame.channel,
                before=frame.before,
                after=frame.after,
                limit=frame.limit,
                forwards=frame.direction == "forwards",
                thread=frame.thread,
                main=frame.view == "main",
                to_me=frame.filter == "to_me",
            )
        except ProtocolError as exc:
            self.refuse(conn, frame.ref, exc)
        except Exception:
            log.exception("history failed")
            self.refuse(conn, frame.ref, ProtocolError(Code.UNAVAILABLE, "history unavailable"))

    def renew(self, conn: Connection, token: str) -> int:
        """Swap the connection's token for a fresh one of the same client; detach what it no longer allows."""
        identity = self.auth.verify(token)
        if identity.client_id != conn.identity.client_id or identity.kind != conn.identity.kind:
            raise ProtocolError(Code.TOKEN_INVALID, "a renewed token must be for the same client_id and kind")
        conn.identity = identity
        self.schedule_renewal(conn)
        for name in list(conn.attachments):
            if not identity.can(name, "subscribe"):
                self.readers.detach(conn, name)
                conn.send(frames.detached(name, code=Code.FORBIDDEN, message="capability removed"))
        return identity.expires_at

    def _reply_later(
        self,
        conn: Connection,
        ref: int | None,
        future: asyncio.Future[Any],
        fields: Callable[[Any], dict[str, Any]],
    ) -> None:
        def done(fut: asyncio.Future[Any]) -> None:
            if conn.closed:
                if not fut.cancelled():
                    fut.exception()
                return
            try:
                reply = fields(fut.result())
            except ProtocolError as exc:
                self.refuse(conn, ref, exc)
                return
            except Exception as exc:
                log.error("request failed: %s", exc)
                self.refuse(conn, ref, ProtocolError(Code.UNAVAILABLE, "store unavailable, retry"))
                return
            if ref is not None:
                conn.send(frames.ack(ref, **reply))

        future.add_done_callback(done)


def _ack(conn: Connection, ref: int | None) -> None:
    if ref is not None:
        conn.send(frames.ack(ref))


def _same(reply: dict[str, Any]) -> dict[str, Any]:
    return reply


def _serial(serial: int) -> dict[str, Any]:
    return {"serial": serial}
