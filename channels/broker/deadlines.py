"""Deadlines of agent rooms: lapsed claim leases are announced, input requests past their deadline
expire. Every node sweeps; the commits' compare-and-set lets exactly one of them act on each."""

from __future__ import annotations

import asyncio
import logging

from agentchat_server.broker.claims import Claims
from agentchat_server.broker.inputs import Inputs
from agentchat_server.broker.members import now_ms
from agentchat_server.store import Store

log = logging.getLogger(__name__)

SWEEP_PAGE = 100  # claims and requests handled per sweep (the next sweep takes the rest)


class Deadlines:
    """Sweeps the Store every `interval` seconds for what time ran out on."""

    def __init__(self, store: Store, claims: Claims, inputs: Inputs, interval: float) -> None:
        self.store = store
        self.claims = claims
        self.inputs = inputs
        self.interval = interval

    async def run(self) -> None:
        """Sweep until cancelled; a failed sweep is logged and retried at the next period."""
        while True:
            try:
                await self.sweep()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("room deadline sweep failed")
            await asyncio.sleep(self.interval)

    async def sweep(self) -> int:
        """Announce lapsed leases and expire overdue requests; returns how many were handled."""
        now = now_ms()
        claims = await self.store.due_claims(now, SWEEP_PAGE)
        for claim in claims:
            await self.claims.expire(claim)
        requests = await self.store.due_requests(now, SWEEP_PAGE)
        for request in requests:
            await self.inputs.expire(request)
        return len(claims) + len(requests)
