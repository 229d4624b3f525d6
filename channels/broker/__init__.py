"""The broker: one node's coordinator, a facade over objects with one job each.

`Sessions` (connections, resume, grace timers), `Readers` (attach, fills, catch-ups), `Hub`
(bus in and out, fan-out), `Members` (presence), `Streams`, `Publisher`, `History`, the
`Committer` (group commit) and the `Sweeper` (liveness); for chat, `Chat`; for agent rooms
`RoomRules`, `Claims`, `Runs` (with `RunViews`), `Inputs` (approvals and questions) and
`Deadlines`. `parts.py` makes and wires them; transports talk to this facade only;
docs/architecture.md shows how a publish travels through them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine, Sequence
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.parts import Parts
from agentchat_server.broker.ports import Transport
from agentchat_server.protocol import AnswerBody, OutgoingMessage, ProtocolError, ResumeToken

log = logging.getLogger(__name__)

__all__ = ["Broker", "Connection"]


class Broker(Parts):
    """Owns every live record of one node. Create, `await start()`, serve, `await close()`."""

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
