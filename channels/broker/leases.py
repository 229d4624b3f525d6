"""Leases: the one loop by which a node keeps what it holds and takes over what a dead node held.

A node's open streams and the runs its sessions write each carry a lease in the Store, naming the
node. Every third of a lease this loop renews all of the node's leases in one Store write, then
ends the streams whose lease lapsed (aborted, with the text so far) and takes the writer from the
runs whose lease lapsed (parked or aborted). Each of those is a compare-and-set in the Store, so
when every node sees the same lapsed lease, one of them acts. A failed round is logged; the next
one tries again.
"""

from __future__ import annotations

import asyncio
import logging

from agentchat_server.broker.members import now_ms
from agentchat_server.broker.runs import Runs
from agentchat_server.broker.streams import Streams
from agentchat_server.store import Store

log = logging.getLogger(__name__)


class Leases:
    """Renews this node's stream and run leases and ends lapsed ones; `run` until cancelled."""

    def __init__(self, node: str, store: Store, streams: Streams, runs: Runs, lease_ms: int) -> None:
        self.node = node
        self.store = store
        self.streams = streams
        self.runs = runs
        self.lease_ms = lease_ms

    async def run(self) -> None:
        """Keep the leases, every third of a lease."""
        while True:
            await self.round()
            await asyncio.sleep(self.lease_ms / 3000)

    async def round(self) -> None:
        """One renewal and one look for lapsed leases (errors logged, not raised)."""
        try:
            if len(self.streams) or len(self.runs):
                await self.store.renew_leases(self.node, now_ms() + self.lease_ms)
            await self.streams.end_lapsed()
            await self.runs.lose_lapsed()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("lease upkeep failed: %s", exc)
