"""Positions that are true cluster-wide: commits from every node reach readers in serial order.

With several nodes publishing into one channel, another node's commit may arrive over the bus
after this node's next one. `core.reorder` holds such messages; a hole that does not close within
`reorder_wait` is read once from the Store for the whole channel (never once per reader). With a
bus that can lose events (Redis), each node also checks its channels' heads against the Store
every `position_check_interval` and at once after the bus reconnects, so a missing tail is
noticed without waiting for a later message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from agentchat_server.broker.registry import ChannelRegistry, ChannelState
from agentchat_server.core.records import Message
from agentchat_server.metrics import Metrics
from agentchat_server.settings import Settings
from agentchat_server.store import Store

log = logging.getLogger(__name__)

FILL_PAGE = 500
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]
FanOut = Callable[[ChannelState, Sequence[Message]], None]


class Positions:
    """Orders each channel's commits on this node and repairs its holes from the Store."""

    def __init__(
        self,
        settings: Settings,
        registry: ChannelRegistry,
        store: Store,
        fan_out: FanOut,
        spawn: Spawn,
        metrics: Metrics,
    ) -> None:
        self.metrics = metrics
        self.settings = settings
        self.registry = registry
        self.store = store
        self.fan_out = fan_out
        self.spawn = spawn

    def offer(self, ch: ChannelState, messages: Sequence[Message]) -> None:
        """Committed messages arrived (from this node or another): deliver what is in order."""
        if messages[-1].serial > ch.head:
            ch.head = messages[-1].serial
        run = ch.order.offer(list(messages))
        if run:
            self.fan_out(ch, run)
        if ch.order.missing is not None or ch.hole_wait is not None:
            self.watch(ch)

    def watch(self, ch: ChannelState) -> None:
        """Something is missing (or was): wait briefly for it, or read it now if too much is held."""
        if ch.order.missing is None:
            if ch.hole_wait is not None:
                ch.hole_wait.cancel()
                ch.hole_wait = None
            return
        if ch.repair is not None:
            return
        if ch.order.overfull or self.settings.reorder_wait == 0:
            self._repair(ch)
        elif ch.hole_wait is None:
            ch.hole_wait = asyncio.get_running_loop().call_later(self.settings.reorder_wait, self._repair, ch)

    def _repair(self, ch: ChannelState) -> None:
        ch.hole_wait = None
        if ch.repair is None and ch.order.missing is not None and self.registry.get(ch.name) is ch:
            ch.repair = self.spawn(self._read_hole(ch), f"repair:{ch.name}")

    async def _read_hole(self, ch: ChannelState) -> None:
        try:
            while (missing := ch.order.missing) is not None:
                after, upto = missing
                self.metrics.store_reads.labels("repair").inc()
                page = await self.store.history(
                    ch.name,
                    before=upto + 1,
                    after=after,
                    limit=FILL_PAGE,
                    forwards=True,
                    max_bytes=self.settings.max_page_bytes,
                )
                if not page.messages:
                    # Nothing in the hole any more: retention removed it. Readers' own cursors say so.
                    run = ch.order.skip_to(upto)
                elif page.messages[0].serial > after + 1:
                    run = ch.order.skip_to(page.messages[0].serial - 1) + ch.order.offer(page.messages)
                else:
                    run = ch.order.offer(page.messages)
                if run:
                    self.fan_out(ch, run)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("could not repair %s from the Store: %s", ch.name, exc)
        finally:
            ch.repair = None
        if ch.order.missing is not None:
            self.watch(ch)
        else:
            self.registry.forget_if_idle(ch)

    async def check(self, names: list[str] | None = None) -> None:
        """Compare this node's channels with the Store's heads; repair any tail that is missing."""
        if names is None:
            names = self.registry.names()
        for start in range(0, len(names), 500):
            heads = await self.store.heads(names[start : start + 500])
            for name, last in heads.items():
                ch = self.registry.get(name)
                if ch is None:
                    continue
                if last > ch.head:
                    ch.head = last
                ch.order.exists_up_to(last)
                self.watch(ch)

    async def run(self) -> None:
        """Check positions every `position_check_interval` until cancelled (bus that may lose events)."""
        while True:
            await asyncio.sleep(self.settings.position_check_interval)
            try:
                await self.check()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("position check failed: %s", exc)

    def resync(self) -> None:
        """The bus lost events: check every channel against the Store now."""
        self.spawn(self.check(), "resync")
