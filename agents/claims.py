"""Claims held by this client: take a message under a lease, renew it in the background, give it up."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Generator
from types import TracebackType
from typing import Any

from agentchat.errors import AgentChatError, ClaimHeld, ClaimLost
from agentchat.ports import Hub

log = logging.getLogger("agentchat.claims")

MIN_RENEW_EVERY = 0.2  # seconds: a tiny ttl must not turn renewal into a busy loop


class Claim:
    """A claim this client holds on message `serial`: `token` is its fencing token (give it as
    `claim=` on the reply), `expires_at` the lease's end in ms (server clock).

    `lost` turns true (and `error` is set) when a renewal found the claim gone: stop working on
    the message; a reply with the token would be refused (ClaimLost).
    """

    def __init__(self, client: Hub, channel: str, reply: dict[str, Any], ttl: int | None) -> None:
        self.client = client
        self.channel = channel
        self.serial = int(reply["serial"])
        self.token = int(reply["token"])
        self.expires_at = int(reply.get("expires_at") or 0)
        self.ttl = ttl
        self.released = False
        self.error: AgentChatError | None = None

    def __repr__(self) -> str:
        return f"<Claim {self.channel}#{self.serial} token={self.token} expires_at={self.expires_at}>"

    @property
    def lost(self) -> bool:
        """True once a renewal or release found the claim no longer ours."""
        return self.error is not None

    async def renew(self, ttl: int | None = None) -> Claim:
        """Move the lease on (same token, new `expires_at`); ClaimLost when it lapsed or was taken."""
        frame: dict[str, Any] = {
            "type": "claim",
            "channel": self.channel,
            "serial": self.serial,
            "token": self.token,
        }
        if (ttl or self.ttl) is not None:
            frame["ttl"] = ttl or self.ttl
        try:
            reply = await self.client.request(frame)
        except ClaimLost as exc:
            self.error = exc
            raise
        self.expires_at = int(reply.get("expires_at") or self.expires_at)
        return self

    async def release(self) -> None:
        """Give the claim up so another member may take the message (ClaimLost if it is not ours;
        ClaimHeld with state `done` once a reply with the token answered it)."""
        frame = {"type": "claim_release", "channel": self.channel, "serial": self.serial, "token": self.token}
        await self.client.request(frame)
        self.released = True


class Claiming:
    """What `channel.claim(serial)` returns: `await` it for a Claim, or use `async with` to hold the
    claim for the block, renewed in the background every ttl/3 and released when the block ends
    (a release after the reply answered it is a no-op). ClaimHeld when another member holds it.
    """

    def __init__(self, client: Hub, channel: str, serial: int, ttl: int | None, default_ttl: int) -> None:
        self._client = client
        self._channel = channel
        self._serial = serial
        self._ttl = ttl
        self._default_ttl = default_ttl
        self._claim: Claim | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self) -> Claim:
        """Claim the message once; the Claim (the same lease again if this session holds it)."""
        frame: dict[str, Any] = {"type": "claim", "channel": self._channel, "serial": self._serial}
        if self._ttl is not None:
            frame["ttl"] = self._ttl
        reply = await self._client.request(frame)
        return Claim(self._client, self._channel, reply, self._ttl)

    def __await__(self) -> Generator[Any, None, Claim]:
        return self.acquire().__await__()

    async def __aenter__(self) -> Claim:
        claim = self._claim = await self.acquire()
        self._renewer = asyncio.create_task(self._renew(claim), name=f"claim-{self._serial}")
        return claim

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
        claim = self._claim
        if claim is None or claim.lost or claim.released:
            return
        try:
            await claim.release()
        except (ClaimHeld, ClaimLost):
            pass  # done (answered by its reply) or lapsed: nothing is held any more
        except AgentChatError as error:
            log.warning("could not release %r: %s", claim, error)

    async def _renew(self, claim: Claim) -> None:
        every = max(MIN_RENEW_EVERY, (self._ttl or self._default_ttl) / 3)
        while not claim.lost:
            await asyncio.sleep(every)
            try:
                await claim.renew()
            except ClaimLost:
                log.warning("lost %r: stop working on it", claim)
            except ClaimHeld:
                return  # answered: the claim is done, nothing to renew
            except AgentChatError as error:
                log.warning("renewing %r failed: %s", claim, error)
