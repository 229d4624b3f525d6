"""Sessions and connections of one node: open, connect or resume, drop with grace timers, end.

The decisions (who may resume, which timers a drop starts) are `agentchat_server.core.sessions`;
this object keeps the records and runs the timers. What a session holds elsewhere (presence
entries, open streams, attachments) is released through the callbacks it is given.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable, Iterator

from agentchat_server.auth import Identity
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.ports import Transport
from agentchat_server.core.sessions import drop_plan, may_resume, renew_at
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import CloseCode, Code, ProtocolError, ResumeToken
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings

SHORT_NOTICE = 2.0  # renewal notices due sooner than this get a timer instead of waiting for the sweep


class Session:
    """A client's identity across reconnects; presence entries and streams belong to it (by id)."""

    __slots__ = ("channels", "client_id", "connection", "display_name", "key", "kind", "session_id", "timers")

    def __init__(self, session_id: str, key: str, identity: Identity) -> None:
        self.session_id = session_id
        self.key = key
        self.client_id = identity.client_id
        self.kind = identity.kind
        self.display_name = identity.display_name
        self.connection: Connection | None = None
        self.channels: tuple[str, ...] = ()  # attached when it last dropped (a hint on resume)
        self.timers: list[asyncio.TimerHandle] = []

    def cancel_timers(self) -> None:
        """Stop the grace and expiry timers (the session resumed or ended)."""
        for timer in self.timers:
            timer.cancel()
        if self.timers:
            self.timers = []


class Sessions:
    """Every session and connection of this node."""

    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        *,
        detach_all: Callable[[Connection], None],
        leave_presence: Callable[[str], None],
        abort_streams: Callable[[str, str], None],
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self._detach_all = detach_all
        self._leave_presence = leave_presence
        self._abort_streams = abort_streams
        self._sessions: dict[str, Session] = {}
        self._connections: set[Connection] = set()
        self._per_client: dict[str, int] = {}
        self._bytes_closed = 0  # bytes written by connections that have ended
        self.closing = False

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str | None) -> Session | None:
        """The session with this id, if it lives on this node."""
        return None if session_id is None else self._sessions.get(session_id)

    def connections(self) -> Iterator[Connection]:
        """A snapshot of the open connections."""
        return iter(list(self._connections))

    def connection_count(self, client_id: str) -> int:
        """Open connections of one client id."""
        return self._per_client.get(client_id, 0)

    def bytes_out(self) -> int:
        """Bytes written to client transports since start, ended connections included."""
        return self._bytes_closed + sum(conn.transport.sent_bytes for conn in self._connections)

    def open(self, identity: Identity, transport: Transport) -> Connection:
        """Register a transport; ProtocolError when shutting down or its client has too many."""
        if self.closing:
            raise ProtocolError(Code.UNAVAILABLE, "server shutting down")
        count = self._per_client.get(identity.client_id, 0)
        if count >= self.settings.max_connections_per_client:
            raise ProtocolError(Code.TOO_MANY_CONNECTIONS, "too many connections for this client_id")
        conn = Connection(identity, transport, time.monotonic())
        self._per_client[identity.client_id] = count + 1
        self._connections.add(conn)
        self.metrics.connections.labels("sse" if transport.unidirectional else "ws").inc()
        return conn

    def connect(self, conn: Connection, resume: ResumeToken | None) -> None:
        """Bind a session to a new connection (resumed if the token proves one) and send `connected`."""
        identity = conn.identity
        why = None
        session = None
        if resume is not None:
            found = self._sessions.get(resume.session_id)
            if found is not None and may_resume(found.key, found.client_id, resume.key, identity.client_id):
                session = found
                previous = session.connection
                if previous is not None and previous is not conn:
                    # The old transport loses the session; its drop must not start grace timers.
                    previous.session_id = None
                    self._detach_all(previous)
                    previous.close(CloseCode.SESSION_TAKEN_OVER, "session resumed elsewhere")
                session.cancel_timers()
            else:
                why = frames.reason(Code.SESSION_EXPIRED, "session unknown or expired")
        resumed = session is not None
        if session is None:
            session = Session(secrets.token_urlsafe(12), secrets.token_urlsafe(24), identity)
            self._sessions[session.session_id] = session
            self.metrics.sessions.set(len(self._sessions))
        session.connection = conn
        conn.session_id = session.session_id
        s = self.settings
        conn.send(
            frames.connected(
                session_id=session.session_id,
                key=session.key,
                client_id=identity.client_id,
                kind=identity.kind,
                resumed=resumed,
                channels=sorted(session.channels),
                heartbeat_interval=s.heartbeat_interval,
                resume_window=s.resume_window,
                expires_at=identity.expires_at,
                limits=s.client_limits(),
                why=why,
                display_name=identity.display_name,
            )
        )
        self.schedule_renewal(conn)

    def schedule_renewal(self, conn: Connection) -> None:
        """Ask for a fresh token when the connection's is due: the sweep does it for tokens that
        live long; a short one, due before the sweep would see it, gets a timer of its own."""
        identity = conn.identity
        conn.renew_sent = False
        if conn.unidirectional:
            return
        delay = renew_at(identity.issued_at, identity.expires_at) - time.time()
        if delay <= 0:
            self._renew_notice(conn, identity)
        elif delay < SHORT_NOTICE:
            asyncio.get_running_loop().call_later(delay, self._renew_notice, conn, identity)

    @staticmethod
    def _renew_notice(conn: Connection, identity: Identity) -> None:
        if conn.identity is identity and not conn.renew_sent and not conn.closed:
            conn.renew_sent = True
            conn.send(frames.auth_renew(identity.expires_at))

    def disconnect(self, conn: Connection, graceful: bool) -> None:
        """A transport ended. Graceful (client closed with 1000): the session ends now. Otherwise
        presence and streams wait out their grace and the session its resume window."""
        if conn not in self._connections:
            return
        conn.closed = True
        self._connections.discard(conn)
        self._bytes_closed += conn.transport.sent_bytes
        self.metrics.connections.labels("sse" if conn.unidirectional else "ws").dec()
        left = self._per_client.get(conn.client_id, 1) - 1
        if left:
            self._per_client[conn.client_id] = left
        else:
            self._per_client.pop(conn.client_id, None)
        session = self.get(conn.session_id)
        if session is not None and session.connection is conn:
            session.channels = tuple(conn.attachments)
        self._detach_all(conn)
        if session is None or session.connection is not conn:
            return
        session.connection = None
        s = self.settings
        plan = drop_plan(
            graceful=graceful,
            shutting_down=self.closing,
            resumable=not conn.unidirectional,
            has_presence=True,
            has_streams=True,
            presence_grace=s.presence_grace,
            stream_grace=s.stream_grace,
            resume_window=s.resume_window,
        )
        if plan.end_now:
            self.end(session, "left")
            return
        loop = asyncio.get_running_loop()
        if plan.presence_after is not None:
            session.timers.append(loop.call_later(plan.presence_after, self._presence_lapsed, session))
        if plan.streams_after is not None:
            session.timers.append(loop.call_later(plan.streams_after, self._streams_lapsed, session))
        if plan.expire_after is not None:
            session.timers.append(loop.call_later(plan.expire_after, self._expired, session))

    def _presence_lapsed(self, session: Session) -> None:
        if session.connection is None:
            self._leave_presence(session.session_id)

    def _streams_lapsed(self, session: Session) -> None:
        if session.connection is None:
            self._abort_streams(session.session_id, "writer lost")

    def _expired(self, session: Session) -> None:
        if session.connection is None:
            self.end(session, "expired")

    def end(self, session: Session, why: str) -> None:
        """End a session now: its presence leaves and its open streams end as aborted."""
        session.cancel_timers()
        self._leave_presence(session.session_id)
        self._abort_streams(session.session_id, f"session {why}")
        if self._sessions.pop(session.session_id, None) is not None:
            self.metrics.sessions.set(len(self._sessions))

    def close_all(self) -> None:
        """Shutting down: close every connection (1001) and stop every session's timers."""
        self.closing = True
        for conn in list(self._connections):
            conn.close(CloseCode.GOING_AWAY, "server shutting down")
        for session in self._sessions.values():
            session.cancel_timers()
