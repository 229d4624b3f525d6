"""Token streams of this node: open, live chunks, one durable end message; leases and resumes.

Chunks never touch the Store: a stream costs its start marker and its final message (which deletes
the marker in the same transaction), plus lease renewals shared by all of a node's streams.
Ownership is the Store's marker: the node holding a stream renews its lease; a writer that lost
its server resumes the stream on any node with its resume key (a takeover bumps the fence, and
only the holder of the current fence can end it); a stream whose lease lapsed (its node died)
is ended as `aborted` with the text so far by whichever node sees it first, exactly once.
Memory is bounded per stream and per client id across its open streams.
A run's lane has no marker: its run's own record stands for it, and it costs one write, its final
message. A stream answering a claimed message carries the claim's token: its start and its end
are checked against the claim in their commits, and its end makes the claim done (complete) or
frees it (failed, cancelled, aborted).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
from collections.abc import Callable
from typing import Any

from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.broker.rooms import RoomRules
from agentchat_server.broker.stream_ends import StreamEnds, content_of, end_message, extra_of, quiet
from agentchat_server.broker.stream_table import StreamTable, marker_of, stream_of
from agentchat_server.core.chat import as_target, check_root
from agentchat_server.core.records import Message
from agentchat_server.core.streams import Stream
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import AppendResult, OpenMarker, Store, StreamMarker
from agentchat_server.streambuf import StreamBuffer

log = logging.getLogger(__name__)

PublishLive = Callable[..., None]
PublishControl = Callable[[str, dict[str, Any]], None]
WriterConnection = Callable[[str], Connection | None]


def key_hash(key: str) -> str:
    """What the Store keeps of a stream's resume key."""
    return hashlib.sha256(key.encode()).hexdigest()


class Streams:
    """The open streams this node holds, by id, by writer session and by client id."""

    def __init__(
        self,
        settings: Settings,
        node: str,
        registry: ChannelRegistry,
        store: Store,
        buffer: StreamBuffer,
        committer: Committer,
        publish_live: PublishLive,
        publish_control: PublishControl,
        writer_connection: WriterConnection,
        metrics: Metrics,
        rules: RoomRules,
    ) -> None:
        self.rules = rules
        self.settings = settings
        self.node = node
        self.registry = registry
        self.store = store
        self.buffer = buffer
        self.committer = committer
        self.publish_live = publish_live
        self.publish_control = publish_control
        self.writer_connection = writer_connection
        self.metrics = metrics
        self.ends = StreamEnds(store, buffer, committer, metrics, rules)
        self.lease_ms = int(max(settings.stream_grace, 0.3) * 1000)
        self.table = StreamTable(registry, buffer, metrics, settings.max_stream_bytes_per_client)

    def __len__(self) -> int:
        return len(self.table)

    def open_count(self, session_id: str) -> int:
        """Streams the session writes now."""
        return self.table.sessions.count(session_id)

    # --- the writer's operations -------------------------------------------------------------

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
        thread: int | None = None,
        room: dict[str, Any] | None = None,
        token: int | None = None,
    ) -> dict[str, Any]:
        """Open a stream after committing its start marker (checked against the room's rules);
        returns the ack fields (`stream_id`, and `resume_key`: the secret that lets its writer
        resume it anywhere). With `thread`, its final message replies in the thread on that root
        (checked now, so the end can always be stored). A run's lane (`room` has its `run_id`)
        commits nothing until it ends."""
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
        key = secrets.token_urlsafe(18)
        ch.reserved_ids.add(reserved)
        try:
            existing = await self.store.find_message(name, identity.client_id, message_id)
            if existing is not None:
                raise ProtocolError(
                    Code.ALREADY_EXISTS, "a message with this id exists already", serial=existing.serial
                )
            if thread is not None:
                refusal = check_root(thread, as_target(await self.store.message_at(name, thread)))
                if refusal is not None:
                    raise ProtocolError(refusal.code, refusal.message, **refusal.details)
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
                fence=1,
                secret=key_hash(key),
                thread=thread,
                room=room,
                token=token,
            )
            if stream.run_id is None:
                write = self.rules.write(identity, name, turn=True, replies=[reply_to], token=token)
                opened = await self.committer.submit(OpenMarker(self._marker(stream, meta_json), write))
                self.rules.settle(opened if isinstance(opened, AppendResult) else None)
        finally:
            ch.reserved_ids.discard(reserved)
        self.table.hold(stream)
        self.publish_live(name, stream.open_frame())
        if stream.run_id is not None:
            return {"stream_id": stream_id}  # a lane has no marker: it is resumed with its run
        return {"stream_id": stream_id, "resume_key": key}

    def _marker(self, stream: Stream, meta_json: str | None) -> StreamMarker:
        return marker_of(stream, meta_json, self.node, now_ms() + self.lease_ms)

    def _writer_stream(self, conn: Connection, stream_id: str) -> Stream:
        stream = self.table.get(stream_id)
        if stream is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found, moved or already ended")
        if conn.session_id is None or stream.writer != conn.session_id:
            raise ProtocolError(
                Code.NOT_STREAM_WRITER,
                "only the connection that opened (or resumed) a stream may write to it",
            )
        conn.identity.require(stream.channel, "stream")
        return stream

    def append(self, conn: Connection, stream_id: str, index: int, chunk: Any) -> None:
        """Accept the writer's chunk `index` and send it live; a resent chunk is ignored."""
        stream = self._writer_stream(conn, stream_id)
        if not self.table.append(stream, index, chunk):
            return
        self.buffer.appended(stream_id, index, chunk)
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

    async def resume(self, conn: Connection, stream_id: str, key: str) -> dict[str, Any]:
        """The writer continues its stream on this connection (after a lost server or session):
        returns `stream_id` and `next`, the chunk index to send next."""
        identity = conn.identity
        session_id = conn.session_id
        assert session_id is not None
        secret = key_hash(key)
        stream = self.table.get(stream_id)
        if stream is not None and stream.client_id == identity.client_id and stream.secret == secret:
            self.table.rebind(stream, session_id)
            return {"stream_id": stream_id, "next": stream.next}
        marker = await self.store.take_over(
            stream_id, identity.client_id, secret, self.node, now_ms() + self.lease_ms
        )
        if marker is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found, not yours, or already ended")
        identity.require(marker.channel, "stream")
        await self.registry.load(marker.channel)
        stream = stream_of(marker, session_id, self.settings.max_stream_bytes, identity.display_name)
        chunks = await self.buffer.chunks(stream_id)
        if chunks is not None:
            stream.load(content_of(marker.format, chunks), len(chunks))
        elif marker.content_json is not None:
            stream.load(json.loads(marker.content_json), marker.chunks)
        self.publish_control(marker.channel, {"moved": stream_id, "fence": marker.fence})
        self.table.hold(stream)
        log.info("stream %s resumed by its writer at chunk %d", stream_id, stream.next)
        return {"stream_id": stream_id, "next": stream.next}

    # --- anyone's operations ------------------------------------------------------------------

    async def cancel(self, conn: Connection, stream_id: str) -> int:
        """Cancel an open stream (writer, or anyone with `cancel`), held here or on another node;
        the writer is told who did. Returns the final message's serial."""
        by = conn.identity.client_id
        stream = self.table.get(stream_id)
        if stream is not None:
            is_writer = conn.session_id is not None and stream.writer == conn.session_id
            if not is_writer:
                conn.identity.require(stream.channel, "cancel")
            future = self._finish(stream, "cancelled", stream.content(), cancelled_by=by)
            writer = self.writer_connection(stream.writer)
            if writer is not None:
                writer.send(frames.stream_cancelled(stream.channel, stream_id, by))
            return await future
        marker = await self.store.marker(stream_id)
        if marker is None:
            raise ProtocolError(Code.STREAM_NOT_FOUND, "stream not found or already ended")
        if not (marker.client_id == by and conn.identity.can(marker.channel, "stream")):
            conn.identity.require(marker.channel, "cancel")
        # Held by another node (or by nobody): end it from here; its holder learns of it from the
        # final message, which reaches every node serving the channel.
        return await self.ends.end_unheld(marker, "cancelled", cancelled_by=by)

    # --- ending ------------------------------------------------------------------------------

    def _finish(
        self,
        stream: Stream,
        status: str,
        content: Any,
        cancelled_by: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> asyncio.Future[int]:
        """Forget the stream and queue its one durable message; the future gives its serial."""
        self.table.forget(stream)
        meta_json = None if stream.meta is None else encode_value(stream.meta)
        message = end_message(
            self._marker(stream, meta_json), status, content, extra_of(stream, cancelled_by, error)
        )
        room = self.rules.stream_end(stream, status)
        return self.ends.commit(stream.stream_id, stream.channel, status, message, room)

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
        for stream in self.table.of_run(run_id):
            ended = self._finish(stream, status, stream.content(), cancelled_by=cancelled_by, error=error)
            ended.add_done_callback(quiet)

    def abort_session(self, session_id: str, why: str) -> None:
        """End every stream the session writes as aborted, with the text so far."""
        for stream in self.table.of_session(session_id):
            log.info("stream %s aborted: %s", stream.stream_id, why)
            self._finish(stream, "aborted", stream.content()).add_done_callback(quiet)

    # --- news from other nodes ---------------------------------------------------------------

    def on_message(self, message: Message) -> None:
        """A durable message reached this node: if it ends a stream held here (ended elsewhere:
        cancelled by a member on another node), let go of it and tell its writer."""
        stream = self.table.get(message.stream_id or "")
        if stream is None:
            return
        self.table.forget(stream)
        writer = self.writer_connection(stream.writer)
        by = (message.extra or {}).get("cancelled_by")
        if writer is not None and message.status == "cancelled" and isinstance(by, str):
            writer.send(frames.stream_cancelled(stream.channel, stream.stream_id, by))

    def on_control(self, control: dict[str, Any]) -> None:
        """A node's news about a channel: a stream this node held was resumed elsewhere."""
        stream = self.table.get(str(control.get("moved", "")))
        fence = control.get("fence")
        if stream is not None and isinstance(fence, int) and fence > stream.fence:
            log.info("stream %s moved to another node", stream.stream_id)
            self.table.forget(stream)

    # --- leases ------------------------------------------------------------------------------

    async def end_lapsed(self) -> None:
        """End the streams whose lease lapsed (their node died) as aborted, once (`broker.leases`)."""
        await self.ends.end_lapsed(self.holds)

    def holds(self, stream_id: str) -> bool:
        """True while this node holds the stream."""
        return self.table.get(stream_id) is not None

    async def release_all(self) -> None:
        """Shutting down: let go of every stream, saving its content, so its writer can resume it
        on another node (or on this one after a restart) within the stream grace."""
        until = now_ms() + self.lease_ms
        await self.buffer.flush()
        for stream in self.table.all():
            try:
                await self.store.release(
                    stream.stream_id, stream.fence, encode_value(stream.content()), stream.next, until
                )
            except Exception as exc:
                log.warning("could not release stream %s: %s", stream.stream_id, exc)
            self.table.forget(stream)
