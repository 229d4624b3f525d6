"""Agent-room rules of one write, from the channel's namespace settings and the writer's identity,
and the live frames a committed room change announces (claims, run status).

Which writes count as turns: an agent's durable publish outside a run, stream opened outside a
run, or top-level run's start; they spend the loop brake's budget (any stored message of a person
resets it, in the Store). Only those writes are held to the reply policy (`addressed`); a run's
own writes inherit the run's claim.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from agentchat_server.broker.members import now_ms
from agentchat_server.core.refusal import Refusal
from agentchat_server.core.streams import Stream
from agentchat_server.protocol import ProtocolError
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import AppendResult, Effect, RoomWrite

PublishLive = Callable[..., None]


class Writer(Protocol):
    """Who writes: a connection's identity, or an open stream (on behalf of its writer)."""

    @property
    def client_id(self) -> str:
        """The writer's client id."""

    @property
    def kind(self) -> str:
        """agent, human or system."""


def refused(refusal: Refusal) -> ProtocolError:
    """The protocol error of a room refusal."""
    return ProtocolError(refusal.code, refusal.message, **refusal.details)


class RoomRules:
    """Builds `RoomWrite`s and announces what committed room writes changed."""

    def __init__(self, settings: Settings, publish_live: PublishLive) -> None:
        self.settings = settings
        self.publish_live = publish_live

    def write(
        self,
        writer: Writer,
        channel: str,
        *,
        turn: bool,
        replies: Sequence[int | None] = (),
        token: int | None = None,
        run_id: str | None = None,
        session: str | None = None,
        finish: str | None = None,
        soft: bool = False,
        effect: Effect | None = None,
    ) -> RoomWrite:
        """The rules one write is checked against in its commit. `turn`: the write starts a turn
        (an agent's counts for the loop brake; held to the reply policy). `soft`: a failed claim or
        run check stores the write as aborted instead of refusing it (ends of streams and runs)."""
        policy = self.settings.policy(channel)
        kind = writer.kind
        return RoomWrite(
            writer.client_id,
            kind,
            now_ms(),
            turn="agent" if turn and kind == "agent" else None,
            budget=policy.loop_budget,
            replies=tuple(sorted({r for r in replies if r is not None})),
            addressed_only=turn and policy.reply_policy == "addressed",
            token=token,
            finish=finish,
            soft_claim=soft,
            soft_run=soft and run_id is not None and effect is None,
            run_id=run_id,
            session=session,
            effect=effect,
        )

    def stream_end(self, stream: Stream, status: str) -> RoomWrite | None:
        """The rules of a stream's end: none, unless it answers a claim or is a run's lane. Its
        end is never refused: a lost claim or run stores it as aborted (`soft`); a complete end
        makes the claim done, any other releases it. A lane leaves its run's claim to the run's
        end, so a run that fails after a complete lane still releases it."""
        if stream.token is None and stream.run_id is None:
            return None
        finish = None if stream.run_id is not None else "done" if status == "complete" else "released"
        return self.write(
            stream,
            stream.channel,
            turn=False,
            replies=[stream.reply_to],
            token=stream.token,
            run_id=stream.run_id,
            session=stream.writer,
            finish=finish,
            soft=True,
        )

    def settle(self, result: AppendResult | None) -> AppendResult:
        """Announce a committed room write's changes; raise its refusal (after announcing what
        the refused write still changed, as the brake's notice, which the commit fans out)."""
        assert result is not None
        self.announce(result)
        if result.refusal is not None:
            raise refused(result.refusal)
        return result

    def announce(self, result: AppendResult) -> None:
        """Live frames for the claims and the run a commit changed."""
        for claim in result.claims:
            self.publish_live(claim.channel, frames.claim(claim.event()))
        if result.run is not None:
            self.publish_live(result.run.channel, frames.run_status(result.run.header()))


def wire_fields(**fields: Any) -> dict[str, Any] | None:
    """The set fields among `to`, `run_id`, `lane`, `tool_call` ... as they go on the wire."""
    out = {k: v for k, v in fields.items() if v is not None}
    return out or None
