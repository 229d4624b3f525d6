"""History reads, bounded: pages cut by count and bytes, a process-wide cap on concurrent Store
reads, a per-connection cap on requests in flight, and replies paced to the reader's buffer."""

from __future__ import annotations

import asyncio
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.connections import Connection
from agentchat_server.protocol import Code, ProtocolError
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import Store


class History:
    """Pages of channel history for REST requests and WebSocket `history` frames."""

    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        # Overflow policy: requests beyond the cap wait their turn (holding nothing large).
        self._gate = asyncio.Semaphore(settings.history_concurrency)

    async def page(
        self,
        identity: Identity,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
        thread: int | None = None,
        main: bool = False,
        to_me: bool = False,
    ) -> dict[str, Any]:
        """One page (`messages`, `has_more`) of at most `limit` messages (capped at
        `history_max_page`) and `max_page_bytes` bytes; `has_more` says whether to page on.
        `thread`: that thread's replies only; `main`: top-level messages only; `to_me`: only
        messages to nobody, to this client, or from it. Each
        message the reader reacted to lists its `my_reactions`."""
        identity.require(channel, "history")
        s = self.settings
        async with self._gate:
            page = await self.store.history(
                channel,
                before=before,
                after=after,
                limit=min(limit, s.history_max_page),
                forwards=forwards,
                max_bytes=s.max_page_bytes,
                thread=thread,
                main=main,
                to_me=identity.client_id if to_me else None,
            )
            reacted = [m.serial for m in page.messages if m.extra and "reactions" in m.extra]
            mine = await self.store.my_reactions(channel, reacted, identity.client_id) if reacted else {}
        return {
            "messages": [frames.message(m, mine.get(m.serial)) for m in page.messages],
            "has_more": page.has_more,
        }

    def release(self, conn: Connection) -> None:
        """Count a connection's admitted request out (it was answered)."""
        conn.history_busy -= 1

    def admit(self, conn: Connection) -> None:
        """Count a connection's request in; 42900 when it has too many in flight already."""
        if conn.history_busy >= self.settings.history_per_connection:
            raise ProtocolError(
                Code.RATE_LIMITED,
                f"at most {self.settings.history_per_connection} reads (history, unread, rooms) in flight",
                retry_after=0.1,
            )
        conn.history_busy += 1

    async def reply(
        self,
        conn: Connection,
        ref: int,
        channel: str,
        *,
        before: int | None,
        after: int | None,
        limit: int,
        forwards: bool,
        thread: int | None = None,
        main: bool = False,
        to_me: bool = False,
    ) -> None:
        """Serve a connection's admitted `history` frame: wait until its buffer has room, read, reply."""
        try:
            s = self.settings
            if not await conn.transport.drained(s.max_outbox_bytes // 2, s.slow_consumer_timeout):
                return
            page = await self.page(
                conn.identity,
                channel,
                before=before,
                after=after,
                limit=limit,
                forwards=forwards,
                thread=thread,
                main=main,
                to_me=to_me,
            )
            conn.send(frames.ack(ref, **page))
        finally:
            self.release(conn)
