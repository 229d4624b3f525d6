"""The agent-room frames of a connection: each becomes one operation and exactly one reply.

Refusals are raised as ProtocolError; `broker.requests.Requests`, which calls `handle`, answers
them with a `nack` (or an `error` without a ref) like every other frame.
"""

from __future__ import annotations

from typing import Any

from agentchat_server.broker.claims import Claims
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.inputs import Inputs
from agentchat_server.broker.runs import Runs
from agentchat_server.protocol import (
    ROOM_FRAMES,
    AnswerBody,
    AnswerFrame,
    AskFrame,
    ClaimFrame,
    ClaimReleaseFrame,
    ClaimsFrame,
    RequestsFrame,
    RunCancelFrame,
    RunEndFrame,
    RunResumeFrame,
    RunStartFrame,
    RunStateFrame,
    StreamOpenFrame,
)
from agentchat_server.protocol import server as frames


class RoomRequests:
    """Carries out claim, run and input-request frames against their objects and answers them."""

    def __init__(self, claims: Claims, runs: Runs, inputs: Inputs) -> None:
        self.claims = claims
        self.runs = runs
        self.inputs = inputs

    @staticmethod
    def handles(frame: Any) -> bool:
        """True for the frames `handle` carries out."""
        return isinstance(frame, ROOM_FRAMES)

    async def open_lane(self, conn: Connection, frame: StreamOpenFrame) -> dict[str, Any]:
        """A `stream_open` with a `run_id`: open a lane of one's run; returns the ack fields."""
        return await self.runs.open_lane(conn, frame)

    async def handle(self, conn: Connection, frame: Any) -> None:
        """Carry out one validated room frame and send its reply (raises ProtocolError when refused)."""
        reply: dict[str, Any] = {}
        if isinstance(frame, ClaimFrame):
            reply = await self.claims.claim(conn, frame)
        elif isinstance(frame, ClaimReleaseFrame):
            await self.claims.release(conn, frame)
        elif isinstance(frame, ClaimsFrame):
            reply = await self.claims.page(conn.identity, frame.channel, frame.after)
        elif isinstance(frame, RunStartFrame):
            reply = await self.runs.start(conn, frame)
        elif isinstance(frame, RunEndFrame):
            reply = await self.runs.end(conn, frame)
        elif isinstance(frame, RunStateFrame):
            self.runs.state(conn, frame)
        elif isinstance(frame, RunCancelFrame):
            reply = await self.runs.cancel(conn, frame)
        elif isinstance(frame, RunResumeFrame):
            reply = await self.runs.resume(conn, frame)
        elif isinstance(frame, AskFrame):
            reply = await self.inputs.ask(conn, frame)
        elif isinstance(frame, AnswerFrame):
            body = AnswerBody(outcome=frame.outcome, data=frame.data)
            reply = await self.inputs.answer(conn.identity, conn, frame.channel, frame.request_id, body)
        elif isinstance(frame, RequestsFrame):
            reply = await self.inputs.page(
                conn.identity,
                frame.channel,
                mine=frame.mine,
                status=frame.status,
                after=frame.after,
                limit=frame.limit,
            )
        ref = getattr(frame, "ref", None)
        if ref is not None:
            conn.send(frames.ack(ref, **reply))
