"""What a bot handler gets: the triggering message and ways to answer it exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

from agentchat.channel import Channel
from agentchat.client import Client
from agentchat.errors import ConflictError, RunCancelled, StreamCancelled
from agentchat.models import Message
from agentchat.retry import error_info
from agentchat.roommodels import InputAnswer
from agentchat.runs import Run
from agentchat.stream import Stream

log = logging.getLogger("agentchat.bot")

FAIL_TIMEOUT = 10.0

ASK_INDEX = 1 << 20  # ids of a handler's input requests: indexes apart from its replies

ReplyIds = Callable[[str, int, int, int], str]
"""`ids(channel, serial, attempt, index)`: the id of an answer (see `agentchat.replies`)."""


class Context:
    """Handed to each handler call: `message`, `channel`, and `reply` / `stream` with derived ids.

    Replies carry `reply_to=message.serial` and an id derived from it (`agentchat.replies`), so a
    bot that runs again after a crash cannot post a second answer: the server keeps the first. A
    message in a thread is answered in that thread (`thread`); `conversation()` reads what it follows.
    In a pool, `claim` is the fencing token of the bot's claim on the message: replies carry it.
    `resuming` is true when this answer's run was left unfinished by an earlier start of the bot.
    """

    def __init__(
        self,
        client: Client,
        channel: Channel,
        message: Message,
        attempt: int,
        *,
        ids: ReplyIds,
        coalesce: float = 0.04,
        on_streaming: Callable[[int], None] | None = None,
        claim: int | None = None,
        shutting_down: Callable[[], bool] = lambda: False,
    ) -> None:
        self.channel = channel
        self.message = message
        self.attempt = attempt
        self.claim = claim
        self.replies = 0
        self.asks = 0
        self._run: _AnswerRun | None = None
        self.resuming = False
        self._shutting_down = shutting_down
        self.stopped_by_cancel = False
        self._client = client
        self._ids = ids
        self._coalesce = coalesce
        self._on_streaming = on_streaming
        self._on_stop: list[Callable[[], Any]] = []

    @property
    def client(self) -> Client:
        """The bot's Client (for other channels or raw requests)."""
        return self._client

    @property
    def thread(self) -> int | None:
        """The thread root the answer goes to: the message's thread, None on the main timeline."""
        return self.message.thread

    async def conversation(self, limit: int = 20) -> list[Message]:
        """The conversation the message belongs to, oldest first, up to and including it: at most
        `limit` messages. On the main timeline: top-level messages (no thread replies, no events);
        in a thread: its root, then its replies. Messages come in their current version."""
        serial = self.message.serial
        assert serial is not None
        if limit <= 0:
            return []
        root = self.thread
        if root is None:
            recent = self.channel.messages(before=serial + 1, view="main", limit=limit)
            return list(reversed([m async for m in recent]))
        # The root is what the thread is about: it always leads, the newest replies fill the rest.
        head = [
            m for m in (await self.channel.history(before=root + 1, limit=1)).messages if m.serial == root
        ]
        recent = self.channel.messages(before=serial + 1, thread=root, limit=limit - len(head))
        replies = [m async for m in recent] if limit > len(head) else []
        return [*head, *reversed(replies)]

    def next_reply_id(self) -> str:
        """The id the next reply (message or stream) of this handler call will use."""
        assert self.message.serial is not None
        return self._ids(self.channel.name, self.message.serial, self.attempt, self.replies)

    def run(self, *, to: Sequence[str] | None = None) -> Run:
        """A run answering the message (reply_to, derived id, the pool's claim token): `async with
        context.run() as run:` then its lanes (`run.reasoning()`, `run.tool_call(...)`,
        `run.text()`), `run.tool_result(...)`. An exception ends it `failed` with the error. A run
        waiting for input (`ask`) when the bot shuts down is left parked, and the restarted bot,
        answering the message again, takes the same run back (`run_resume`)."""
        assert self.message.serial is not None
        run = _AnswerRun(
            self.channel,
            self._shutting_down,
            self.resuming,
            reply_to=self.message.serial,
            claim=self.claim,
            to=to,
            id=self.next_reply_id(),
        )
        self.replies += 1
        self._run = run
        return run

    async def ask(
        self,
        prompt: str,
        *,
        shape: dict[str, Any] | None = None,
        data: Any = None,
        deadline: int | None = None,
        to: Sequence[str] | None = None,
        run: str | None = None,
    ) -> InputAnswer:
        """Ask the room (an approval by default; `shape`, `data`, `deadline`, `to`, `run` as in
        `channel.ask`) and wait for the answer (`.approved`, `.outcome`, `.data`). Asked inside
        `context.run()`, the request belongs to that run by default (it waits `input_required`).

        The request's id derives from the message like a reply's, so a bot that restarted while
        waiting asks the same request again when it answers the message anew, and gets the answer
        given meanwhile (from `requests(mine=True)`), or live once someone answers.
        """
        assert self.message.serial is not None
        index = ASK_INDEX + self.asks
        self.asks += 1
        ask_id = self._ids(self.channel.name, self.message.serial, self.attempt, index)
        waiting = self._run if self._run is not None and self._run.open else None
        if run is None and waiting is not None:
            run = waiting.id
        asked = await self.channel.ask(
            prompt, shape=shape, data=data, deadline=deadline, to=to, run=run, id=ask_id
        )
        if waiting is not None:
            waiting.asking += 1  # until answered: a shutdown meanwhile parks the run
        try:
            serial = asked.request.serial
            if not asked.done and serial is not None:
                # Asked before (a restart): the server returned the request, maybe answered already.
                for request in await self.channel.requests(
                    status="closed", mine=True, after=serial - 1, limit=1
                ):
                    if request.request_id == asked.request_id and request.answer is not None:
                        asked.settle(request.answer)
            answer = await asked.wait()
        finally:
            asked.close()
        if waiting is not None:
            waiting.asking -= 1
        return answer

    def on_stop(self, callback: Callable[[], Any]) -> None:
        """Call `callback` when a member cancels this handler's stream (the Bot stops the handler)."""
        self._on_stop.append(callback)

    async def reply(self, data: Any, *, name: str = "message", if_serial: int | None = None) -> int:
        """Publish an answer (reply_to the trigger, derived id, in its thread); return its serial
        once committed.

        With `if_serial` it is published only if the channel's last serial is still that one (turn
        taking): otherwise ConflictError (`.last_serial` says where the channel is) and nothing is
        published; the next `reply` uses the same id again.
        """
        message_id = self.next_reply_id()
        index = self.replies
        self.replies += 1
        try:
            return await self.channel.publish(
                data,
                name=name,
                id=message_id,
                reply_to=self.message.serial,
                if_serial=if_serial,
                thread=self.thread,
                claim=self.claim,
            )
        except ConflictError:
            if self.replies == index + 1:
                self.replies = index  # nothing was published: the id is still free for the retry
            raise

    def stream(
        self,
        *,
        name: str = "message",
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float | None = None,
    ) -> Stream:
        """A streamed answer (reply_to the trigger, derived id, in its thread). Opening it raises
        AlreadyExistsError when the answer exists; the Bot treats that as done. A cancel stops the
        handler; an exception leaving its `async with` ends it `failed` with the error."""
        return self._answer_stream(name=name, meta=meta, format=format, coalesce=coalesce)

    def _answer_stream(
        self,
        *,
        name: str = "message",
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float | None = None,
    ) -> _AnswerStream:
        stream = _AnswerStream(
            self.channel,
            self._on_streaming,
            name=name,
            reply_to=self.message.serial,
            id=self.next_reply_id(),
            meta=meta,
            format=format,
            coalesce=self._coalesce if coalesce is None else coalesce,
            thread=self.thread,
            claim=self.claim,
        )
        stream.on_cancel(self._member_cancelled)
        self.replies += 1
        return stream

    async def fail(self, error: BaseException) -> None:
        """Leave a `failed` answer saying why (message and code, `agentchat.retry.error_info`) when
        this handler call has not answered yet; a stream it opened was failed when it raised."""
        if self.replies:
            return
        message, code = error_info(error)
        stream = self._answer_stream()
        await stream.open()
        await stream.fail(message, code)

    def _member_cancelled(self) -> None:
        # The model may be blocked awaiting its next token; stopping the handler stops it now.
        self.stopped_by_cancel = True
        for callback in self._on_stop:
            callback()


class _AnswerStream(Stream):
    """A Stream that reports when it starts streaming (its first chunk) and when it is over, and
    ends `failed` (not `cancelled`) when its writer raises: a model failure is no Stop."""

    def __init__(self, channel: Channel, on_streaming: Callable[[int], None] | None, **options: Any) -> None:
        super().__init__(channel, **options)
        self._on_streaming = on_streaming
        self._counted = False
        self.on_finish(self._finished)

    async def append(self, chunk: Any) -> None:
        # "streaming" starts with the first token; until then the bot is still "thinking".
        if not self._counted and self.status == "open" and self._on_streaming is not None:
            self._counted = True
            self._on_streaming(+1)
        await super().append(chunk)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, Exception) and not isinstance(exc, StreamCancelled) and self.status == "open":
            message, code = error_info(exc)
            try:
                async with asyncio.timeout(FAIL_TIMEOUT):
                    await self.fail(message, code)
            except Exception as failing:
                log.info("could not end stream %s failed: %s", self.stream_id, failing)
            if self.status == "open":  # never leave it open behind a failed writer
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    return await super().__aexit__(exc_type, exc, tb)
            return False
        return await super().__aexit__(exc_type, exc, tb)

    def _finished(self) -> None:
        if self._counted and self._on_streaming is not None:
            self._counted = False
            self._on_streaming(-1)


class _AnswerRun(Run):
    """A bot's run: it fails with the error's code as a bot's answers do (`upstream_503`), takes its
    parked run back after a restart, and is left parked when the bot shuts down while it waits
    for input."""

    def __init__(
        self, channel: Channel, shutting_down: Callable[[], bool], resuming: bool, **options: Any
    ) -> None:
        super().__init__(channel, **options)
        self.asking = 0
        self._shutting_down = shutting_down
        self._resuming = resuming

    @property
    def open(self) -> bool:
        """True between the run's start and its end."""
        return self.serial is not None and self.status in ("running", "input_required")

    async def start(self) -> Run:
        await super().start()
        if self.status == "input_required" or (self._resuming and self.status == "running"):
            # The same id found our run, parked waiting for input, or still held by our dead
            # session (we restarted within the server's stream_grace): write it from here.
            reply = await self.client.request({"type": "run_resume", "run_id": self.id})
            self.status = str(reply.get("status") or self.status)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, asyncio.CancelledError) and self.asking and self._shutting_down():
            # Park it: the request stays open and the restarted bot carries on from the answer.
            self._release()
            return False
        running = self.status in ("running", "input_required")
        if isinstance(exc, Exception) and not isinstance(exc, RunCancelled) and running:
            try:
                async with asyncio.timeout(FAIL_TIMEOUT):
                    await self.fail(*error_info(exc))
            except Exception as failing:
                log.info("could not end run %s failed: %s", self.key, failing)
        return await super().__aexit__(exc_type, exc, tb)
