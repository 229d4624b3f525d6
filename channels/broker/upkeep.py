"""A node's periodic upkeep besides leases (`broker.leases`): retention, and with a shared
presence backend, keeping this node's presence entries alive and removing those of dead nodes."""

from __future__ import annotations

import asyncio
import logging

from agentchat_server.broker.members import Members, now_ms
from agentchat_server.broker.registry import ChannelRegistry
from agentchat_server.settings import Settings
from agentchat_server.store import Store

log = logging.getLogger(__name__)


class Upkeep:
    """The retention and presence loops; each runs until cancelled and logs what fails."""

    def __init__(self, settings: Settings, registry: ChannelRegistry, store: Store, members: Members) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.members = members

    async def prune_now(self) -> int:
        """Delete messages older than the retention; returns how many channels lost some.
        Readers from before a channel's new start learn of it (80002)."""
        days = self.settings.retention_days
        if days is None:
            return 0
        first_serials = await self.store.prune(now_ms() - int(days * 86_400_000))
        for name, first in first_serials.items():
            ch = self.registry.get(name)
            if ch is not None:
                ch.first_serial = max(ch.first_serial, first)
        return len(first_serials)

    async def retention(self) -> None:
        """Prune every half retention period (at least every second, at most every hour)."""
        assert self.settings.retention_days is not None
        period = max(1.0, min(3600.0, self.settings.retention_days * 86_400 / 2))
        while True:
            try:
                await self.prune_now()
            except Exception:
                log.exception("retention prune failed")
            await asyncio.sleep(period)

    async def presence(self) -> None:
        """Keep this node's presence entries alive and remove those of dead nodes (with Redis)."""
        period = self.settings.presence_ttl / 3
        while True:
            await asyncio.sleep(period)
            try:
                await self.members.refresh()
                await self.members.expire(self.registry.names())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("presence upkeep failed: %s", exc)
