"""Live records of one node: a client connection and its attachments to channels."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.ports import Transport
from agentchat_server.core.ordering import Cursor
from agentchat_server.core.ratelimit import TokenBucket
from agentchat_server.protocol import Encoded


class Connection:
    """One live transport (a WebSocket or an SSE response) bound to a session.

    The connection owns its attachments and its per-connection budgets; the session (owned by
    `Sessions`) is referred to by id."""

    __slots__ = (
        "attachments",
        "bad_frames",
        "closed",
        "hb_bytes",
        "hb_since",
        "history_busy",
        "identity",
        "last_recv",
        "presence_bucket",
        "publish_bucket",
        "renew_sent",
        "session_id",
        "transport",
    )

    def __init__(self, identity: Identity, transport: Transport, now: float) -> None:
        self.identity = identity
        self.transport = transport
        self.session_id: str | None = None
        self.attachments: dict[str, Attachment] = {}
        self.closed = False
        self.last_recv = now
        self.hb_bytes = 0
        self.hb_since = now
        self.renew_sent = False
        # Made on first use: most connections never publish, enter presence or send a bad frame.
        self.publish_bucket: TokenBucket | None = None
        self.presence_bucket: TokenBucket | None = None
        self.bad_frames: TokenBucket | None = None
        self.history_busy = 0  # history requests of this connection waiting or running

    @property
    def client_id(self) -> str:
        """The client id proven by the connection's token."""
        return self.identity.client_id

    @property
    def unidirectional(self) -> bool:
        """True for SSE: the client never sends frames."""
        return self.transport.unidirectional

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame for this connection alone."""
        if not self.closed:
            self.transport.send(frame)

    def deliver(self, event: Encoded) -> None:
        """Queue one shared fan-out event."""
        if not self.closed:
            self.transport.deliver(event)

    def close(self, code: int, reason: str) -> None:
        """Close the transport with `code` (once)."""
        if not self.closed:
            self.closed = True
            self.transport.close(code, reason)


@dataclass(slots=True)
class Attachment:
    """A connection's attachment to one channel: its delivery cursor, its presence wish, its
    message filter, and (while an attach catches up at the reader's pace) the live frames held
    behind the catch-up."""

    connection: Connection
    cursor: Cursor
    presence: bool
    fill: asyncio.Task[None] | None = None
    to_me: str | None = None  # filter "to_me": the client id whose messages this reader gets
    backlog: deque[tuple[Encoded, int]] | None = None  # (event, bytes counted as held live)
    backlog_bytes: int = 0  # live bytes held now
    pacer: asyncio.Task[None] | None = field(default=None)

    def cancel_tasks(self) -> None:
        """Stop the fill and the catch-up of this attachment (it is being replaced or dropped)."""
        if self.fill is not None:
            self.fill.cancel()
            self.fill = None
        if self.pacer is not None:
            self.pacer.cancel()
            self.pacer = None
        self.backlog = None
