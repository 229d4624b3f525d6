"""A claimed run's lanes leave its claim to the run: a lane that completes does not make the claim
done, so a run that then fails releases it and another agent can take the task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentchat_server.testing import TestServer
from tests.room_helpers import ROOM, member, ok, said, seen


async def test_a_failed_run_releases_its_claim_even_after_a_completed_lane(
    make_server: Callable[..., Any],
) -> None:
    """A run started with the claim ends failed after one complete lane: the claim is released."""
    srv: TestServer = await make_server()
    human = await member(srv, "ana", kind="human")
    task = await said(human, "summarise the report")
    worker = await member(srv, "worker-1")
    token = (await ok(worker, {"type": "claim", "channel": ROOM, "serial": task}))["token"]
    run_id = (await ok(worker, {"type": "run_start", "channel": ROOM, "reply_to": task, "claim": token}))[
        "run_id"
    ]
    lane = await ok(worker, {"type": "stream_open", "channel": ROOM, "run_id": run_id, "lane": "reasoning"})
    await ok(worker, {"type": "stream_end", "stream_id": lane["stream_id"], "chunks": 0})
    failed = {"type": "run_end", "run_id": run_id, "status": "failed", "error": {"message": "model down"}}
    await ok(worker, failed)
    await seen(human, {"type": "claim", "serial": task, "token": token, "state": "released"})
    other = await member(srv, "worker-2")
    retaken = await ok(other, {"type": "claim", "channel": ROOM, "serial": task})
    assert retaken["token"] == token + 1
