"""Token streams of this node: open (start marker), live chunks, one durable end message.

Chunks never touch the Store: a stream costs at most two Store writes, its start marker and its
final message (which deletes the marker in the same transaction); a run's lane costs one, its
final message (the run's own record stands for its marker). Memory is bounded per stream
(`max_stream_bytes`) and per client id across its open streams (`max_stream_bytes_per_client`).
A stream answering a claimed message carries the claim's token: its start and its end are
checked against the claim in their commits, and its end makes the claim done (complete) or
frees it (failed, cancelled, aborted).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.broker.rooms import RoomRules
from agentchat_server.core.records import NewMessage
from agentchat_server.core.streams import Stream
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import Append, AppendResult, OpenMarker, Result, Store, StreamMarker

log = logging.getLogger(__name__)

PublishLive = Callable[..., None]
WriterConnection = Callable[[str], Connection | None]


class Streams:
    """The open streams of this node, by id, by writer session and by client id."""

    def __init__(
        self,
        settings: Settings,
        registry: ChannelRegistry,
        store: Store,
        committer: Committer,
        publish_live: PublishLive,
        writer_connection: WriterConnection,
        metrics: Metrics,
        rules: RoomRules,
    ) -> None:
        self.rules = rules
        self.settings = settings
        self.registry = registry
        self.store = store
        self.committer = committer
        self.publish_live = publish_live
        self.writer_connection = writer_connection
        self.metrics = metrics
        self._live: dict[str, Stream] = {}
        self._by_session: dict[str, set[str]] = {}
        self._bytes_by_client: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._live)

    def open_count(self, session_id: str) -> int:
        """Streams the session writes now."""
        return len(self._by_session.get(session_id, ()))

    async def open(
        self,
        conn: Connection,
        name: str,
        *,
        event_name: str,
        message_id: str | None,
        reply_to: int | None,
        meta: Any,
        fmt: str,
        room: dict[str, Any] | None = None,
        token: int | None = None,
    ) -> str:
        """Open a stream after committing its start marker (checked against the room's rules); a
        run's lane (`room` has its `run_id`) commits nothing until it ends. Returns the stream id."""
        conn.identity.require(name, "stream")
        session_id = conn.session_id
        assert session_id is not None
        s = self.settings
        if self.open_count(session_id) >= s.max_streams_per_connection:
            raise ProtocolError(
                Code.TOO_MANY_STREAMS, f"at most {s.max_streams_per_connection} open streams per connection"
            )
        meta_json = None if meta is None else encode_value(meta)
        if meta_json is not None and encoded_size(meta, meta_json, s.max_message_bytes) > s.max_message_bytes:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, f"stream meta exceeds {s.max_message_bytes} bytes")
        ch = await self.registry.load(name)
        if len(ch.streams) + len(ch.reserved_ids) >= s.max_streams_per_channel:
            raise ProtocolError(
                Code.TOO_MANY_STREAMS, f"at most {s.max_streams_per_channel} open streams per channel"
            )
        identity = conn.identity
        stream_id = "s_" + secrets.token_urlsafe(12)
        message_id = message_id or stream_id
        reserved = f"{identity.client_id}\x00{message_id}"  # ids are scoped per publisher
        for other in ch.streams.values():
            if other.client_id == identity.client_id and other.message_id == message_id:
                raise ProtocolError(
                    Code.ALREADY_EXISTS, "a stream with this id is open", stream_id=other.stream_id
                )
        if reserved in ch.reserved_ids:
            raise ProtocolError(Code.ALREADY_EXISTS, "a stream with this id is being opened")
        ch.reserved_ids.add(reserved)
        try:
            existing = await self.store.find_message(name, identity.client_id, message_id)
            if existing is not None:
                raise ProtocolError(
                    Code.ALREADY_EXISTS, "a message with this id exists already", serial=existing.serial
                )
            stream = Stream(
                stream_id,
                name,
                session_id,
                identity.client_id,
                identity.kind,
                event_name,
                message_id,
                reply_to,
                meta,
                fmt,
                now_ms(),
                s.max_stream_bytes,
                identity.display_name,
                room,
                token,
            )
            if stream.run_id is None:
                write = self.rules.write(identity, name, turn=True, replies=[reply_to], token=token)
                opened = await self.committer.submit(OpenMarker(marker_of(stream, meta_json), write))
                self.rules.settle(opened if isinstance(opened, AppendResult) else None)
        finally:
            ch.reserved_ids.discard(reserved)
        ch.streams[stream_id] = stream
        self._live[stream_id] = stream
        self._by_session.setdefault(session_id, set()).add(stream_id)
        self.metrics.streams_open.set(len(self._live))
        self.publish_live(name, stream.open_frame())
        return stream_id

    def _writer_stream(self, conn: Connection, stream_id: str) -> Stream:
        stream = self._live.get(stream_id)
        if stream is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found or already ended")
        if conn.session_id is None or stream.writer != conn.session_id:
            raise ProtocolError(
                Code.NOT_STREAM_WRITER, "only the connection that opened a stream may write to it"
            )
        conn.identity.require(stream.channel, "stream")
        return stream

    def append(self, conn: Connection, stream_id: str, index: int, chunk: Any) -> None:
        """Accept the writer's chunk `index` and send it live; a resent chunk is ignored."""
        stream = self._writer_stream(conn, stream_id)
        client = stream.client_id
        used = self._bytes_by_client.get(client, 0)
        before = stream.size
        if not stream.append(index, chunk, self.settings.max_stream_bytes_per_client - used):
            return
        self._bytes_by_client[client] = used + stream.size - before
        self.publish_live(stream.channel, frames.stream_chunk(stream.channel, stream_id, index, chunk))

    def end(
        self,
        conn: Connection,
        stream_id: str,
        status: str,
        data: Any,
        chunks: int | None,
        error: dict[str, Any] | None = None,
    ) -> asyncio.Future[int]:
        """End the writer's stream now (later appends are refused); the future gives the serial."""
        stream = self._writer_stream(conn, stream_id)
        if data is not None:
            encode_value(data)  # refuse what could not be stored or sent
        if chunks is not None and chunks != stream.next:
            raise ProtocolError(
                Code.CHUNK_OUT_OF_ORDER, "chunk count differs from what the server received", next=stream.next
            )
        content = stream.content()
        if data is not None and data != content:
            self.metrics.stream_mismatch.inc()
            log.warning(
                "stream %s: declared content differs from the %d chunks received; storing the declared one",
                stream_id,
                stream.next,
            )
            content = data
        return self._finish(stream, status, content, error=error)

    def cancel(self, conn: Connection, stream_id: str) -> asyncio.Future[int]:
        """Cancel an open stream (writer, or anyone with `cancel`); the writer is told who did."""
        stream = self._live.get(stream_id)
        if stream is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found or already ended")
        is_writer = conn.session_id is not None and stream.writer == conn.session_id
        if not is_writer:
            conn.identity.require(stream.channel, "cancel")
        by = conn.identity.client_id
        future = self._finish(stream, "cancelled", stream.content(), cancelled_by=by)
        writer = self.writer_connection(stream.writer)
        if writer is not None:
            writer.send(frames.stream_cancelled(stream.channel, stream_id, by))
        return future

    def _finish(
        self,
        stream: Stream,
        status: str,
        content: Any,
        cancelled_by: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> asyncio.Future[int]:
        """Forget the stream and queue its one durable message; the future gives its serial."""
        self._forget(stream)
        meta_json = None if stream.meta is None else encode_value(stream.meta)
        extra: dict[str, Any] = dict(stream.room or {})
        if stream.display_name is not None:
            extra["display_name"] = stream.display_name
        if cancelled_by is not None:
            extra["cancelled_by"] = cancelled_by
        if error is not None:
            extra["error"] = error
        message = end_message(marker_of(stream, meta_json), status, content, extra or None)
        room = None
        if stream.token is not None or stream.run_id is not None:
            room = self.rules.write(
                stream,
                stream.channel,
                turn=False,
                replies=[stream.reply_to],
                token=stream.token,
                run_id=stream.run_id,
                session=stream.writer,
                finish="done" if status == "complete" else "released",
                soft=True,
            )
        committed = self.committer.submit(Append(stream.channel, [message], room=room))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        metrics = self.metrics
        rules = self.rules

        def settle(fut: asyncio.Future[Result]) -> None:
            if done.done():
                return
            exc = fut.exception()
            if exc is not None:
                log.error("could not commit the end of stream %s: %s", stream.stream_id, exc)
                done.set_exception(ProtocolError(Code.UNAVAILABLE, "could not store the stream's message"))
                return
            result = fut.result()
            assert isinstance(result, AppendResult)
            rules.announce(result)
            stored = result.stored[0] if result.stored else None
            ended = status if stored is None or stored.status is None else stored.status
            metrics.streams_ended.labels(ended).inc()
            why = None if stored is None or not stored.extra else stored.extra.get("error")
            if ended != status and isinstance(why, dict):
                # A soft check failed: the stream ended aborted (its claim or run was lost).
                code = int(why["code"]) if str(why.get("code", "")).isdigit() else Code.CONFLICT
                done.set_exception(ProtocolError(code, str(why["message"]), serial=result.serials[0]))
                return
            done.set_result(result.serials[0])

        committed.add_done_callback(settle)
        return done

    def _forget(self, stream: Stream) -> None:
        self._live.pop(stream.stream_id, None)
        ch = self.registry.get(stream.channel)
        if ch is not None:
            ch.streams.pop(stream.stream_id, None)
        owned = self._by_session.get(stream.writer)
        if owned is not None:
            owned.discard(stream.stream_id)
            if not owned:
                del self._by_session[stream.writer]
        left = self._bytes_by_client.get(stream.client_id, 0) - stream.size
        if left > 0:
            self._bytes_by_client[stream.client_id] = left
        else:
            self._bytes_by_client.pop(stream.client_id, None)
        self.metrics.streams_open.set(len(self._live))
        if ch is not None:
            self.registry.forget_if_idle(ch)

    def end_lanes(
        self,
        run_id: str,
        status: str,
        *,
        cancelled_by: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """End the open lanes of a run with the run's status, queued before the run's own end
        record so they precede it in history."""
        for stream in [s for s in self._live.values() if s.run_id == run_id]:
            ended = self._finish(stream, status, stream.content(), cancelled_by=cancelled_by, error=error)
            ended.add_done_callback(_quiet)

    def abort_session(self, session_id: str, why: str) -> None:
        """End every stream the session writes as aborted, with the text so far."""
        for stream_id in list(self._by_session.get(session_id, ())):
            stream = self._live.get(stream_id)
            if stream is not None:
                log.info("stream %s aborted: %s", stream_id, why)
                self._finish(stream, "aborted", stream.content()).add_done_callback(_quiet)

    async def abort_all(self, why: str) -> None:
        """End every open stream as aborted (shutting down) and wait for their messages."""
        pending = []
        for stream in list(self._live.values()):
            log.info("stream %s aborted: %s", stream.stream_id, why)
            pending.append(self._finish(stream, "aborted", stream.content()))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def abort_orphans(self) -> None:
        """End streams left open by a previous run (its chunks are gone) as aborted, empty."""
        for marker in await self.store.open_markers():
            content: Any = "" if marker.format == "text" else []
            message = end_message(marker, "aborted", content, None)
            try:
                await self.committer.submit(Append(marker.channel, [message]))
                log.info("stream %s left open by the previous run ended as aborted", marker.stream_id)
            except Exception:
                log.exception("could not end orphan stream %s", marker.stream_id)


def _quiet(future: asyncio.Future[int]) -> None:
    if not future.cancelled():
        future.exception()  # logged in _finish; retrieved here so asyncio does not warn


def marker_of(stream: Stream, meta_json: str | None) -> StreamMarker:
    """What the Store keeps of an open stream (its start marker)."""
    return StreamMarker(
        stream.stream_id,
        stream.channel,
        stream.message_id,
        stream.client_id,
        stream.kind,
        stream.name,
        stream.reply_to,
        meta_json,
        stream.format,
        stream.ts,
    )


def end_message(marker: StreamMarker, status: str, content: Any, extra: dict[str, Any] | None) -> NewMessage:
    """The one durable message that ends a stream, live or left over from a previous run."""
    return NewMessage(
        marker.message_id,
        marker.name,
        content,
        encode_value(content),
        marker.client_id,
        marker.kind,
        now_ms(),
        marker.reply_to,
        marker.stream_id,
        status,
        marker.meta_json,
        extra=extra,
        extra_json=None if extra is None else encode_value(extra),
    )
