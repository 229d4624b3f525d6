"""One channel as one client sees it, with no I/O: attachment, ordering, presence set, streams being read.

Rules:
- A channel is *wanted* from the first attach (or subscribe, or presence call) until it is detached
  or refused. A wanted channel is attached again after every reconnect, from its position.
- Durable messages pass the protocol's ordering rule (`agentchat_server.protocol.Sequencer`): each
  is delivered once, in serial order. A gap is never skipped: the channel asks to be attached again
  from its position (`receive` returns True) and holds newer serials until that attach is answered;
  the server's replay brings them in order.
- An `attached` frame ends a recovery. With `resumed: false` (continuity lost; the server also sends
  one unsolicited during a replay that hit removed history) the position moves to the frame's and
  readers are told (`Lost`); delivery continues from there.
- Presence: the first `presence_sync` page after an `attached` replaces the member set; later pages
  add to it and `presence` diffs change it.
- A live `room` frame (title or topic changed) is told as `RoomChanged`, and as a live frame.
- Streams being read are assembled (`agentchat.assembly`); a new attach marks them stale, its
  snapshots refresh the open ones, and one still stale when presence follows ended unseen: lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Literal

from agentchat.assembly import StreamAssembly
from agentchat.chatmodels import Room
from agentchat.errors import ContinuityLost, RequestError, request_error
from agentchat.events import (
    Attached,
    ChannelEvent,
    ClaimChanged,
    Delivered,
    Ended,
    Live,
    Lost,
    PresenceChanged,
    RoomChanged,
    RunChanged,
    StreamChanged,
)
from agentchat.models import LiveEvent, Member, Message, Position
from agentchat.roommodels import Policy
from agentchat.runview import RunBook
from agentchat_server.protocol import Code, Sequencer, Verdict

log = logging.getLogger("agentchat.channel")

Filter = Literal["all", "to_me"]
"""Which messages a reader gets: `all`, or `to_me` (addressed to it, to nobody, or sent by it)."""

ABSENT: Final = object()
"""`ChannelState.presence` when this connection is not (to be) in the channel's presence."""

MAX_READ_STREAMS = 1000  # overflow policy: beyond this many open streams, the oldest preview is dropped


class ChannelState:
    """The state of one channel for one client; frames in, events out through `emit`."""

    def __init__(self, name: str, emit: Callable[[ChannelEvent], None]) -> None:
        self.name = name
        self.wanted = False
        self.attached = False
        self.attaching = False
        self.error: RequestError | None = None
        self.sequencer = Sequencer()
        self.epoch: str | None = None
        self.members: dict[tuple[str, str], Member] = {}
        self.presence: Any = ABSENT
        self.streams: dict[str, StreamAssembly] = {}
        self.filter: Filter = "all"  # one per attachment: the server filters what it sends
        self.filter_chosen = False  # a subscription relies on `filter`
        self.policy: Policy | None = None
        self.book = RunBook(name)
        self._emit = emit
        self._fresh_sync = False

    def __repr__(self) -> str:
        return f"<ChannelState {self.name} position={self.position} attached={self.attached}>"

    @property
    def position(self) -> Position | None:
        """The last durable message delivered (None before the first attach)."""
        serial = self.sequencer.position
        return None if serial is None else Position(serial, self.epoch)

    # --- what the client decides -------------------------------------------------------------

    def want(self, after: int | None = None, filter: Filter | None = None) -> bool:
        """Mark the channel wanted (clearing a refusal); `after` starts a first attach from that serial.

        `filter` (`all` or `to_me`, from a subscription) is the attachment's, one per channel: once
        a subscription chose one, the other is a ValueError. Before that (attached for presence or
        feeds only) the filter may change; True when an attach under way must then be made again.
        """
        if filter not in (None, "all", "to_me"):
            raise ValueError(f"filter is 'all' or 'to_me', not {filter!r}")
        again = False
        if filter is not None:
            if filter != self.filter and self.filter_chosen:
                raise ValueError(
                    f"{self.name} is subscribed with filter {self.filter!r}: a channel has one filter "
                    "per client (detach first, or use another Client)"
                )
            again = filter != self.filter and (self.attached or self.attaching)
            if again:
                # Until the new attach answers, hold what the old one delivers: its replay from
                # the position brings the reader's share again, filtered.
                self.attached = False
                self.sequencer.recovering = True
            self.filter = filter
            self.filter_chosen = True
        self.wanted = True
        self.error = None
        if after is not None and self.sequencer.position is None and not self.attached:
            self.sequencer = Sequencer(after)
        return again

    def attach_frame(self) -> dict[str, Any]:
        """The `attach` frame for this channel now: from its position when it has one."""
        frame: dict[str, Any] = {"type": "attach", "channel": self.name, "presence": True}
        position = self.position
        if position is not None:
            frame["position"] = position.to_wire()
        if self.filter != "all":
            frame["filter"] = self.filter
        return frame

    def forget(self) -> None:
        """Detached by this client: no longer wanted, no presence, no position; views end quietly."""
        self.wanted = False
        self.attached = False
        self.attaching = False
        self.presence = ABSENT
        self.members.clear()
        self.streams.clear()
        self.book = RunBook(self.name)
        self.filter = "all"
        self.filter_chosen = False
        # A later attach starts from then, not from here: the gap is not this view's business.
        self.sequencer = Sequencer()
        self.epoch = None
        self._emit(Ended(self.name, StopAsyncIteration()))

    def refused(self, error: RequestError) -> None:
        """The attach was refused: the channel is no longer wanted; views end with `error`."""
        log.warning("attach %s refused: %s", self.name, error)
        self._end(error)

    def link_lost(self) -> None:
        """The connection ended: attachments belong to it."""
        self.attached = False
        self.attaching = False

    def stop(self, error: BaseException) -> None:
        """The client stopped: views end with `error`."""
        self.attached = False
        self.attaching = False
        self._emit(Ended(self.name, error))

    # --- frames from the server --------------------------------------------------------------

    def receive(self, frame: dict[str, Any]) -> bool:
        """Apply one frame of this channel; True when a gap means it must be attached again now."""
        kind = frame.get("type")
        if kind == "message":
            if frame.get("serial") is None:
                self._live(frame)
                return False
            return self._durable(frame)
        if kind == "attached":
            self._attached(frame)
        elif kind == "detached":
            if frame.get("code") is not None:
                error = request_error(frame)
                log.warning("server detached %s: %s", self.name, error)
                self._end(error)
        elif kind in ("presence", "presence_sync"):
            self._presence(frame)
            self._live(frame)
        elif kind in ("stream_open", "stream_snapshot", "stream_chunk"):
            self._stream(frame)
            self._live(frame)
        elif kind == "claim":
            claim = self.book.claim(frame)
            if claim is not None:
                self._emit(ClaimChanged(self.name, claim))
            self._live(frame)
        elif kind in ("run_status", "run_snapshot", "run_state"):
            run = self.book.state(frame) if kind == "run_state" else self.book.status(frame)
            if run is not None:
                self._emit(RunChanged(self.name, run))
            self._live(frame)
        elif kind == "room":
            self._emit(RoomChanged(self.name, Room.from_wire({**frame, "channel": self.name})))
            self._live(frame)
        else:
            self._live(frame)
        return False

    def _durable(self, frame: dict[str, Any]) -> bool:
        serial = frame["serial"]
        if not isinstance(serial, int):
            raise ValueError(f"message serial {serial!r} is not an integer")
        before = self.sequencer.position
        if self.filter != "all" and (before is None or serial > before) and not self.sequencer.recovering:
            # A filtered attachment skips the serials of others' messages: a jump is no gap.
            self.sequencer.position = before = serial - 1
        verdict = self.sequencer.offer(serial)
        if verdict is Verdict.GAP:
            log.error("gap in %s: serial %d after %s; attaching again from there", self.name, serial, before)
            return True
        if verdict is not Verdict.DELIVER:
            return False
        message = Message.from_wire(frame, self.name)
        self._emit(Delivered(self.name, message))
        run = self.book.record(message)
        if run is not None:
            self._emit(RunChanged(self.name, run))
        if message.stream_id is not None:
            assembly = self.streams.pop(message.stream_id, None)
            if assembly is not None:
                assembly.finish(message)
                self._emit(StreamChanged(self.name, assembly.update()))
        return False

    def _attached(self, frame: dict[str, Any]) -> None:
        position = Position.from_wire(frame.get("position"))
        if "policy" in frame:
            self.policy = Policy.from_wire(frame.get("policy"))
        resumed = frame.get("resumed", True) is not False
        self.sequencer.attached(position.serial, resumed)
        if not resumed or self.epoch is None:
            self.epoch = position.epoch
        self.attached = True
        self.attaching = False
        self._fresh_sync = True
        for assembly in self.streams.values():
            assembly.stale = True
        self._emit(Attached(self.name, position))
        if not resumed:
            reason = frame.get("reason") or {}
            code = reason.get("code") if isinstance(reason, dict) else None
            message = reason.get("message") if isinstance(reason, dict) else None
            lost = ContinuityLost(
                self.name,
                code if isinstance(code, int) else Code.HISTORY_LOST,
                str(message or "continuity lost"),
                position,
            )
            self._emit(Lost(self.name, lost))

    def _presence(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "presence_sync":
            if self._fresh_sync:
                self._fresh_sync = False
                self.members.clear()
                self._drop_stale_streams()
            for value in frame.get("members") or []:
                if isinstance(value, dict):
                    member = Member.from_wire(value)
                    self.members[(member.client_id, member.connection_id)] = member
        else:
            value = frame.get("member")
            member = Member.from_wire(value if isinstance(value, dict) else {})
            key = (member.client_id, member.connection_id)
            if frame.get("action") == "leave":
                self.members.pop(key, None)
            else:
                self.members[key] = member
        self._emit(PresenceChanged(self.name))

    def _stream(self, frame: dict[str, Any]) -> None:
        stream_id = str(frame.get("stream_id", ""))
        assembly = self.streams.get(stream_id)
        kind = frame.get("type")
        if kind == "stream_chunk":
            index = frame.get("i")
            if assembly is None or not isinstance(index, int) or not assembly.chunk(index, frame.get("d")):
                return  # unknown: its snapshot comes with the next attach
        else:
            if assembly is None:
                if len(self.streams) >= MAX_READ_STREAMS:
                    oldest = next(iter(self.streams))
                    self.streams.pop(oldest).lose()
                assembly = self.streams[stream_id] = StreamAssembly({**frame, "channel": self.name})
            if kind == "stream_snapshot":
                assembly.snapshot(frame)
            assembly.stale = False
        self._emit(StreamChanged(self.name, assembly.update()))

    def _drop_stale_streams(self) -> None:
        for stream_id in [s for s, a in self.streams.items() if a.stale]:
            assembly = self.streams.pop(stream_id)
            assembly.lose()
            self._emit(StreamChanged(self.name, assembly.update()))

    def _live(self, frame: dict[str, Any]) -> None:
        self._emit(Live(self.name, LiveEvent(str(frame.get("type")), self.name, frame)))

    def _end(self, error: RequestError) -> None:
        self.wanted = False
        self.attached = False
        self.attaching = False
        self.error = error
        self._emit(Ended(self.name, error))
