"""The writer side of a token stream: open, coalesced appends with chunk indexes, end or cancel."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

from agentchat.errors import (
    AgentChatError,
    AlreadyExistsError,
    RequestError,
    StreamCancelled,
    StreamLost,
)
from agentchat_server.protocol import Code

if TYPE_CHECKING:
    from agentchat.channel import Channel

log = logging.getLogger("agentchat.stream")

END_ON_ERROR_TIMEOUT = 10.0


class Stream:
    """A single-writer token stream in a channel; it ends as one durable message.

    `async with channel.stream(reply_to=…) as stream:` opens it (AlreadyExistsError if a message or
    open stream has this `id`: the answer exists). `append` sends the first chunk at once, then
    coalesces appends every `coalesce` seconds. Leaving the block normally ends it `complete`; an
    exception ends it `cancelled` with the text so far and propagates. If a member cancels the
    stream, `cancelled` becomes true, `on_cancel` callbacks run, and the next `append` raises
    StreamCancelled, which the `async with` block swallows. Chunks whose acks were lost in a
    reconnect are resent (the server ignores repeated indexes).
    """

    def __init__(
        self,
        channel: Channel,
        *,
        name: str = "message",
        reply_to: int | None = None,
        id: str | None = None,
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float = 0.04,
        max_unacked: int = 64,
    ) -> None:
        self.channel = channel
        self.client = channel.client
        self.name = name
        self.reply_to = reply_to
        self.id = id or uuid.uuid4().hex
        self.meta = meta
        self.format = format
        self.coalesce = coalesce
        self.stream_id: str | None = None
        self.serial: int | None = None
        self.status: str | None = None
        self.cancelled_by: str | None = None
        self._max_unacked = max_unacked
        self._chunks: list[Any] = []
        self._buffer: list[Any] = []
        self._acks: deque[asyncio.Future[dict[str, Any]]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        self._error: AgentChatError | None = None
        self._cancelled = asyncio.Event()
        self._on_cancel: list[Callable[[], None]] = []
        self._resent_from = -1

    @property
    def content(self) -> Any:
        """Everything appended so far: the text, or for `json` streams the list of chunks."""
        if self.format == "text":
            return "".join(self._chunks) + "".join(self._buffer)
        return [*self._chunks, *self._buffer]

    @property
    def cancelled(self) -> bool:
        """True once someone cancelled the stream (the writer should stop producing)."""
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Return when the stream is cancelled."""
        await self._cancelled.wait()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, synchronously) when a cancel arrives, e.g. to stop the model task."""
        self._on_cancel.append(callback)

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
        if self.meta is not None:
            frame["meta"] = self.meta
        try:
            reply = await self.client.request(frame)
            stream_id = str(reply["stream_id"])
        except AlreadyExistsError as exc:
            # Our own open, resent after a drop ate its ack: the open stream is ours.
            if not (exc.resent and exc.stream_id):
                raise
            stream_id = exc.stream_id
        self.stream_id = stream_id
        self.status = "open"
        self.client._streams[stream_id] = self
        return self

    async def append(self, chunk: Any) -> None:
        """Add a chunk (a string for text streams). Raises StreamCancelled / StreamLost when over."""
        self._check_open()
        if self.format == "text":
            if not isinstance(chunk, str):
                raise TypeError("text streams take str chunks")
            if not chunk:
                return
        self._buffer.append(chunk)
        loop = asyncio.get_running_loop()
        if self.format == "json" or not self._chunks or self.coalesce <= 0:
            self._flush()
        elif self._timer is None:
            delay = max(0.0, self._last_flush + self.coalesce - loop.time())
            self._timer = loop.call_later(delay, self._flush)
        # Backpressure: a writer far ahead of the server's acks waits instead of buffering without end.
        while len(self._acks) >= self._max_unacked:
            await asyncio.wait({self._acks[0]})
            self._acks.popleft()
            self._check_open()

    async def end(
        self, data: Any = None, *, status: Literal["complete", "cancelled"] = "complete"
    ) -> int | None:
        """Flush, end the stream and return the final message's serial.

        `data`, if given, is declared as the final content (the server stores it as authoritative);
        by default the appended content is declared.
        """
        if self.status in ("complete", "cancelled"):
            return self.serial
        self._check_open()
        self._flush()
        await asyncio.gather(*self._acks, return_exceptions=True)
        self._acks.clear()
        self._check_open()
        frame: dict[str, Any] = {
            "type": "stream_end",
            "stream_id": self.stream_id,
            "status": status,
            "chunks": len(self._chunks),
        }
        declared = self.content if data is None else data
        if _fits(declared, self.client.limits):
            frame["data"] = declared
        try:
            reply = await self.client.request(frame)
        except RequestError as exc:
            if exc.code == Code.STREAM_NOT_FOUND and self.cancelled:
                raise self._error or exc from None
            if exc.code == Code.STREAM_NOT_FOUND and exc.resent:
                # The first end was applied but its ack was lost in a reconnect.
                self._finish(status, await self._find_final())
                return self.serial
            self._fail(exc)
            raise
        self._finish(status, reply.get("serial"))
        return self.serial

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
        if self.status == "open" and self._error is None:
            # Never leave a stream open behind a failed writer: end it with what it has.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                async with asyncio.timeout(END_ON_ERROR_TIMEOUT):
                    await self.end(status="cancelled")
        return False

    # --- internals -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._error is not None:
            raise self._error
        if self.status != "open":
            raise StreamLost(f"stream {self.id} is not open ({self.status})")

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._buffer or self.status != "open" or self._error is not None:
            return
        if self.format == "text":
            pieces: list[Any] = _split("".join(self._buffer), _max_chars(self.client.limits))
        else:
            pieces = list(self._buffer)
        self._buffer.clear()
        for piece in pieces:
            self._send_chunk(len(self._chunks), piece)
            self._chunks.append(piece)
        self._last_flush = asyncio.get_running_loop().time()

    def _send_chunk(self, index: int, piece: Any) -> None:
        frame = {"type": "stream_append", "stream_id": self.stream_id, "i": index, "d": piece}
        try:
            future = self.client.submit(frame)
        except AgentChatError as exc:
            # Runs from a timer too, where nobody would see the exception: keep it for the writer.
            self._fail(exc)
            return
        future.add_done_callback(self._chunk_done)
        self._acks.append(future)

    def _chunk_done(self, future: asyncio.Future[dict[str, Any]]) -> None:
        if future.cancelled():
            return
        error = future.exception()
        if error is None:
            return
        if isinstance(error, RequestError) and error.code == Code.CHUNK_OUT_OF_ORDER:
            expected = error.details.get("next")
            if isinstance(expected, int) and expected > self._resent_from and self.status == "open":
                self._resent_from = expected
                for index in range(expected, len(self._chunks)):
                    self._send_chunk(index, self._chunks[index])
            return
        if isinstance(error, RequestError) and error.code == Code.STREAM_NOT_FOUND and self.cancelled:
            return
        if isinstance(error, RequestError) and error.code in (Code.STREAM_NOT_FOUND, Code.NOT_STREAM_WRITER):
            self._fail(StreamLost(f"stream {self.id} ended by the server ({error.code})"))
        elif isinstance(error, AgentChatError):
            self._fail(error)

    def _fail(self, error: AgentChatError) -> None:
        if self._error is None:
            self._error = error
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
        if self.stream_id is not None:
            self.client._streams.pop(self.stream_id, None)

    async def _find_final(self) -> int | None:
        page = await self.channel.history(limit=100)
        for message in page.messages:
            if message.stream_id == self.stream_id or message.id == self.id:
                return message.serial
        return None

    # --- called by the Client --------------------------------------------------------------

    def _on_cancelled(self, frame: dict[str, Any]) -> None:
        if self._cancelled.is_set():
            return
        self.cancelled_by = frame.get("by")
        self._cancelled.set()
        if self.status == "open":
            self._error = StreamCancelled(str(self.stream_id), self.cancelled_by)
            self.status = "cancelled"
            self._buffer.clear()
        self._release()
        for callback in self._on_cancel:
            try:
                callback()
            except Exception:
                log.exception("on_cancel callback failed")

    def _session_lost(self) -> None:
        if self.status != "open":
            return
        lost = StreamLost(f"stream {self.id}: the session that wrote it is gone (the server aborts it)")
        for future in self._acks:
            self.client.abandon(future, lost)
        self._fail(lost)


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
