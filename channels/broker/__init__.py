"""The broker: one node's coordinator, a facade over objects with one job each.

`Sessions` (connections, resume, grace timers), `Readers` (attach, fills, catch-ups), `Hub`
(bus in and out, fan-out), `Members` (presence), `Streams`, `Publisher`, `History`, the
`Committer` (group commit) and the `Sweeper` (liveness); for chat, `Chat`; for agent rooms
`RoomRules`, `Claims`, `Runs` (with `RunViews`), `Inputs` (approvals and questions) and
`Deadlines`. Transports talk to this facade only;
docs/architecture.md shows how a publish travels through them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Sequence
from typing import Any

from agentchat_server.auth import Authenticator, Identity
from agentchat_server.backends import Backends
from agentchat_server.broker.chat import Chat
from agentchat_server.broker.claims import Claims
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.deadlines import Deadlines
from agentchat_server.broker.history import History
from agentchat_server.broker.hub import Hub
from agentchat_server.broker.inputs import Inputs
from agentchat_server.broker.leases import Leases
from agentchat_server.broker.members import Members
from agentchat_server.broker.ports import Transport
from agentchat_server.broker.positions import Positions
from agentchat_server.broker.publisher import Publisher
from agentchat_server.broker.readers import Readers
from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.broker.requests import Requests
from agentchat_server.broker.room_requests import RoomRequests
from agentchat_server.broker.rooms import RoomRules
from agentchat_server.broker.run_views import RunViews
from agentchat_server.broker.runs import Runs
from agentchat_server.broker.sessions import Sessions
from agentchat_server.broker.streams import Streams
from agentchat_server.broker.sweeper import Sweeper
from agentchat_server.broker.tick import Flusher
from agentchat_server.broker.upkeep import Upkeep
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import AnswerBody, OutgoingMessage, ProtocolError, ResumeToken
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["Broker", "Connection"]


class Broker:
    """Owns every live record of one node. Create, `await start()`, serve, `await close()`."""

    def __init__(
        self, settings: Settings, backends: Backends, auth: Authenticator, metrics: Metrics, flusher: Flusher
    ) -> None:
        self.settings, self.backends, self.metrics = settings, backends, metrics
        self.store, self.bus = backends.store, backends.bus
        self.node_id = secrets.token_hex(4)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.registry = ChannelRegistry(self.store, self.bus, metrics)
        watermark = settings.max_outbox_bytes // 2
        self.hub = Hub(
            self.registry, self.bus, flusher, metrics, watermark=watermark, backlog_limit=watermark
        )
        self.positions = Positions(
            settings, self.registry, self.store, self.hub.fan_out_messages, self.spawn, metrics
        )
        self.hub.offer = self.positions.offer
        self.committer = Committer(self.store, metrics, self.hub.on_committed, settings.commit_batch)
        self.members = Members(settings, self.registry, backends.presence, self.hub.publish_live, self.spawn)
        self.rules = RoomRules(settings, self.hub.publish_live)
        self.streams = Streams(
            settings,
            self.node_id,
            self.registry,
            self.store,
            backends.streams,
            self.committer,
            self.hub.publish_live,
            self.hub.publish_control,
            self._writer,
            metrics,
            self.rules,
        )
        self.hub.on_stream_message = self.streams.on_message
        self.hub.on_control = self.streams.on_control
        self.publisher = Publisher(settings, self.committer, self.hub.publish_live, metrics, self.rules)
        spend = self.publisher.spend
        self.runs = Runs(
            settings,
            self.node_id,
            self.store,
            self.committer,
            self.rules,
            self.streams,
            self.hub.publish_live,
            self._writer,
            lambda conn: spend(conn.identity, conn),
        )
        self.run_views = RunViews(
            settings, self.store, self.spawn, self.runs.on_status, self.runs.written_state
        )
        self.hub.observe_live = self.run_views.observe
        self.claims = Claims(settings, self.store, self.committer, self.hub.publish_live, spend)
        self.inputs = Inputs(settings, self.store, self.committer, self.rules, spend)
        self.deadlines = Deadlines(self.store, self.claims, self.inputs, settings.room_sweep_interval)
        self.readers = Readers(
            settings,
            self.registry,
            self.hub,
            self.members,
            self.positions,
            self.store,
            backends.streams,
            metrics,
            self.spawn,
            runs=self.run_views,
        )
        self.sessions = Sessions(
            settings,
            metrics,
            detach_all=self.readers.detach_all,
            leave_presence=self.members.leave_all,
            abort_streams=self._writer_gone,
        )
        self.history = History(settings, self.store)
        self.chat = Chat(
            settings, self.store, self.committer, self.publisher, self.hub.publish_live, self.members.count
        )
        self.requests = Requests(
            settings,
            auth,
            self.readers,
            self.members,
            self.publisher,
            self.streams,
            self.history,
            metrics,
            self.spawn,
            self.sessions.schedule_renewal,
            self.chat,
            RoomRequests(self.claims, self.runs, self.inputs),
        )
        self.sweeper = Sweeper(self.sessions, settings.heartbeat_interval)
        self.upkeep = Upkeep(settings, self.registry, self.store, self.members)
        self.leases = Leases(self.node_id, self.store, self.streams, self.runs, self.streams.lease_ms)
        metrics.count_bytes_out(self.sessions.bytes_out)

    def _writer(self, session_id: str) -> Connection | None:
        session = self.sessions.get(session_id)
        return None if session is None else session.connection

    def _writer_gone(self, session_id: str, why: str) -> None:
        # Runs first: their lanes' ends and their own records are queued in that order.
        self.runs.writer_lost(session_id)
        self.streams.abort_session(session_id, why)

    async def start(self) -> None:
        """Open the Store and the shared state, start committing and the node's upkeep loops."""
        await self.store.open()
        await self.backends.start()
        await self.bus.start(self.hub.on_bus, self.positions.resync)
        self.committer.start()
        self.spawn(self.sweeper.run(), "agentchat-sweeper")
        self.spawn(self.leases.run(), "agentchat-leases")
        self.spawn(self.deadlines.run(), "agentchat-deadlines")
        if self.backends.clustered:
            self.spawn(self.positions.run(), "agentchat-positions")
            self.spawn(self.upkeep.presence(), "agentchat-presence")
        if self.settings.retention_days is not None:
            self.spawn(self.upkeep.retention(), "agentchat-retention")

    async def close(self) -> None:
        """Shut down within `shutdown_timeout`, even with Redis or the database gone: runs written
        here lose their writer (parked while they wait for input, else aborted), let go of open
        streams (their writers resume them elsewhere, or here after a restart), remove this node's
        presence, close connections (1001), commit what is queued, flush the bus."""
        if self.sessions.closing:
            return
        self.sessions.closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.shutdown_timeout
        steps = (
            ("end runs", self.runs.abort_all()),
            ("release streams", self.streams.release_all()),
            ("remove presence", self.members.leave_everyone()),
        )
        for what, step in steps:
            await _bounded(what, step, deadline - loop.time())
        self.sessions.close_all()
        await _bounded("commit what is queued", self.committer.stop(), deadline - loop.time())
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await _bounded(
            "flush the bus", self.bus.stop(max(0.1, deadline - loop.time())), 1 + deadline - loop.time()
        )
        await _bounded("close backends", self.backends.close(), 1.0)
        await _bounded("close the store", self.store.close(), 1.0)

    @property
    def closing(self) -> bool:
        """True once `close` began."""
        return self.sessions.closing

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a background task the broker owns (cancelled at close; errors logged)."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # --- what transports call ----------------------------------------------------------------

    def open(self, identity: Identity, transport: Transport) -> Connection:
        """Register a connection (ProtocolError if its client has too many or we shut down)."""
        return self.sessions.open(identity, transport)

    def connect(self, conn: Connection, resume: ResumeToken | None) -> None:
        """Bind a session (resumed if possible) and send `connected`."""
        self.sessions.connect(conn, resume)

    def disconnect(self, conn: Connection, graceful: bool) -> None:
        """The transport ended (graceful: the client closed normally)."""
        self.sessions.disconnect(conn, graceful)

    async def handle(self, conn: Connection, frame: Any) -> None:
        """Carry out one validated client frame and answer it."""
        await self.requests.handle(conn, frame)

    def refuse(self, conn: Connection, ref: int | None, exc: ProtocolError) -> None:
        """Answer a frame the transport could not decode or validate."""
        self.requests.refuse(conn, ref, exc)

    async def attach(
        self, conn: Connection, channel: str, position: tuple[int, str | None] | None, to_me: bool = False
    ) -> None:
        """Attach a unidirectional (SSE) connection to one channel, with presence diffs."""
        await self.readers.attach(conn, channel, position, True, None, to_me)

    def publish(
        self, identity: Identity, channel: str, messages: Sequence[OutgoingMessage], if_serial: int | None
    ) -> asyncio.Future[dict[str, Any]]:
        """A REST publish: the future gives the ack fields once committed."""
        return self.publisher.publish(identity, channel, messages, if_serial)

    async def history_page(self, identity: Identity, channel: str, **query: Any) -> dict[str, Any]:
        """A REST history page (`before`, `after`, `limit`, `forwards`, `thread`, `main`, `to_me`)."""
        return await self.history.page(identity, channel, **query)

    async def requests_page(self, identity: Identity, channel: str, **query: Any) -> dict[str, Any]:
        """A REST page of input requests (`mine`, `status`, `after`, `limit`)."""
        return await self.inputs.page(identity, channel, **query)

    async def answer(
        self, identity: Identity, channel: str, request_id: str, body: AnswerBody
    ) -> dict[str, Any]:
        """A REST answer to an input request; gives the answer's serial once committed."""
        return await self.inputs.answer(identity, None, channel, request_id, body)

    async def presence_page(self, identity: Identity, channel: str, after: str | None) -> dict[str, Any]:
        """A REST page of the channel's presence entries."""
        return await self.members.get(identity, channel, after)

    async def occupancy(self, identity: Identity, channel: str) -> dict[str, int]:
        """A REST occupancy count."""
        identity.require(channel, "subscribe")
        return await self.readers.occupancy(channel)

    async def ping_store(self) -> None:
        """Raise if the Store does not answer (for /healthz)."""
        await self.store.ping()

    # --- upkeep ------------------------------------------------------------------------------

    async def prune_now(self) -> int:
        """Delete messages older than the retention now; returns how many channels lost some."""
        return await self.upkeep.prune_now()


async def _bounded(what: str, step: Coroutine[Any, Any, Any], seconds: float) -> None:
    """Run one shutdown step for at most `seconds`; a step that fails or overruns is logged."""
    try:
        async with asyncio.timeout(max(0.0, seconds)):
            await step
    except TimeoutError:
        log.warning("shutdown: %s took too long; going on", what)
    except Exception as exc:
        log.warning("shutdown: %s failed (%s); going on", what, exc)
