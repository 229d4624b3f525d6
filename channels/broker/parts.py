"""The objects of one node and how they are wired together: who calls whom, in one place.
`Broker` (the facade the transports talk to) is built on these parts."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from typing import Any

from agentchat_server.auth import Authenticator
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
from agentchat_server.settings import Settings

log = logging.getLogger(__name__)


class Parts:
    """Makes and wires one node's objects (see the broker's docstring for what each does);
    owns the background tasks they spawn."""

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
