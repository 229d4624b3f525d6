"""A channel's agent-room requests: claims, runs and input requests (docs/protocol.md, "Agent rooms")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from agentchat.claims import Claiming
from agentchat.ports import ChannelView, Hub
from agentchat.roommodels import ClaimEvent, Policy
from agentchat.runs import Run


class AgentRoom:
    """The agent-room half of a Channel (mixed into it): what a pool of agents coordinates with."""

    @property
    def name(self) -> str:
        """The channel's name."""
        raise NotImplementedError

    @property
    def client(self) -> Hub:
        """The Client this channel belongs to."""
        raise NotImplementedError

    @property
    def policy(self) -> Policy:
        """The namespace's policy for agents."""
        raise NotImplementedError

    # --- claims -----------------------------------------------------------------------------

    def claim(self, serial: int, *, ttl: int | None = None) -> Claiming:
        """Claim message `serial` for this client under a lease of `ttl` seconds (the room's
        `claim_ttl` by default): `claim = await channel.claim(serial)`, or `async with
        channel.claim(serial) as claim:` to renew it in the background and release it at the end.
        ClaimHeld (with `holder`) when another member holds it or answered it."""
        return Claiming(self.client, self.name, serial, ttl, self.policy.claim_ttl)

    async def claims(self, *, after: int | None = None) -> list[ClaimEvent]:
        """The claims held now in the channel, on messages after serial `after` (every page)."""
        held: list[ClaimEvent] = []
        while True:
            frame: dict[str, Any] = {"type": "claims", "channel": self.name}
            if after is not None:
                frame["after"] = after
            reply = await self.client.request(frame)
            entries = [c for c in reply.get("claims") or [] if isinstance(c, dict)]
            page = [ClaimEvent.from_wire(c, self.name) for c in entries]
            held.extend(page)
            if not reply.get("has_more") or not page:
                return held
            after = page[-1].serial

    # --- runs -------------------------------------------------------------------------------

    def run(
        self,
        *,
        reply_to: int | None = None,
        claim: int | None = None,
        to: Sequence[str] | None = None,
        parent: str | None = None,
        id: str | None = None,
    ) -> Run:
        """A run answering message `reply_to` (with the claim's token `claim`), addressed `to`, a
        sub-run of `parent`; `id` makes a retry find the same run. Use `async with` (see Run)."""
        return Run(self._view(), reply_to=reply_to, claim=claim, to=to, parent=parent, id=id)

    async def resume_run(self, run_id: str) -> Run:
        """Take this client's run `run_id` back on this connection (after a restart, or to carry on
        once its input requests are answered); the Run, with its `status` and `pending` requests."""
        reply = await self.client.request({"type": "run_resume", "run_id": run_id})
        run = Run(self._view(), run_id=str(reply.get("run_id") or run_id))
        run.status = str(reply.get("status") or "running")
        pending = reply.get("pending")
        run.pending = pending if isinstance(pending, int) else 0
        return run

    async def cancel_run(self, run_id: str) -> None:
        """Cancel a run (its writer, or a member with `cancel`): it ends `cancelled` with
        `cancelled_by`, and its writer is told."""
        await self.client.request({"type": "run_cancel", "run_id": run_id})

    def _view(self) -> ChannelView:
        # The Channel this half is mixed into is the view runs and requests need.
        return cast(ChannelView, self)
