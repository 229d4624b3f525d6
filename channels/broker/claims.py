"""Claims: one member of a pool takes a message, under a lease with a fencing token.

The truth is the claim's row, changed only in group commits under the channel's row lock, so
exactly one claimant wins on any number of nodes. The room sees each grant, release, expiry and
completion as a live `claim` frame; renewals are not announced (their lease is in the reply).
A lease that lapses frees the claim at once for the next claimant; the sweep announces it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import refused
from agentchat_server.core.agentrooms import Claimant, ClaimRow
from agentchat_server.protocol import (
    ClaimFrame,
    ClaimReleaseFrame,
    Code,
    ProtocolError,
    encode_value,
    utf8_len,
)
from agentchat_server.protocol import server as frames
from agentchat_server.settings import Settings
from agentchat_server.store import ClaimChange, ClaimResult, Store

PublishLive = Callable[..., None]
Spend = Callable[[Identity, Connection | None], None]


class Claims:
    """Claim, renew, release, list and expire claims."""

    def __init__(
        self, settings: Settings, store: Store, committer: Committer, publish_live: PublishLive, spend: Spend
    ) -> None:
        self.settings = settings
        self.store = store
        self.committer = committer
        self.publish_live = publish_live
        self.spend = spend

    async def claim(self, conn: Connection, frame: ClaimFrame) -> dict[str, Any]:
        """Claim message `serial` (or renew one's lease with its token); replies token and lease end."""
        identity = conn.identity
        identity.require(frame.channel, "claim")
        self.spend(identity, conn)
        if await self.store.message_at(frame.channel, frame.serial) is None:
            raise ProtocolError(Code.NOT_FOUND, "no message with this serial")
        session = conn.session_id
        assert session is not None
        ttl = frame.ttl or self.settings.policy(frame.channel).claim_ttl
        claimant = Claimant(identity.client_id, session, frame.token, ttl * 1000, identity.display_name)
        claim = await self._change(ClaimChange(frame.channel, frame.serial, now_ms(), claimant=claimant))
        if frame.token is None:
            self._announce(claim)
        return {"serial": claim.serial, "token": claim.token, "expires_at": claim.expires_at}

    async def release(self, conn: Connection, frame: ClaimReleaseFrame) -> None:
        """Give one's claim up: others may claim the message again."""
        identity = conn.identity
        identity.require(frame.channel, "claim")
        self.spend(identity, conn)
        release = (identity.client_id, frame.token)
        self._announce(
            await self._change(ClaimChange(frame.channel, frame.serial, now_ms(), release=release))
        )

    async def expire(self, claim: ClaimRow) -> None:
        """End a lapsed lease (unless it was renewed or taken meanwhile) and announce it."""
        change = ClaimChange(claim.channel, claim.serial, now_ms(), expire_token=claim.token)
        result = await self.committer.submit(change)
        assert isinstance(result, ClaimResult)
        if result.changed and result.claim is not None:
            self._announce(result.claim)

    async def page(self, identity: Identity, channel: str, after: int | None) -> dict[str, Any]:
        """The held claims of a channel after serial `after`: `claims`, `has_more` (count and bytes)."""
        identity.require(channel, "subscribe")
        count = self.settings.presence_page_size
        found = await self.store.claims(channel, now_ms(), after, count + 1)
        listed: list[dict[str, Any]] = []
        size = 0
        for claim in found[:count]:
            event = claim.event()
            size += utf8_len(encode_value(event))
            if listed and size > self.settings.max_page_bytes:
                break
            listed.append(event)
        return {"claims": listed, "has_more": len(listed) < len(found)}

    async def _change(self, change: ClaimChange) -> ClaimRow:
        result = await self.committer.submit(change)
        assert isinstance(result, ClaimResult)
        if result.refusal is not None:
            raise refused(result.refusal)
        assert result.claim is not None
        return result.claim

    def _announce(self, claim: ClaimRow) -> None:
        self.publish_live(claim.channel, frames.claim(claim.event()))
