"""The writer side of a run: what one agent does for one request (lanes, tool results, state, status)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal

from agentchat.errors import AgentChatError, RequestError, RunCancelled
from agentchat.events import ChannelEvent, RunCancelledEvent
from agentchat.ports import ChannelView
from agentchat.stream import Stream, error_info, quiet, shielded
from agentchat_server.protocol import Code

log = logging.getLogger("agentchat.runs")

END_ON_ERROR_TIMEOUT = 10.0
Ending = Literal["completed", "failed", "cancelled"]


class Run:
    """One run this client writes in a channel; `async with channel.run(reply_to=…) as run:`.

    The block starts it (`run.id` is its id) and ends it: normally `completed`; with an exception
    `failed`, carrying the exception's message (the exception propagates); when the task is
    cancelled, `cancelled`. Lanes are token streams of the run: `async with run.text() as lane`,
    `run.reasoning()`, `run.tool_call(id, name)` (the arguments as JSON text). When a member
    cancels the run, `cancelled` turns true, `on_cancel` callbacks run, the lanes stop
    (StreamCancelled, swallowed by their blocks) and the run's next call raises RunCancelled,
    which the run's block swallows: the server has ended the run already.
    """

    def __init__(
        self,
        channel: ChannelView,
        *,
        reply_to: int | None = None,
        claim: int | None = None,
        to: Sequence[str] | None = None,
        parent: str | None = None,
        id: str | None = None,
        run_id: str | None = None,
    ) -> None:
        self.channel = channel
        self.client = channel.client
        self.reply_to = reply_to
        self.claim = claim
        self.to = list(to) if to is not None else None
        self.parent = parent
        self.key = id or uuid.uuid4().hex  # the start record's id: a resent start finds the same run
        self._id = run_id
        self.serial: int | None = None
        self.status: str | None = "running" if run_id is not None else None
        self.pending = 0
        self.cancelled_by: str | None = None
        self._cancelled = asyncio.Event()
        self._on_cancel: list[Callable[[], None]] = []
        self._lanes: list[Stream] = []
        self._unlisten: Callable[[], None] | None = None
        if run_id is not None:
            self._unlisten = channel.listen(self._on_event)

    def __repr__(self) -> str:
        return f"<Run {self._id} {self.status}>"

    @property
    def id(self) -> str:
        """The run's id (its AG-UI runId); known once it started."""
        if self._id is None:
            raise AgentChatError("the run has not started: use `async with channel.run(...)` or start()")
        return self._id

    @property
    def cancelled(self) -> bool:
        """True once a member cancelled the run (stop working on it)."""
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Return when a member cancels the run."""
        await self._cancelled.wait()

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call `callback` (once, synchronously) when a member cancels the run."""
        self._on_cancel.append(callback)

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> Run:
        """Start the run once its start record is committed (ClaimLost, ClaimHeld, NotAddressed or
        LoopBrake when the room refuses it)."""
        if self._id is not None:
            return self
        frame: dict[str, Any] = {"type": "run_start", "channel": self.channel.name, "id": self.key}
        for key in ("reply_to", "claim", "to", "parent"):
            value = getattr(self, key)
            if value is not None:
                frame[key] = value
        self._unlisten = self.channel.listen(self._on_event)
        try:
            reply = await shielded(self.client.submit(frame), self._end_orphan)
        except AgentChatError:
            self._release()
            raise
        self._id = str(reply["run_id"])
        serial = reply.get("serial")
        self.serial = serial if isinstance(serial, int) else None
        self.status = str(reply.get("status") or "running")
        return self

    async def end(
        self, status: Literal["completed", "cancelled"] = "completed", *, result: Any = None
    ) -> None:
        """End the run: `completed` (with an optional JSON `result`) or `cancelled` (by its writer);
        for `failed` use `fail`. Its open lanes end first with the matching status."""
        await self._end(status, result=result)

    async def fail(self, message: str, code: str | None = None) -> None:
        """End the run `failed` with `error` {message, code}: a failure to show, never a Stop."""
        await self._end("failed", error=error_info(message, code))

    async def __aenter__(self) -> Run:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if isinstance(exc, RunCancelled) and exc.run_id == self._id:
            self._release()
            return True
        if self.status not in ("running", "input_required") or self._id is None:
            self._release()
            return False
        if exc is None:
            await self.end()
            return False
        status: Ending = "cancelled" if isinstance(exc, asyncio.CancelledError) else "failed"
        with contextlib.suppress(Exception, asyncio.CancelledError):
            async with asyncio.timeout(END_ON_ERROR_TIMEOUT):
                if status == "failed":
                    await self.fail(str(exc) or type(exc).__name__, type(exc).__name__)
                else:
                    await self.end("cancelled")
        self._release()
        return False

    # --- what the run writes ------------------------------------------------------------------

    def text(self, **options: Any) -> Stream:
        """A text lane (the answer, streamed): `async with run.text() as lane: await lane.append(…)`."""
        return self._lane("text", None, options)

    def reasoning(self, **options: Any) -> Stream:
        """A reasoning lane (the model's thinking, streamed)."""
        return self._lane("reasoning", None, options)

    def tool_call(self, call_id: str, name: str, **options: Any) -> Stream:
        """A tool call's lane: append its arguments as JSON text; `tool_result` gives its result."""
        return self._lane("tool_call", {"id": call_id, "name": name}, options)

    async def tool_result(self, call_id: str, data: Any) -> int:
        """Publish the result of tool call `call_id` (any JSON); its serial."""
        return await self._publish(data, "tool_result", {"id": call_id})

    async def publish_text(self, text: str, *, lane: Literal["text", "reasoning"] = "text") -> int:
        """Publish a whole piece of text (or reasoning) at once instead of streaming it; its serial."""
        return await self._publish(text, lane, None)

    async def state(self, *, snapshot: Any = None, delta: Sequence[dict[str, Any]] | None = None) -> None:
        """Share the run's state with the room: a whole `snapshot`, or a `delta` of RFC 6902 JSON
        Patch operations on the last snapshot (a 41303 RequestError asks for a snapshot)."""
        if (snapshot is None) == (delta is None):
            raise ValueError("give either snapshot or delta")
        self._check()
        frame: dict[str, Any] = {"type": "run_state", "run_id": self.id}
        if delta is not None:
            frame["delta"] = list(delta)
        else:
            frame["snapshot"] = snapshot
        # Live-only and not idempotent (a delta applied twice is wrong): never resent.
        await self.client.request(frame, retain=False)

    def child(
        self, *, to: Sequence[str] | None = None, reply_to: int | None = None, id: str | None = None
    ) -> Run:
        """A sub-run of this run (for another agent's part, or this one's): `async with run.child()`."""
        return Run(self.channel, parent=self.id, to=to, reply_to=reply_to, id=id)

    # --- internals -------------------------------------------------------------------------

    def _lane(self, lane: str, tool_call: dict[str, str] | None, options: dict[str, Any]) -> Stream:
        self._check()
        stream = Stream(self.channel, run_id=self.id, lane=lane, tool_call=tool_call, **options)
        self._lanes = [s for s in self._lanes if s.status in (None, "open")] + [stream]
        return stream

    async def _publish(self, data: Any, lane: str, tool_call: dict[str, str] | None) -> int:
        self._check()
        message: dict[str, Any] = {"data": data, "id": uuid.uuid4().hex, "run_id": self.id, "lane": lane}
        if tool_call is not None:
            message["tool_call"] = tool_call
        frame = {"type": "publish", "channel": self.channel.name, "messages": [message]}
        reply = await self.client.request(frame)
        return int((reply.get("serials") or [0])[0])

    async def _end(self, status: str, *, result: Any = None, error: dict[str, str] | None = None) -> None:
        self._check()
        # Lanes still open end first, from here: their appends not yet sent are part of them.
        for lane in [s for s in self._lanes if s.status == "open"]:
            with contextlib.suppress(AgentChatError):
                if error is not None:
                    await lane.fail(error["message"], error.get("code"))
                else:
                    await lane.end(status="complete" if status == "completed" else "cancelled")
        self._lanes.clear()
        frame: dict[str, Any] = {"type": "run_end", "run_id": self.id, "status": status}
        if result is not None:
            frame["result"] = result
        if error is not None:
            frame["error"] = error
        try:
            await self.client.request(frame)
        except RequestError as exc:
            gone = exc.code in (Code.RUN_NOT_FOUND, Code.NOT_RUN_WRITER)
            if not (exc.resent and gone):  # otherwise: the first end was applied, its ack lost
                raise
        self.status = status
        self._release()

    def _end_orphan(self, reply: dict[str, Any]) -> None:
        # Started after its starter was cancelled: end it cancelled, as the task was.
        self._release()
        run_id = reply.get("run_id")
        if isinstance(run_id, str):
            end = {"type": "run_end", "run_id": run_id, "status": "cancelled"}
            self.client.submit(end).add_done_callback(quiet)

    def _check(self) -> None:
        if self.cancelled:
            raise RunCancelled(self.id, self.cancelled_by)
        if self._id is not None and self.status not in ("running", "input_required"):
            raise AgentChatError(f"run {self._id} is over ({self.status})")

    def _on_event(self, event: ChannelEvent) -> None:
        if not isinstance(event, RunCancelledEvent) or event.run_id != self._id or self.cancelled:
            return
        self.cancelled_by = event.by
        self.status = "cancelled"
        self._cancelled.set()
        for callback in self._on_cancel:
            try:
                callback()
            except Exception:
                log.exception("on_cancel callback failed")

    def _release(self) -> None:
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None
