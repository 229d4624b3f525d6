"""Runs: what one agent does for one request, with text, reasoning and tool-call lanes and one status.

A run costs the Store one write to start (its start record and its row), one per lane or tool
result (their final messages), one per input request and answer, and one to end (its end record
and row); lane chunks and the run's shared state stay live. The run's row is the truth of its
status and writer on every node; this node keeps the runs its sessions write (`LiveRun`) and
renews their leases with its streams'. A run whose writer's session ends, or whose node dies (its
lease lapses; any node sees it), loses its writer: it is parked while it waits for input, else
ended `aborted`, exactly once (the writer is compare-and-set in the commit). What readers are
shown of runs is `broker.run_views`.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import RoomRules, Writer, refused, wire_fields
from agentchat_server.broker.run_records import appended, lost_writer, run_record
from agentchat_server.broker.sessionindex import SessionIndex
from agentchat_server.broker.streams import Streams
from agentchat_server.core.runs import ENDED, RunRecord
from agentchat_server.protocol import (
    Code,
    ProtocolError,
    RunCancelFrame,
    RunEndFrame,
    RunResumeFrame,
    RunStartFrame,
    RunStateFrame,
    StreamOpenFrame,
    encode_value,
    encoded_size,
)
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import (
    Append,
    AppendResult,
    Outcome,
    RunChange,
    RunEnd,
    RunResult,
    RunStart,
    Store,
)

log = logging.getLogger(__name__)

PublishLive = Callable[..., None]
WriterConnection = Callable[[str], Connection | None]
Spend = Callable[[Connection], None]
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
_LANE_END = {"completed": "complete", "failed": "failed", "cancelled": "cancelled"}


@dataclass(slots=True)
class LiveRun:
    """A run one of this node's sessions writes."""

    run_id: str
    channel: str
    session: str
    client_id: str
    kind: str
    display_name: str | None
    delta_bytes: int = 0  # state deltas sent since the last snapshot
    # The state shared so far (last snapshot, deltas since): readers attaching on this node get it
    # even when no reader watched the channel here while it was sent.
    state: Any = None
    deltas: list[Any] = field(default_factory=list)


class Runs:
    """The runs this node's sessions write, and each channel's view of its active runs."""

    def __init__(
        self,
        settings: Settings,
        node: str,
        store: Store,
        committer: Committer,
        rules: RoomRules,
        streams: Streams,
        publish_live: PublishLive,
        writer_connection: WriterConnection,
        spend: Spend,
    ) -> None:
        self.settings = settings
        self.node = node
        self.lease_ms = streams.lease_ms
        self.store = store
        self.committer = committer
        self.rules = rules
        self.streams = streams
        self.publish_live = publish_live
        self.writer_connection = writer_connection
        self.spend = spend
        self._live: dict[str, LiveRun] = {}
        self._by_session = SessionIndex()

    def __len__(self) -> int:
        return len(self._live)

    # --- the writer's side --------------------------------------------------------------------

    async def start(self, conn: Connection, frame: RunStartFrame) -> dict[str, Any]:
        """Start a run (a turn, unless it is a sub-run): commit its start record and row."""
        identity = conn.identity
        identity.require(frame.channel, "stream")
        session = conn.session_id
        assert session is not None
        limit = self.settings.max_runs_per_connection
        if self._by_session.count(session) >= limit:
            raise ProtocolError(Code.TOO_MANY_RUNS, f"at most {limit} runs per connection")
        self.spend(conn)
        requester = None
        if frame.reply_to is not None:
            target = await self.store.message_at(frame.channel, frame.reply_to)
            requester = None if target is None else target.client_id
        run_id = "r_" + secrets.token_urlsafe(12)
        run = RunRecord(
            run_id,
            frame.channel,
            identity.client_id,
            identity.kind,
            0,
            now_ms(),
            writer=session,
            parent_id=frame.parent,
            reply_to=frame.reply_to,
            requester=requester,
            claim_token=frame.claim,
            display_name=identity.display_name,
            node=self.node,
            lease_until=now_ms() + self.lease_ms,
        )
        message = run_record(
            identity,
            run_id,
            "running",
            message_id=frame.id or f"run:{run_id}",
            display_name=identity.display_name,
            reply_to=frame.reply_to,
            to=frame.to,
            parent=frame.parent,
        )
        write = self.rules.write(
            identity,
            frame.channel,
            turn=frame.parent is None,
            replies=[frame.reply_to],
            token=frame.claim,
            effect=RunStart(run, self.settings.max_runs_per_channel),
        )
        result = self.rules.settle(
            appended(await self.committer.submit(Append(frame.channel, [message], room=write)))
        )
        started = result.run
        if started is None:
            raise ProtocolError(Code.UNAVAILABLE, "the run's record is gone (retention)")
        if started.active and started.writer == session:
            self._adopt(started, identity.display_name)
        return {"run_id": started.run_id, "serial": started.serial, "status": started.status}

    async def open_lane(self, conn: Connection, frame: StreamOpenFrame) -> dict[str, Any]:
        """Open a stream as a lane of one's run (text, reasoning or a tool call's arguments);
        returns the ack fields (`stream_id`: a lane is resumed with its run, not on its own)."""
        assert frame.run_id is not None
        live = await self._written(conn, frame.run_id)
        if live.channel != frame.channel:
            raise ProtocolError(Code.INVALID_VALUE, "a run's lanes are in the run's channel")
        room = wire_fields(
            to=frame.to,
            run_id=frame.run_id,
            lane=frame.lane or "text",
            tool_call=None if frame.tool_call is None else frame.tool_call.model_dump(exclude_none=True),
        )
        return await self.streams.open(
            conn,
            frame.channel,
            event_name=frame.name,
            message_id=frame.id,
            reply_to=frame.reply_to,
            meta=frame.meta,
            fmt=frame.format,
            thread=frame.thread,
            room=room,
        )

    async def end(self, conn: Connection, frame: RunEndFrame) -> dict[str, Any]:
        """End one's run: its open lanes end first, then its end record; a lost claim ends it aborted."""
        live = await self._written(conn, frame.run_id)
        error = None if frame.error is None else frame.error.model_dump(exclude_none=True)
        if frame.result is not None:
            limit = self.settings.max_message_bytes
            if encoded_size(frame.result, encode_value(frame.result), limit) > limit:
                raise ProtocolError(
                    Code.MESSAGE_TOO_LARGE, f"a run's result is at most {limit} bytes", limit=limit
                )
        self.streams.end_lanes(live.run_id, _LANE_END[frame.status], error=error)
        self._forget(live.run_id)
        message = run_record(
            live,
            live.run_id,
            frame.status,
            message_id=f"run:{live.run_id}:end",
            display_name=live.display_name,
            error=error,
            result=frame.result,
        )
        effect = RunEnd(live.run_id, frame.status, error, None, live.session)
        write = self.rules.write(
            live, live.channel, turn=False, run_id=live.run_id, session=live.session, soft=True, effect=effect
        )
        result = self.rules.settle(
            appended(await self.committer.submit(Append(live.channel, [message], room=write)))
        )
        ended = result.run
        if ended is not None and ended.status != frame.status and ended.error is not None:
            # The claim it answered was lost: the run ended aborted, and says why.
            code = str(ended.error.get("code", ""))
            raise ProtocolError(
                int(code) if code.isdigit() else Code.CLAIM_LOST,
                str(ended.error.get("message")),
                serial=result.serials[0],
            )
        return {"serial": result.serials[0]}

    def state(self, conn: Connection, frame: RunStateFrame) -> None:
        """Share one's run's state (a snapshot, or JSON Patch operations since the last snapshot)."""
        live = self._live.get(frame.run_id)
        if live is None or live.session != conn.session_id:
            raise ProtocolError(Code.NOT_RUN_WRITER, "not a run this connection writes")
        self.spend(conn)
        limit = self.settings.max_message_bytes
        value = frame.snapshot if frame.delta is None else frame.delta
        size = encoded_size(value, encode_value(value), limit)
        if frame.delta is None:
            if size > limit:
                raise ProtocolError(
                    Code.RUN_STATE_TOO_LARGE, f"a run's state is at most {limit} bytes", limit=limit
                )
            live.delta_bytes = 0
            live.state, live.deltas = frame.snapshot, []
            self.publish_live(
                live.channel, frames.run_state(live.channel, live.run_id, snapshot=frame.snapshot)
            )
            return
        if live.delta_bytes + size > limit:
            raise ProtocolError(
                Code.RUN_STATE_TOO_LARGE, "the deltas since the last snapshot are too large: send a snapshot"
            )
        live.delta_bytes += size
        live.deltas.extend(frame.delta)
        self.publish_live(live.channel, frames.run_state(live.channel, live.run_id, delta=frame.delta))

    async def cancel(self, conn: Connection, frame: RunCancelFrame) -> dict[str, Any]:
        """Cancel a run (its writer, or a member with `cancel`); its writer is told who did."""
        run = await self.store.run(frame.run_id)
        if run is None or not run.active:
            raise ProtocolError(Code.RUN_NOT_FOUND, "run not found or ended")
        if run.writer is None or run.writer != conn.session_id:
            conn.identity.require(run.channel, "cancel")
        by = conn.identity.client_id
        live = self._live.get(run.run_id)
        if live is not None:
            self.streams.end_lanes(run.run_id, "cancelled", cancelled_by=by)
            self._forget(run.run_id)
        message = run_record(
            run,
            run.run_id,
            "cancelled",
            message_id=f"run:{run.run_id}:cancel:{secrets.token_hex(6)}",
            display_name=run.display_name,
            cancelled_by=by,
        )
        effect = RunEnd(run.run_id, "cancelled", None, by, None)
        write = self.rules.write(run, run.channel, turn=False, run_id=run.run_id, soft=True, effect=effect)
        result = self.rules.settle(
            appended(await self.committer.submit(Append(run.channel, [message], room=write)))
        )
        writer = None if run.writer is None else self.writer_connection(run.writer)
        if writer is not None:
            writer.send(frames.run_cancelled(run.channel, run.run_id, by))
        return {"serial": result.serials[0]}

    async def resume(self, conn: Connection, frame: RunResumeFrame) -> dict[str, Any]:
        """Take one's run over on this connection (after a restart, or to act on an answer)."""
        run = await self.store.run(frame.run_id)
        if run is None or not run.active:
            raise ProtocolError(Code.RUN_NOT_FOUND, "run not found or ended")
        conn.identity.require(run.channel, "stream")
        session = conn.session_id
        assert session is not None
        change = await self.committer.submit(
            RunChange(run.channel, run.run_id, conn.client_id, session, self.node, now_ms() + self.lease_ms)
        )
        assert isinstance(change, RunResult)
        if change.refusal is not None:
            raise refused(change.refusal)
        taken = change.run
        assert taken is not None
        previous = self._live.get(taken.run_id)
        if previous is not None and previous.session != session:
            self.streams.end_lanes(taken.run_id, "aborted")
            self._forget(taken.run_id)
        self._adopt(taken, conn.identity.display_name)
        # The state readers hold was built by the previous writer: a snapshot comes first.
        self._live[taken.run_id].delta_bytes = self.settings.max_message_bytes
        self.publish_live(taken.channel, frames.run_status(taken.header()))
        return {
            "run_id": taken.run_id,
            "status": taken.status,
            "pending": taken.pending,
            "serial": taken.serial,
        }

    # --- writers lost -------------------------------------------------------------------------

    def writer_lost(self, session_id: str) -> list[asyncio.Future[Outcome]]:
        """The session's runs: parked when they wait for input, else ended aborted (their lanes first)."""
        pending = []
        for run_id in self._by_session.of(session_id):
            live = self._live[run_id]
            self.streams.end_lanes(run_id, "aborted")
            self._forget(run_id)
            pending.append(self._lose(live, live.channel, live.run_id, session_id, live.display_name))
        return pending

    def _lose(
        self, writer: Writer, channel: str, run_id: str, session: str, display_name: str | None
    ) -> asyncio.Future[Outcome]:
        message, write = lost_writer(self.rules, writer, channel, run_id, session, display_name)
        future = self.committer.submit(Append(channel, [message], room=write))
        future.add_done_callback(self._announce)
        return future

    def _announce(self, future: asyncio.Future[Outcome]) -> None:
        if future.cancelled():
            return
        if future.exception() is not None:
            log.error("could not record a lost run writer: %s", future.exception())
            return
        result = future.result()
        if isinstance(result, AppendResult):
            self.rules.announce(result)

    async def lose_lapsed(self) -> None:
        """Runs whose lease lapsed (their node died, or a previous run of this server): their
        writer is lost (parked if they wait for input, else aborted). Every node may see the
        same run; the commit's compare-and-set on its writer lets one of them through."""
        for run in await self.store.lapsed_runs(now_ms()):
            assert run.writer is not None
            if run.run_id in self._live:
                continue  # written here: this node's renewal is only late
            try:
                await self._lose(run, run.channel, run.run_id, run.writer, run.display_name)
                log.info("run %s: its node is gone, so is its writer", run.run_id)
            except ProtocolError:
                pass  # another node got there first
            except Exception:
                log.exception("could not end orphan run %s", run.run_id)

    async def abort_all(self) -> None:
        """Shutting down: every run written here loses its writer (parked or aborted)."""
        pending = []
        for session_id in self._by_session.sessions():
            pending.extend(self.writer_lost(session_id))
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def written_state(self, run_id: str) -> tuple[Any, list[Any]] | None:
        """The state a run written here shared so far (snapshot, deltas since), None if none."""
        live = self._live.get(run_id)
        if live is None or (live.state is None and not live.deltas):
            return None
        return live.state, list(live.deltas)

    def on_status(self, header: dict[str, Any]) -> None:
        """A run's status passed the bus: let go of a run written here that ended or was taken
        over elsewhere (its lanes end; a cancel is told to its writer)."""
        live = self._live.get(header["run_id"])
        if live is None or (header["status"] not in ENDED and header["writer"] == live.session):
            return
        by = header.get("cancelled_by")
        if header["status"] == "cancelled" and isinstance(by, str):
            self.streams.end_lanes(live.run_id, "cancelled", cancelled_by=by)
            writer = self.writer_connection(live.session)
            if writer is not None:
                writer.send(frames.run_cancelled(live.channel, live.run_id, by))
        else:
            self.streams.end_lanes(live.run_id, "aborted")
        self._forget(live.run_id)

    # --- bookkeeping --------------------------------------------------------------------------

    async def _written(self, conn: Connection, run_id: str) -> LiveRun:
        live = self._live.get(run_id)
        if live is not None and live.session == conn.session_id:
            return live
        run = await self.store.run(run_id)
        if run is None or not run.active:
            raise ProtocolError(Code.RUN_NOT_FOUND, "run not found or ended")
        raise ProtocolError(Code.NOT_RUN_WRITER, "this connection does not write the run (see run_resume)")

    def _adopt(self, run: RunRecord, display_name: str | None) -> None:
        assert run.writer is not None
        self._live[run.run_id] = LiveRun(
            run.run_id, run.channel, run.writer, run.client_id, run.kind, display_name
        )
        self._by_session.add(run.writer, run.run_id)

    def _forget(self, run_id: str) -> None:
        live = self._live.pop(run_id, None)
        if live is None:
            return
        self._by_session.drop(live.session, run_id)
