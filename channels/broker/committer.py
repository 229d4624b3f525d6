"""Group commit: publishes queue up and share one Store transaction; acks wait for it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence

from agentchat_server.metrics import Metrics
from agentchat_server.store import Operation, Result, Store

log = logging.getLogger(__name__)

OnCommitted = Callable[[Sequence[Operation], Sequence[Result]], None]


class Committer:
    """One task drains the queue in batches of at most `batch` operations, in submit order.

    `on_committed` (the fan-out) is scheduled right after each commit, in commit order; the
    futures resolve after the commit, so an ack never precedes its commit.
    """

    def __init__(self, store: Store, metrics: Metrics, on_committed: OnCommitted, batch: int) -> None:
        self.store = store
        self.metrics = metrics
        self.on_committed = on_committed
        self.batch = batch
        self._queue: deque[tuple[Operation, asyncio.Future[Result]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        """Start the task that commits what is queued."""
        self._task = asyncio.create_task(self._run(), name="agentchat-committer")

    async def stop(self) -> None:
        """Commit what is queued, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task

    def submit(self, op: Operation) -> asyncio.Future[Result]:
        """Queue an operation; the future resolves after its commit (or fails with the store error)."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if self._stopping:
            future.set_exception(ConnectionError("server is shutting down"))
            return future
        self._queue.append((op, future))
        self._wake.set()
        return future

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            await self._commit(items)

    async def _commit(self, items: list[tuple[Operation, asyncio.Future[Result]]]) -> None:
        ops = [op for op, _ in items]
        started = time.perf_counter()
        try:
            results = await self.store.commit(ops)
        except Exception as exc:
            if len(items) > 1:
                # One bad operation must not fail its neighbours: retry them one by one.
                log.warning("group commit of %d failed (%s); retrying singly", len(items), exc)
                for item in items:
                    await self._commit([item])
                return
            log.error("commit failed: %s", exc)
            for _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        self.metrics.commit_seconds.observe(time.perf_counter() - started)
        self.metrics.commit_batch.observe(len(ops))
        self.metrics.store_writes.inc(len(ops))
        # Fan-out runs on the next loop turn, so the next commit is already under way meanwhile;
        # call_soon is FIFO, so batches still fan out in commit (serial) order.
        asyncio.get_running_loop().call_soon(self._fan_out, ops, results)
        for (_, future), result in zip(items, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _fan_out(self, ops: Sequence[Operation], results: Sequence[Result]) -> None:
        try:
            self.on_committed(ops, results)
        except Exception:
            log.exception("fan-out after commit failed")
