"""The writer side of a token stream: open, coalesced appends, end or cancel (chunk state: the core)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

from agentchat.errors import AgentChatError, AlreadyExistsError, RequestError, StreamCancelled, StreamLost
from agentchat.events import ChannelEvent, WriterAcked, WriterCancelled, WriterFailed
from agentchat.ports import ChannelView
from agentchat.writer_state import WriterState
from agentchat_server.protocol import Code

log = logging.getLogger("agentchat.stream")

END_ON_ERROR_TIMEOUT = 10.0
FIND_FINAL_WITHIN = 1000  # messages searched, newest first, for an end whose ack was lost


class Stream:
    """A single-writer token stream in a channel; it ends as one durable message.

    `async with channel.stream(reply_to=…) as stream:` opens it (AlreadyExistsError if a message or
    open stream has this `id`: the answer exists; with `thread`, MessageNotFound or a 40004
    RequestError when that root cannot take replies); its final message is a reply in `thread`.
    `to` addresses it and `claim` carries the claimed message's token (as on `publish`).
    `append` sends the first chunk at once, then coalesces appends every `coalesce` seconds. Leaving
    the block normally ends it `complete`; an exception ends it `cancelled` with the text so far and
    propagates; `fail(message)` ends it `failed` with that error. If a member cancels the stream,
    `cancelled` becomes true, `on_cancel` callbacks run, and the next `append` raises
    StreamCancelled, which the `async with` block swallows. Chunks whose acks were lost in a
    reconnect are resent (the server ignores repeated indexes).
    """

    def __init__(
        self,
        channel: ChannelView,
        *,
        name: str = "message",
        reply_to: int | None = None,
        id: str | None = None,
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float = 0.04,
        max_unacked: int = 64,
        thread: int | None = None,
        to: Sequence[str] | None = None,
        claim: int | None = None,
        run_id: str | None = None,
        lane: str | None = None,
        tool_call: dict[str, str] | None = None,
    ) -> None:
        self.channel = channel
        self.client = channel.client
        self.name = name
        self.reply_to = reply_to
        self.thread = thread
        self.to = list(to) if to is not None else None
        self.claim = claim
        self.run_id = run_id
        self.lane = lane
        self.tool_call = tool_call
        self.id = id or uuid.uuid4().hex
        self.meta = meta
        self.format = format
        self.coalesce = coalesce
        self.stream_id: str | None = None
        self.serial: int | None = None
        self.status: str | None = None
        self._max_unacked = max_unacked
        self._writer: WriterState | None = None
        self._buffer: list[Any] = []
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._progress = asyncio.Event()
        self._cancelled = asyncio.Event()
        self._on_cancel: list[Callable[[], None]] = []
        self._on_finish: list[Callable[[], None]] = []
        self._unlisten: Callable[[], None] | None = None

    @property
    def content(self) -> Any:
        """Everything appended so far: the text, or for `json` streams the list of chunks."""
        sent = self._writer.chunks if self._writer is not None else []
        if self.format == "text":
            return "".join(sent) + "".join(self._buffer)
        return [*sent, *self._buffer]

    @property
    def cancelled(self) -> bool:
        """True once someone cancelled the stream (the writer should stop producing)."""
        return self._cancelled.is_set()

    @property
    def cancelled_by(self) -> str | None:
        """The client_id of the member who cancelled the stream, if one did."""
        return self._writer.cancelled_by if self._writer is not None else None

    async def wait_cancelled(self) -> None:
        """Return when the stream is cancelled."""
        await self._cancelled.wait()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, synchronously) when a cancel arrives, e.g. to stop the model task."""
        self._on_cancel.append(callback)

    def on_finish(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, synchronously) when the stream is over: ended, cancelled or lost."""
        self._on_finish.append(callback)

    # --- writer API ------------------------------------------------------------------------

    async def open(self) -> Stream:
        """Open the stream; raise AlreadyExistsError if its `id` was answered or is being answered."""
        frame: dict[str, Any] = {
            "type": "stream_open",
            "channel": self.channel.name,
            "name": self.name,
            "id": self.id,
            "format": self.format,
        }
        if self.reply_to is not None:
            frame["reply_to"] = self.reply_to
        if self.thread is not None:
            frame["thread"] = self.thread
        if self.meta is not None:
            frame["meta"] = self.meta
        for room_field in ("to", "claim", "run_id", "lane", "tool_call"):
            value = getattr(self, room_field)
            if value is not None:
                frame[room_field] = value
        resume_key: str | None = None
        try:
            reply = await shielded(self.client.submit(frame), self._end_orphan)
            stream_id = str(reply["stream_id"])
            key = reply.get("resume_key")
            resume_key = key if isinstance(key, str) else None
        except AlreadyExistsError as exc:
            # Our own open, resent after a drop ate its ack: the open stream is ours.
            if not (exc.resent and exc.stream_id):
                raise
            stream_id = exc.stream_id
        self.stream_id = stream_id
        self.status = "open"
        self._writer = self.client.state.open_writer(self.channel.name, stream_id, resume_key, self.run_id)
        self._unlisten = self.channel.listen(self._on_event)
        return self

    async def append(self, chunk: Any) -> None:
        """Add a chunk (a string for text streams). Raises StreamCancelled / StreamLost when over."""
        writer = self._check_open()
        if self.format == "text":
            if not isinstance(chunk, str):
                raise TypeError("text streams take str chunks")
            if not chunk:
                return
        self._buffer.append(chunk)
        loop = asyncio.get_running_loop()
        if self.format == "json" or not writer.chunks or self.coalesce <= 0:
            self._flush()
        elif self._timer is None:
            delay = max(0.0, self._last_flush + self.coalesce - loop.time())
            self._timer = loop.call_later(delay, self._flush)
        # Backpressure: a writer far ahead of the server's acks waits instead of buffering without end.
        while writer.unacked >= self._max_unacked:
            self._progress.clear()
            await self._progress.wait()
            self._check_open()

    async def end(
        self,
        data: Any = None,
        *,
        status: Literal["complete", "failed", "cancelled"] = "complete",
        error: dict[str, str] | None = None,
    ) -> int | None:
        """Flush, end the stream and return the final message's serial.

        `data`, if given, is declared as the final content (the server stores it as authoritative);
        by default the appended content is declared. `failed` needs `error` (see `fail`).
        """
        if self.status in ("complete", "failed", "cancelled"):
            return self.serial
        writer = self._check_open()
        self._flush()
        # `chunks` in stream_end must match what the server holds: wait until it confirmed them all.
        while writer.acked < len(writer.chunks) and not writer.over:
            self._progress.clear()
            await self._progress.wait()
        self._check_open()
        frame: dict[str, Any] = {
            "type": "stream_end",
            "stream_id": self.stream_id,
            "status": status,
            "chunks": len(writer.chunks),
        }
        if status == "failed":
            frame["error"] = error or {"message": "failed"}
        declared = self.content if data is None else data
        if _fits(declared, self.client.limits):
            frame["data"] = declared
        try:
            reply = await self.client.request(frame)
        except RequestError as exc:
            if exc.code == Code.STREAM_NOT_FOUND and self.cancelled:
                raise StreamCancelled(str(self.stream_id), self.cancelled_by) from None
            if exc.code == Code.STREAM_NOT_FOUND and exc.resent:
                # The first end was applied but its ack was lost in a reconnect.
                self._finish(status, await self._find_final())
                return self.serial
            self._fail(exc)
            raise
        self._finish(status, reply.get("serial"))
        return self.serial

    async def fail(self, message: str, code: str | None = None) -> int | None:
        """End the stream `failed` with `error` {message, code}: the writer's model or tool failed
        (readers show the failure, never a Stop). Returns the final message's serial."""
        return await self.end(status="failed", error=error_info(message, code))

    async def cancel(self) -> int | None:
        """Cancel the stream (ends `cancelled` with the text so far); return the final serial."""
        if self.status != "open":
            return self.serial
        self._flush()
        reply = await self.client.request({"type": "stream_cancel", "stream_id": self.stream_id})
        self._finish("cancelled", reply.get("serial"))
        return self.serial

    async def __aenter__(self) -> Stream:
        return await self.open()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            try:
                await self.end()
            except StreamCancelled:
                pass
            return False
        if isinstance(exc, StreamCancelled) and exc.stream_id == self.stream_id:
            return True
        if self.status == "open":
            # Never leave a stream open behind a failed writer: end it with what it has. A run's
            # lane fails with the error (the run fails with it); a cancelled task cancels it.
            failed = self.run_id is not None and not isinstance(exc, asyncio.CancelledError)
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(END_ON_ERROR_TIMEOUT):
                    if failed:
                        await self.fail(str(exc) or type(exc).__name__, type(exc).__name__)
                    else:
                        await self.end(status="cancelled")
        return False

    # --- internals -------------------------------------------------------------------------

    def _end_orphan(self, reply: dict[str, Any]) -> None:
        # Opened after its opener was cancelled: nobody will write it, so end it at once.
        stream_id = reply.get("stream_id")
        if isinstance(stream_id, str):
            end = {"type": "stream_end", "stream_id": stream_id, "status": "cancelled", "chunks": 0}
            self.client.submit(end).add_done_callback(quiet)

    def _check_open(self) -> WriterState:
        writer = self._writer
        if writer is not None and writer.cancelled:
            raise StreamCancelled(str(self.stream_id), writer.cancelled_by)
        if writer is not None and writer.error is not None:
            raise writer.error
        if writer is None or self.status != "open":
            raise StreamLost(f"stream {self.id} is not open ({self.status})")
        return writer

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        writer = self._writer
        if not self._buffer or self.status != "open" or writer is None or writer.over:
            return
        if self.format == "text":
            pieces: list[Any] = _split("".join(self._buffer), _max_chars(self.client.limits))
        else:
            pieces = list(self._buffer)
        self._buffer.clear()
        self.client.state.append(writer.stream_id, pieces)
        self._last_flush = asyncio.get_running_loop().time()

    def _on_event(self, event: ChannelEvent) -> None:
        if (
            not isinstance(event, WriterAcked | WriterCancelled | WriterFailed)
            or event.stream_id != self.stream_id
        ):
            return
        self._progress.set()
        if isinstance(event, WriterCancelled):
            self._cancelled.set()
            if self.status == "open":
                self.status = "cancelled"
                self._buffer.clear()
            self._release()
            for callback in self._on_cancel:
                try:
                    callback()
                except Exception:
                    log.exception("on_cancel callback failed")
        elif isinstance(event, WriterFailed):
            if self.status == "open":
                self.status = "aborted"
            self._release()

    def _fail(self, error: AgentChatError) -> None:
        if self._writer is not None:
            self._writer.fail(error)
        if self.status == "open":
            self.status = "aborted"
        self._release()

    def _finish(self, status: str, serial: Any) -> None:
        self.status = status
        self.serial = serial if isinstance(serial, int) else None
        self._release()

    def _release(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
            if self.stream_id is not None:
                self.client.state.close_writer(self.stream_id)
            for callback in self._on_finish:
                try:
                    callback()
                except Exception:
                    log.exception("on_finish callback failed")

    async def _find_final(self) -> int | None:
        # The final message is recent: it was stored just before our reconnect.
        async for message in self.channel.messages(limit=FIND_FINAL_WITHIN):
            if message.stream_id == self.stream_id or message.id == self.id:
                return message.serial
        return None


async def shielded(
    reply: asyncio.Future[dict[str, Any]], orphaned: Callable[[dict[str, Any]], None]
) -> dict[str, Any]:
    """Await a request that opens something; if the caller is cancelled meanwhile, the request
    still completes and `orphaned` gets its reply, to close what it opened."""
    try:
        return await asyncio.shield(reply)
    except asyncio.CancelledError:
        reply.add_done_callback(lambda done: _orphan(done, orphaned))
        raise


def _orphan(done: asyncio.Future[dict[str, Any]], orphaned: Callable[[dict[str, Any]], None]) -> None:
    if not done.cancelled() and done.exception() is None:
        orphaned(done.result())


def quiet(done: asyncio.Future[dict[str, Any]]) -> None:
    """Retrieve a fire-and-forget request's outcome (logged when it failed)."""
    if not done.cancelled() and done.exception() is not None:
        log.info("closing an orphaned stream or run failed: %s", done.exception())


def error_info(message: str, code: str | None = None) -> dict[str, str]:
    """The wire `error` of a failed stream or run: the message (1-1000 chars) and an optional code."""
    info = {"message": (message or "failed")[:1000]}
    if code is not None:
        info["code"] = code[:64]
    return info


def _fits(value: Any, limits: dict[str, int]) -> bool:
    # The declared content rides in one frame: leave it out when it could break the frame limit
    # (the server then stores the content it assembled, which the `chunks` count vouches for).
    budget = limits.get("max_frame_bytes", 128 * 1024) // 2
    if isinstance(value, str):
        return len(value) * 4 <= budget
    return len(repr(value)) * 2 <= budget


def _max_chars(limits: dict[str, int]) -> int:
    return max(256, limits.get("max_frame_bytes", 128 * 1024) // 8)


def _split(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [text]
