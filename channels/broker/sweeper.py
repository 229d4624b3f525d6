"""The sweeper: every connection is checked once per period (liveness, expiry, heartbeats), a slice
at a time, carrying out `core.sessions.check_connection`'s decisions."""

from __future__ import annotations

import asyncio
import logging
import time

from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.sessions import Sessions
from agentchat_server.core.sessions import Check, check_connection, renew_at
from agentchat_server.protocol import CloseCode
from agentchat_server.protocol import server as frames

log = logging.getLogger(__name__)

SLICES = 8  # the sweep runs in this many slices per period


class Sweeper:
    """Runs until cancelled; `interval` is the heartbeat interval."""

    def __init__(self, sessions: Sessions, interval: float) -> None:
        self.sessions = sessions
        self.interval = interval

    async def run(self) -> None:
        """Check every connection once per period, in slices: one pass over 10,000 connections
        would stall fan-out for milliseconds at once."""
        period = max(0.05, min(1.0, self.interval / 3))
        while True:
            conns = list(self.sessions.connections())
            size = -(-len(conns) // SLICES)
            for k in range(SLICES):
                await asyncio.sleep(period / SLICES)
                try:
                    self.sweep(conns[k * size : (k + 1) * size], time.monotonic(), time.time())
                except Exception:
                    log.exception("sweep failed")

    def sweep(self, conns: list[Connection], mono: float, wall: float) -> None:
        """Check these connections now."""
        interval = self.interval
        for conn in conns:
            if conn.closed:
                continue
            transport = conn.transport
            sent = transport.sent_bytes
            if sent != conn.hb_bytes:
                conn.hb_bytes = sent
                conn.hb_since = mono
            verdict = check_connection(
                wall=wall,
                mono=mono,
                expires_at=conn.identity.expires_at,
                renew_at=renew_at(conn.identity.issued_at, conn.identity.expires_at),
                transport_closing=transport.is_closing(),
                renew_sent=conn.renew_sent,
                unidirectional=transport.unidirectional,
                last_recv=conn.last_recv,
                last_send=conn.hb_since,
                interval=interval,
            )
            if verdict is Check.OK:
                continue
            if verdict is Check.TRANSPORT_GONE:
                conn.close(CloseCode.GOING_AWAY, "transport closed")
            elif verdict is Check.EXPIRED:
                conn.close(CloseCode.TOKEN_EXPIRED, "token expired")
            elif verdict is Check.RENEW:
                conn.renew_sent = True
                conn.send(frames.auth_renew(conn.identity.expires_at))
            elif verdict is Check.SILENT:
                conn.close(
                    CloseCode.HEARTBEAT_TIMEOUT, "no frame from the client within 2 heartbeat intervals"
                )
            else:
                conn.hb_since = mono
                conn.send(frames.heartbeat(now_ms()))
