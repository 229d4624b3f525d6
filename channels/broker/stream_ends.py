"""How a stream ends: its one durable message, committed under its holder's fencing token, by the
node that holds it, by any node for a member's cancel, or by any node when its holder died."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from agentchat_server.broker.committer import Committer
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import RoomRules
from agentchat_server.core.records import NewMessage
from agentchat_server.core.streams import Stream
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code, ProtocolError, encode_value
from agentchat_server.protocol.mentions import mentioned
from agentchat_server.store import Append, AppendResult, Outcome, Store, StreamMarker
from agentchat_server.streambuf import StreamBuffer

log = logging.getLogger(__name__)


class StreamEnds:
    """Commits streams' final messages and ends the ones nobody holds any more."""

    def __init__(
        self, store: Store, buffer: StreamBuffer, committer: Committer, metrics: Metrics, rules: RoomRules
    ) -> None:
        self.rules = rules
        self.store = store
        self.buffer = buffer
        self.committer = committer
        self.metrics = metrics

    async def end_unheld(self, marker: StreamMarker, status: str, cancelled_by: str | None = None) -> int:
        """End a stream this node does not hold, with the content the cluster has of it; returns
        the final serial (ProtocolError if its writer resumed it meanwhile)."""
        chunks = await self.buffer.chunks(marker.stream_id)
        if chunks is not None:
            content: Any = content_of(marker.format, chunks)
        elif marker.content_json is not None:
            content = json.loads(marker.content_json)
        else:
            content = "" if marker.format == "text" else []
        extra: dict[str, Any] = {}
        if cancelled_by is not None:
            extra["cancelled_by"] = cancelled_by
        message = end_message(marker, status, content, extra or None)
        return await self.commit(marker.stream_id, marker.channel, status, message)

    def commit(
        self, stream_id: str, channel: str, status: str, message: NewMessage, room: Any = None
    ) -> asyncio.Future[int]:
        """Queue the final message (with the room's checks `room`, for a claimed answer or a run's
        lane); the future gives its serial, or fails (50300; 40901 when the fence moved on, the
        stream was resumed elsewhere; a room's code when its claim or run was lost)."""
        committed = self.committer.submit(Append(channel, [message], room=room))
        done: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        metrics = self.metrics
        buffer = self.buffer
        rules = self.rules

        def settle(fut: asyncio.Future[Outcome]) -> None:
            if done.done():
                return
            exc = fut.exception()
            if exc is not None:
                log.error("could not commit the end of stream %s: %s", stream_id, exc)
                done.set_exception(ProtocolError(Code.UNAVAILABLE, "could not store the stream's message"))
                return
            result = fut.result()
            assert isinstance(result, AppendResult)
            if result.fenced:
                done.set_exception(
                    ProtocolError(Code.NOT_STREAM_WRITER, "the stream was resumed elsewhere: end refused")
                )
                return
            buffer.ended(channel, stream_id)
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

    async def end_lapsed(self, held: Callable[[str], bool]) -> None:
        """End, as aborted with the text so far, every stream whose lease lapsed (its node died)
        and that this node does not hold; exactly one node's end is stored."""
        for marker in await self.store.lapsed_markers(now_ms()):
            if held(marker.stream_id):
                continue  # ours: renewed on the next round
            try:
                await self.end_unheld(marker, "aborted")
                log.info("stream %s ended as aborted: its holder is gone", marker.stream_id)
            except ProtocolError:
                pass  # resumed by its writer meanwhile
            except Exception:
                log.exception("could not end stream %s", marker.stream_id)


def quiet(future: asyncio.Future[int]) -> None:
    """Retrieve a finished future's error (logged where it arose) so asyncio does not warn."""
    if not future.cancelled():
        future.exception()


def content_of(fmt: str, chunks: list[Any]) -> Any:
    """A stream's content from its chunks: the text, or the list for json streams."""
    return "".join(c for c in chunks if isinstance(c, str)) if fmt == "text" else list(chunks)


def extra_of(
    stream: Stream, cancelled_by: str | None, error: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The server-stamped fields of a stream's final message (its room fields: to, run, lane)."""
    extra: dict[str, Any] = dict(stream.room or {})
    if stream.display_name is not None:
        extra["display_name"] = stream.display_name
    if cancelled_by is not None:
        extra["cancelled_by"] = cancelled_by
    if error is not None:
        extra["error"] = error
    return extra or None


def end_message(marker: StreamMarker, status: str, content: Any, extra: dict[str, Any] | None) -> NewMessage:
    """The one durable message that ends a stream, by its holder (fenced) or as an orphan."""
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
        fence=marker.fence,
        thread=marker.thread,
        mentions=mentioned(content, marker.client_id, None if extra is None else extra.get("to")),
    )
