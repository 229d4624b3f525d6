"""Token streams in the broker: open (start marker), live chunks, one durable end message.

Chunks never touch the Store: a stream costs at most two Store writes, its start marker and
its final message (which deletes the marker in the same transaction).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from typing import TYPE_CHECKING, Any

from agentchat_server.broker.state import now_ms
from agentchat_server.bus import BusEvent
from agentchat_server.core.streams import Stream
from agentchat_server.protocol import Code, ProtocolError, encode_value
from agentchat_server.store import Append, AppendResult, NewMessage, OpenMarker, StreamMarker

if TYPE_CHECKING:
    from agentchat_server.broker import Broker
    from agentchat_server.broker.state import Connection, Session

log = logging.getLogger(__name__)


def _dumps(value: Any) -> str:
    return encode_value(value)


def _chunk_bytes(chunk: Any) -> int:
    if isinstance(chunk, str):
        try:
            return len(chunk.encode())
        except UnicodeEncodeError:
            raise ProtocolError(Code.INVALID_VALUE, "strings must be valid unicode") from None
    return len(_dumps(chunk))


class StreamManager:
    """The open streams of one broker; uses its channels, committer and fan-out."""

    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self.live: dict[str, Stream] = {}

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
    ) -> str:
        """Open a stream after committing its start marker; returns the stream id."""
        conn.identity.require(name, "stream")
        session = conn.session
        assert session is not None
        s = self.broker.settings
        if len(session.streams) >= s.max_streams_per_connection:
            raise ProtocolError(
                Code.TOO_MANY_STREAMS, f"at most {s.max_streams_per_connection} open streams per connection"
            )
        meta_json = None if meta is None else _dumps(meta)
        if meta_json is not None and len(meta_json) > s.max_message_bytes:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, "stream meta too large")
        ch = await self.broker.channel(name)
        if len(ch.streams) + len(ch.reserved_ids) >= s.max_streams_per_channel:
            raise ProtocolError(
                Code.TOO_MANY_STREAMS, f"at most {s.max_streams_per_channel} open streams per channel"
            )
        stream_id = "s_" + secrets.token_urlsafe(12)
        message_id = message_id or stream_id
        self._refuse_existing_stream(ch.streams.values(), ch.reserved_ids, message_id)
        ch.reserved_ids.add(message_id)
        try:
            existing = await self.broker.store.find_message(name, message_id)
            if existing is not None:
                raise ProtocolError(
                    Code.ALREADY_EXISTS, "a message with this id exists already", serial=existing.serial
                )
            stream = Stream(
                stream_id,
                name,
                session.session_id,
                session.client_id,
                session.kind,
                event_name,
                message_id,
                reply_to,
                meta,
                fmt,
                now_ms(),
                s.max_stream_bytes,
            )
            await self.broker.committer.submit(OpenMarker(marker_of(stream, meta_json)))
        finally:
            ch.reserved_ids.discard(message_id)
        ch.streams[stream_id] = stream
        self.live[stream_id] = stream
        session.add_stream(stream_id)
        self.broker.metrics.streams_open.set(len(self.live))
        self.broker.bus.publish(BusEvent(name, frame=stream.open_frame()))
        return stream_id

    @staticmethod
    def _refuse_existing_stream(open_streams: Any, reserved: set[str], message_id: str) -> None:
        for other in open_streams:
            if other.message_id == message_id:
                raise ProtocolError(
                    Code.ALREADY_EXISTS, "a stream with this id is open", stream_id=other.stream_id
                )
        if message_id in reserved:
            raise ProtocolError(Code.ALREADY_EXISTS, "a stream with this id is being opened")

    def _writer_stream(self, conn: Connection, stream_id: str) -> Stream:
        stream = self.live.get(stream_id)
        if stream is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found or already ended")
        if conn.session is None or stream.writer != conn.session.session_id:
            raise ProtocolError(
                Code.NOT_STREAM_WRITER, "only the connection that opened a stream may write to it"
            )
        return stream

    def append(self, conn: Connection, stream_id: str, index: int, chunk: Any) -> None:
        stream = self._writer_stream(conn, stream_id)
        conn.identity.require(stream.channel, "stream")
        if not stream.append(index, chunk, _chunk_bytes(chunk)):
            return  # a resent chunk: accepted before
        self.broker.bus.publish(
            BusEvent(
                stream.channel,
                frame={
                    "type": "stream_chunk",
                    "channel": stream.channel,
                    "stream_id": stream_id,
                    "i": index,
                    "d": chunk,
                },
            )
        )

    def end(
        self, conn: Connection, stream_id: str, status: str, data: Any, chunks: int | None
    ) -> asyncio.Future[int]:
        """End the writer's stream now (later appends are refused); the future gives the serial."""
        stream = self._writer_stream(conn, stream_id)
        conn.identity.require(stream.channel, "stream")
        if data is not None:
            _dumps(data)  # refuse what could not be stored or sent
        if chunks is not None and chunks != stream.next:
            raise ProtocolError(
                Code.CHUNK_OUT_OF_ORDER, "chunk count differs from what the server received", next=stream.next
            )
        content = stream.content()
        if data is not None and data != content:
            self.broker.metrics.stream_mismatch.inc()
            log.warning(
                "stream %s: declared content differs from the %d chunks received; storing the declared one",
                stream_id,
                stream.next,
            )
            content = data
        return self._finish(stream, status, content)

    def cancel(self, conn: Connection, stream_id: str) -> asyncio.Future[int]:
        """Cancel an open stream (writer, or anyone with `cancel`); the writer is told."""
        stream = self.live.get(stream_id)
        if stream is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found or already ended")
        is_writer = conn.session is not None and stream.writer == conn.session.session_id
        if not is_writer:
            conn.identity.require(stream.channel, "cancel")
        future = self._finish(stream, "cancelled", stream.content())
        writer = self.broker.sessions.get(stream.writer)
        if writer is not None and writer.connection is not None:
            writer.connection.send(
                {
                    "type": "stream_cancelled",
                    "channel": stream.channel,
                    "stream_id": stream_id,
                    "by": conn.identity.client_id,
                }
            )
        return future

    def _finish(self, stream: Stream, status: str, content: Any) -> asyncio.Future[int]:
        """Forget the stream and queue its one durable message; the future gives its serial."""
        self._forget_stream(stream)
        meta_json = None if stream.meta is None else _dumps(stream.meta)
        message = end_message(marker_of(stream, meta_json), status, content)
        committed = self.broker.committer.submit(Append(stream.channel, [message]))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        metrics = self.broker.metrics

        def _settle(fut: asyncio.Future[AppendResult | None]) -> None:
            if done.done():
                return
            exc = fut.exception()
            if exc is not None:
                log.error("could not commit the end of stream %s: %s", stream.stream_id, exc)
                done.set_exception(ProtocolError(Code.UNAVAILABLE, "could not store the stream's message"))
                return
            result = fut.result()
            assert result is not None
            metrics.streams_ended.labels(status).inc()
            done.set_result(result.serials[0])

        committed.add_done_callback(_settle)
        return done

    def _forget_stream(self, stream: Stream) -> None:
        self.live.pop(stream.stream_id, None)
        ch = self.broker.channels.get(stream.channel)
        if ch is not None:
            ch.streams.pop(stream.stream_id, None)
        session = self.broker.sessions.get(stream.writer)
        if session is not None:
            session.drop_stream(stream.stream_id)
        self.broker.metrics.streams_open.set(len(self.live))

    def abort_session(self, session: Session, why: str) -> None:
        for stream_id in list(session.streams):
            stream = self.live.get(stream_id)
            if stream is not None:
                log.info("stream %s aborted: %s", stream_id, why)
                self._finish(stream, "aborted", stream.content()).add_done_callback(_quiet)
        session.streams = frozenset()

    async def abort_all(self, why: str) -> None:
        pending = []
        for stream in list(self.live.values()):
            log.info("stream %s aborted: %s", stream.stream_id, why)
            pending.append(self._finish(stream, "aborted", stream.content()))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    async def abort_orphans(self) -> None:
        """End streams left open by a previous run (its chunks are gone) as aborted, empty."""
        markers = await self.broker.store.open_markers()
        for marker in markers:
            content: Any = "" if marker.format == "text" else []
            message = end_message(marker, "aborted", content)
            try:
                await self.broker.committer.submit(Append(marker.channel, [message]))
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


def end_message(marker: StreamMarker, status: str, content: Any) -> NewMessage:
    """The one durable message that ends a stream, live or left over from a previous run."""
    return NewMessage(
        marker.message_id,
        marker.name,
        content,
        _dumps(content),
        marker.client_id,
        marker.kind,
        now_ms(),
        marker.reply_to,
        marker.stream_id,
        status,
        marker.meta_json,
    )
