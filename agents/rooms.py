"""A channel's agent-room requests: claims, runs and input requests (docs/protocol.md, "Agent rooms")."""

from __future__ import annotations

from typing import Any

from agentchat.claims import Claiming
from agentchat.ports import Hub
from agentchat.roommodels import ClaimEvent, Policy


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
