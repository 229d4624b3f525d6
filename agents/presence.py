"""Presence in one channel: enter/update/leave (re-entered after reconnects) and the live member set."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agentchat.models import Member

if TYPE_CHECKING:
    from agentchat.channel import Channel

_ABSENT = object()


class Presence:
    """`channel.presence`: this connection's entry and the channel's members as last synced.

    `members` is kept current from `presence_sync` pages and `presence` diffs while attached.
    After a reconnect the entry is entered again with its latest data.
    """

    def __init__(self, channel: Channel) -> None:
        self._channel = channel
        self._members: dict[tuple[str, str], Member] = {}
        self._data: Any = _ABSENT
        self._fresh_sync = False
        self._changed = asyncio.Event()

    @property
    def members(self) -> list[Member]:
        """The members as this connection last saw them (needs the channel attached)."""
        return list(self._members.values())

    async def enter(self, data: Any = None) -> None:
        """Enter (or update) this connection's presence with `data`; attaches the channel first."""
        await self._send("enter", data)

    async def update(self, data: Any) -> None:
        """Change this connection's presence data (enters if not entered)."""
        await self._send("update", data)

    async def leave(self) -> None:
        """Leave; the entry is no longer restored after reconnects."""
        self._data = _ABSENT
        if self._channel.attached:
            await self._channel.client.request(
                {"type": "presence", "channel": self._channel.name, "action": "leave"}
            )

    async def get(self) -> list[Member]:
        """Ask the server for the current members (no attach needed)."""
        reply = await self._channel.client.request({"type": "presence_get", "channel": self._channel.name})
        return [Member.from_wire(m) for m in reply.get("members") or []]

    async def wait_for(self, predicate: Callable[[list[Member]], bool]) -> list[Member]:
        """Wait until `predicate(members)` holds for the live member set; return that set."""
        await self._channel.attach()
        while True:
            members = self.members
            if predicate(members):
                return members
            self._changed.clear()
            await self._changed.wait()

    async def _send(self, action: str, data: Any) -> None:
        await self._channel.attach()
        self._data = data
        await self._channel.client.request(
            {"type": "presence", "channel": self._channel.name, "action": action, "data": data}
        )

    async def _restore(self) -> None:
        if self._data is not _ABSENT:
            frame = {"type": "presence", "channel": self._channel.name, "action": "enter", "data": self._data}
            await self._channel.client.request(frame, retain=False)

    def _forget(self) -> None:
        self._data = _ABSENT
        self._members.clear()

    def _on_attached(self) -> None:
        self._fresh_sync = True

    def _on_frame(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "presence_sync":
            if self._fresh_sync:
                self._members.clear()
                self._fresh_sync = False
            for value in frame.get("members") or []:
                member = Member.from_wire(value)
                self._members[(member.client_id, member.connection_id)] = member
        else:
            member = Member.from_wire(frame.get("member") or {})
            key = (member.client_id, member.connection_id)
            if frame.get("action") == "leave":
                self._members.pop(key, None)
            else:
                self._members[key] = member
        self._changed.set()
