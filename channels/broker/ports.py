"""The Transport port: how the broker sends to one client connection, whatever carries it.

Implemented by the WebSocket transport and the SSE transport (`agentchat_server.transport`),
which own their framing and their outbox (the bounded send buffer).
"""

from __future__ import annotations

from typing import Any, Protocol

from agentchat_server.protocol import Batch, Encoded, Format


class Transport(Protocol):
    """The sending side of one client connection. Sends never block; overflow closes the
    connection as a slow consumer (4008); a transport closed meanwhile ignores sends."""

    @property
    def fmt(self) -> Format:
        """The wire format of this connection (SSE is always json)."""

    @property
    def unidirectional(self) -> bool:
        """True when the client never sends frames (SSE): no replies, no client heartbeats, no resume."""

    @property
    def sent_bytes(self) -> int:
        """Bytes written to the client so far."""

    def send(self, frame: dict[str, Any]) -> None:
        """Queue one frame for this connection alone (a reply, a notice); written this tick.
        A transport that cannot carry the frame (a reply on SSE) drops it or translates it."""

    def deliver(self, event: Encoded) -> None:
        """Queue one shared fan-out event; written this tick, after what is queued."""

    def deliver_batch(self, batch: Batch) -> None:
        """Write several shared events at once, behind what is queued (the flush pass, a commit)."""

    def close(self, code: int, reason: str) -> None:
        """Close with a code; what is queued is written first."""

    def is_closing(self) -> bool:
        """True once the connection is closed or closing."""

    def buffered(self) -> int:
        """Bytes queued and not yet taken by the network."""

    async def drained(self, below: int, patience: float) -> bool:
        """Wait until fewer than `below` bytes are buffered; False if the connection closed meanwhile.
        After `patience` seconds without draining, the connection is closed as a slow consumer."""
