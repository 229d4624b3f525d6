"""The SDK's sans-I/O core: one client's session, its channels, requests in flight and streams it writes.

Rules:
- The asyncio layer (`agentchat.client.Client`) owns sockets, timers and futures. It gives this core
  every frame it reads (`receive`), says when a link is up (`link_up`, with a `send` callable that
  queues a frame on that link) or gone (`link_lost`, then `after_close` with the close code), and
  carries out the events the core emits (`agentchat.events`). The core never blocks or awaits.
- Requests carry a `ref` and get one reply. A *retained* request (publishes, history, presence,
  chunks: all idempotent) waits while no link is up and is sent again on the next link if its reply
  was lost; any other request fails with LinkGone when its link ends. At most `max_pending` caller
  requests wait at once: beyond that `request` raises TooManyPending (nothing queues without end).
- When a link comes up, in this order: each wanted channel's attach (from its position) and its
  presence entry, then every retained request not yet sent on this link. The server handles one
  connection's frames in order, so those requests find their channels attached. `Ready` follows
  once every one of those attaches is answered.
- A session that could not be resumed (the server restarted or died) does not lose the streams this
  client was writing: each is resumed with its resume key (`stream_resume`, sent before anything
  else), and the chunks the server no longer has are sent again from the index it asks for. A
  stream that cannot be resumed (ended meanwhile, or past the stream grace) fails with StreamLost.
- Presence entries of a lost session are entered again naming the old entry (`replaces`), so the
  client is never listed twice.
- After a close the protocol's `reconnect_policy` decides: `resume`; `renew`, which is a stop when
  there is no way to get a fresh token; or `stop`, which ends every request, channel and stream.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from agentchat.channel_state import ABSENT, ChannelState, Filter
from agentchat.errors import (
    AgentChatError,
    ConnectionClosed,
    LinkGone,
    StreamLost,
    TooManyPending,
    request_error,
)
from agentchat.events import (
    Event,
    Failed,
    Ready,
    RenewToken,
    Replied,
    RunCancelledEvent,
    Stopped,
    WriterAcked,
    WriterCancelled,
    WriterFailed,
)
from agentchat.writer_state import WriterState
from agentchat_server.protocol import Code, Reconnect, reconnect_policy

log = logging.getLogger("agentchat.client")

REPLY_TYPES = frozenset({"ack", "nack", "error", "attached", "detached"})

Purpose = Literal["call", "attach", "detach", "presence", "chunk", "resume"]


@dataclass(slots=True)
class Pending:
    """A request waiting for its reply: `call`s are a caller's, the rest the core's own."""

    frame: dict[str, Any]
    retain: bool
    purpose: Purpose
    channel: str | None = None
    sends: int = 0
    sent_on: int = 0


class ClientState:
    """The state of one client across its connections; frames in, events out through `emit`."""

    def __init__(
        self,
        emit: Callable[[Event], None],
        *,
        client_id: str | None = None,
        can_renew: bool = False,
        max_pending: int = 10_000,
    ) -> None:
        self.client_id = client_id
        self.kind: str | None = None
        self.session_id: str | None = None
        self.limits: dict[str, int] = {}
        self.resumed = False
        self.reconnects = 0
        self.ready = False
        self.closed: ConnectionClosed | None = None
        self.channels: dict[str, ChannelState] = {}
        self.writers: dict[str, WriterState] = {}
        self._emit = emit
        self._can_renew = can_renew
        self._max_pending = max_pending
        self._pending: dict[int, Pending] = {}
        self._calls = 0
        self._refs = itertools.count(1)
        self._resume: dict[str, str] | None = None
        self._send: Callable[[dict[str, Any]], None] | None = None
        self._links = 0
        self._restoring: set[str] = set()

    @property
    def linked(self) -> bool:
        """True while a link is up."""
        return self._send is not None

    def channel(self, name: str) -> ChannelState:
        """The state of channel `name` (made on first use; nothing is sent)."""
        state = self.channels.get(name)
        if state is None:
            state = self.channels[name] = ChannelState(name, self._emit)
        return state

    # --- the connection ----------------------------------------------------------------------

    def connect_frame(self, token: str) -> dict[str, Any]:
        """The `connect` frame for the next link: resuming the session when there is one."""
        frame: dict[str, Any] = {"type": "connect", "token": token}
        if self._resume is not None:
            frame["resume"] = dict(self._resume)
        return frame

    def link_up(self, connected: dict[str, Any], send: Callable[[dict[str, Any]], None]) -> bool:
        """A link answered `connect` with `connected`; frames go to `send` from now on.

        Returns False (and stops the client) when the token is for another client_id than expected.
        """
        if self.closed is not None:
            return False
        client_id = str(connected.get("client_id"))
        if self.client_id is not None and client_id != self.client_id:
            self.stop(ConnectionClosed(None, f"token is for {client_id!r}, not {self.client_id!r}"))
            return False
        resumed = bool(connected.get("resumed"))
        session_lost = self._resume is not None and not resumed
        lost_session = self.session_id if session_lost else None
        self.client_id = client_id
        self.kind = str(connected.get("kind"))
        self.session_id = str(connected.get("session_id"))
        self.limits = dict(connected.get("limits") or {})
        self.resumed = resumed
        self._resume = {"session_id": str(connected["session_id"]), "key": str(connected["key"])}
        self._links += 1
        self.reconnects = self._links - 1
        self._send = send
        if session_lost:
            # A new session: take our open streams back before anything else reaches the server.
            for writer in list(self.writers.values()):
                if writer.resume_key is None or writer.over:
                    lost = "the session that wrote it is gone and it has no resume key"
                    self._fail_writer(writer, StreamLost(f"stream {writer.stream_id}: {lost}"))
                    continue
                resume = {"type": "stream_resume", "stream_id": writer.stream_id, "key": writer.resume_key}
                self._internal(resume, "resume", writer.channel)
        self._restoring.clear()
        for channel in self.channels.values():
            if channel.wanted:
                self._restoring.add(channel.name)
                self._attach(channel)
                if channel.presence is not ABSENT:
                    enter = {"type": "presence", "channel": channel.name, "action": "enter"}
                    if lost_session is not None:
                        enter["replaces"] = lost_session  # our entry of the lost session leaves now
                    self._internal({**enter, "data": channel.presence}, "presence", channel.name)
        for ref, pending in list(self._pending.items()):
            if pending.retain and pending.sent_on != self._links:
                self._transmit(ref, pending)
        self._check_ready()
        return True

    def link_lost(self) -> None:
        """The link ended: requests that are not retained fail with LinkGone; attachments end."""
        self._send = None
        self.ready = False
        self._restoring.clear()
        for channel in self.channels.values():
            channel.link_lost()
        for ref, pending in list(self._pending.items()):
            if not pending.retain:
                del self._pending[ref]
                if pending.purpose == "call":
                    self._calls -= 1
                    self._emit(Failed(ref, LinkGone()))

    def after_close(self, code: int | None, reason: str) -> Reconnect:
        """What to do after a close with `code` (None: dropped); on `stop` the client is stopped."""
        action = reconnect_policy(code)
        if action == "renew" and not self._can_renew:
            action = "stop"
        if action == "stop":
            self.stop(ConnectionClosed(code, reason))
        return action

    def stop(self, error: ConnectionClosed) -> None:
        """End the client for good: every request, channel and written stream ends with `error`."""
        if self.closed is not None:
            return
        self.closed = error
        self._send = None
        self.ready = False
        pending, self._pending, self._calls = self._pending, {}, 0
        for ref, request in pending.items():
            if request.purpose == "call":
                self._emit(Failed(ref, error))
        for writer in list(self.writers.values()):
            self._fail_writer(writer, StreamLost(f"stream {writer.stream_id}: the client stopped"))
        for channel in self.channels.values():
            channel.stop(error)
        self._emit(Stopped(error))

    # --- what the caller asks ----------------------------------------------------------------

    def request(self, frame: dict[str, Any], *, retain: bool = True) -> int:
        """Send `frame` with a fresh ref (now, or on the next link if retained); return the ref.

        The reply comes as `Replied` or `Failed` with that ref. Raises ConnectionClosed once stopped,
        TooManyPending past the bound, LinkGone for an unretained request while no link is up.
        """
        if self.closed is not None:
            raise self.closed
        if self._calls >= self._max_pending:
            # Overflow policy: refuse new work rather than queue without end during an outage.
            raise TooManyPending(f"{self._calls} requests are waiting; retry later")
        if not retain and not self.linked:
            raise LinkGone("not connected")
        self._calls += 1
        return self._internal(frame, "call", None, retain=retain)

    def abandon(self, ref: int) -> None:
        """Forget a caller's request: it is not sent again, and its reply (if any) is ignored."""
        pending = self._pending.pop(ref, None)
        if pending is not None and pending.purpose == "call":
            self._calls -= 1

    def want(self, name: str, after: int | None = None, filter: Filter | None = None) -> ChannelState:
        """Attach channel `name` (now if a link is up, else on the next) and keep it attached
        (with `filter`, see ChannelState.want)."""
        channel = self.channel(name)
        if self.closed is None:
            again = channel.want(after, filter)
            if self.linked and (again or (not channel.attached and not channel.attaching)):
                self._attach(channel)
        return channel

    def forget(self, name: str) -> bool:
        """Stop wanting channel `name`; True when it was attached (the caller sends `detach`)."""
        channel = self.channel(name)
        attached = channel.attached
        channel.forget()
        return attached

    def set_presence(self, name: str, data: Any) -> None:
        """Remember this connection's presence data in `name`, entered again after every re-attach."""
        self.channel(name).presence = data

    def clear_presence(self, name: str) -> None:
        """This connection left presence in `name`: it is no longer entered again."""
        self.channel(name).presence = ABSENT

    def open_writer(
        self, channel: str, stream_id: str, resume_key: str | None = None, run_id: str | None = None
    ) -> WriterState:
        """Track stream `stream_id`, which this client opened in `channel` and writes; `resume_key`
        (from the server's ack) lets it continue the stream after losing its server; `run_id` when
        it is a lane of that run."""
        writer = self.writers[stream_id] = WriterState(channel, stream_id, resume_key, run_id)
        return writer

    def append(self, stream_id: str, pieces: list[Any]) -> None:
        """Send `pieces` as the next chunks of stream `stream_id` (retained until acked)."""
        writer = self.writers.get(stream_id)
        if writer is None or writer.over:
            return
        for index, piece in writer.add(pieces):
            self._chunk(writer, index, piece)

    def close_writer(self, stream_id: str) -> None:
        """The stream is over for its writer: stop tracking it and drop its unsent chunks."""
        self.writers.pop(stream_id, None)
        for ref, pending in list(self._pending.items()):
            if pending.purpose == "chunk" and pending.frame.get("stream_id") == stream_id:
                del self._pending[ref]

    # --- frames from the server --------------------------------------------------------------

    def receive(self, frame: dict[str, Any]) -> None:
        """Apply one frame from the server."""
        kind = frame.get("type")
        ref = frame.get("ref")
        if kind in REPLY_TYPES and isinstance(ref, int):
            pending = self._pending.pop(ref, None)
            if kind in ("attached", "detached"):
                # The channel takes its new state first: whoever the reply wakes sees it.
                self._to_channel(frame)
            if pending is not None:
                self._settle(ref, pending, frame)
            return
        if kind == "error":
            log.warning("server error %s: %s", frame.get("code"), frame.get("message"))
            return
        if kind == "auth_renew":
            expires = frame.get("expires_at")
            self._emit(RenewToken(expires if isinstance(expires, int) else None))
            return
        if kind == "stream_cancelled":
            writer = self.writers.get(str(frame.get("stream_id")))
            by = frame.get("by")
            if writer is not None and writer.cancel(by if isinstance(by, str) else None):
                self._emit(WriterCancelled(writer.channel, writer.stream_id, writer.cancelled_by))
        if kind == "run_cancelled":
            # The server ended the run's lanes with it: their writers stop as if each was cancelled.
            by = frame.get("by")
            who = by if isinstance(by, str) else None
            for writer in [w for w in self.writers.values() if w.run_id == frame.get("run_id")]:
                if writer.cancel(who):
                    self._emit(WriterCancelled(writer.channel, writer.stream_id, writer.cancelled_by))
            self._emit(RunCancelledEvent(str(frame.get("channel")), str(frame.get("run_id")), who))
        self._to_channel(frame)

    def _to_channel(self, frame: dict[str, Any]) -> None:
        name = frame.get("channel")
        channel = self.channels.get(name) if isinstance(name, str) else None
        if channel is None or not channel.wanted:
            return
        if channel.receive(frame) and self.linked and not channel.attaching:
            self._attach(channel)

    def _settle(self, ref: int, pending: Pending, frame: dict[str, Any]) -> None:
        error = None
        if frame.get("type") in ("nack", "error"):
            error = request_error(frame)
            # A reply to a resend: an "exists" may be our own first attempt.
            error.resent = pending.sends > 1
        if pending.purpose == "call":
            self._calls -= 1
            self._emit(Replied(ref, frame) if error is None else Failed(ref, error))
        elif pending.purpose == "attach":
            name = pending.channel or ""
            channel = self.channels.get(name)
            if channel is not None and error is not None and channel.wanted:
                channel.refused(error)
            elif channel is not None and error is None and not channel.wanted and self.linked:
                # Detached while the attach was on its way: undo it on the server too.
                self._internal({"type": "detach", "channel": name}, "detach", name)
            self._restoring.discard(name)
            self._check_ready()
        elif pending.purpose == "presence" and error is not None:
            log.warning("re-entering presence in %s refused: %s", pending.channel, error)
        elif pending.purpose == "chunk":
            self._chunk_settled(pending, error)
        elif pending.purpose == "resume":
            self._resume_settled(pending, frame, error)

    def _resume_settled(self, pending: Pending, frame: dict[str, Any], error: AgentChatError | None) -> None:
        writer = self.writers.get(str(pending.frame.get("stream_id")))
        if writer is None:
            return
        if error is not None:
            self._fail_writer(writer, StreamLost(f"stream {writer.stream_id} could not be resumed: {error}"))
            return
        expected = frame.get("next")
        if isinstance(expected, int):
            for index, piece in writer.resend_from(expected):
                self._chunk(writer, index, piece)

    def _chunk_settled(self, pending: Pending, error: AgentChatError | None) -> None:
        writer = self.writers.get(str(pending.frame.get("stream_id")))
        if writer is None:
            return
        if error is None:
            if writer.confirm(int(pending.frame["i"])):
                self._emit(WriterAcked(writer.channel, writer.stream_id))
            return
        code = getattr(error, "code", None)
        details: dict[str, Any] = getattr(error, "details", {})
        expected = details.get("next")
        if code == Code.CHUNK_OUT_OF_ORDER and isinstance(expected, int):
            if expected > 0 and writer.confirm(expected - 1):
                self._emit(WriterAcked(writer.channel, writer.stream_id))
            for index, piece in writer.resend_from(expected):
                self._chunk(writer, index, piece)
        elif code in (Code.STREAM_NOT_FOUND, Code.NOT_STREAM_WRITER):
            if not writer.cancelled:
                lost = StreamLost(f"stream {writer.stream_id} ended by the server ({code})")
                self._fail_writer(writer, lost)
        else:
            self._fail_writer(writer, error)

    # --- sending -----------------------------------------------------------------------------

    def _attach(self, channel: ChannelState) -> None:
        channel.attaching = True
        self._internal(channel.attach_frame(), "attach", channel.name)

    def _chunk(self, writer: WriterState, index: int, piece: Any) -> None:
        frame = {"type": "stream_append", "stream_id": writer.stream_id, "i": index, "d": piece}
        self._internal(frame, "chunk", writer.channel, retain=True)

    def _internal(
        self, frame: dict[str, Any], purpose: Purpose, channel: str | None, *, retain: bool = False
    ) -> int:
        ref = next(self._refs)
        pending = self._pending[ref] = Pending({**frame, "ref": ref}, retain, purpose, channel)
        if self._send is not None:
            self._transmit(ref, pending)
        return ref

    def _transmit(self, ref: int, pending: Pending) -> None:
        assert self._send is not None
        pending.sent_on = self._links
        pending.sends += 1
        self._send(pending.frame)

    def _check_ready(self) -> None:
        if not self.ready and self.linked and not self._restoring:
            self.ready = True
            self._emit(Ready(self.resumed))

    def _fail_writer(self, writer: WriterState, error: AgentChatError) -> None:
        if writer.fail(error):
            self._emit(WriterFailed(writer.channel, writer.stream_id, error))
