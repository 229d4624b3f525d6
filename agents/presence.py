"""Presence in one channel: a thin view over the core's member set, and enter/update/leave requests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from agentchat.events import ChannelEvent, Ended, PresenceChanged
from agentchat.models import Member
from agentchat.ports import ChannelView


class Presence:
    """`channel.presence`: this connection's entry and the channel's members as last synced.

    `members` is kept current from `presence_sync` pages and `presence` diffs while attached.
    After a reconnect the entry is entered again with its latest data.
    """

    def __init__(self, channel: ChannelView) -> None:
        self._channel = channel
        self._changed = asyncio.Event()
        channel.listen(self._on_event)

    @property
    def members(self) -> list[Member]:
        """The members as this connection last saw them (needs the channel attached)."""
        return list(self._channel.client.state.channel(self._channel.name).members.values())

    async def enter(self, data: Any = None) -> None:
        """Enter (or update) this connection's presence with `data`; attaches the channel first."""
        await self._send("enter", data)

    async def update(self, data: Any) -> None:
        """Change this connection's presence data (enters if not entered)."""
        await self._send("update", data)

    async def leave(self) -> None:
        """Leave; the entry is no longer restored after reconnects."""
        core = self._channel.client.state
        core.clear_presence(self._channel.name)
        if core.channel(self._channel.name).attached:
            await self._channel.client.request(
                {"type": "presence", "channel": self._channel.name, "action": "leave"}
            )

    async def get(self) -> list[Member]:
        """Ask the server for the current members (no attach needed)."""
        reply = await self._channel.client.request({"type": "presence_get", "channel": self._channel.name})
        return [Member.from_wire(m) for m in reply.get("members") or []]

    async def wait_for(self, predicate: Callable[[list[Member]], bool]) -> list[Member]:
        """Wait until `predicate(members)` holds for the live member set; return that set.

        Raises what ended the channel's views (ConnectionClosed, a refusal) if that comes first."""
        await self._channel.attach()
        while True:
            members = self.members
            if predicate(members):
                return members
            self._changed.clear()
            await self._changed.wait()
            core = self._channel.client.state
            if core.closed is not None:
                raise core.closed
            error = core.channel(self._channel.name).error
            if error is not None:
                raise error

    async def _send(self, action: str, data: Any) -> None:
        await self._channel.attach()
        self._channel.client.state.set_presence(self._channel.name, data)
        await self._channel.client.request(
            {"type": "presence", "channel": self._channel.name, "action": action, "data": data}
        )

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, PresenceChanged | Ended):
            self._changed.set()
