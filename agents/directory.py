"""The room directory and unread counts, across channels: requests and their replies as values.

The Client offers these as `client.rooms()`, `client.directory()`, `client.room()`,
`client.set_room()` and `client.unread()`; they need no attached channel.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

from agentchat.chatmodels import Room, RoomsPage, Unread, UnreadPage
from agentchat.errors import AlreadyExistsError, RequestError
from agentchat.ports import Hub
from agentchat_server.protocol import Code


async def rooms(hub: Hub, *, after: str | None, prefix: str | None, limit: int) -> RoomsPage:
    """One page of the rooms the token may subscribe to, by name after `after`, under `prefix`."""
    frame: dict[str, Any] = {"type": "rooms", "limit": limit}
    if after is not None:
        frame["after"] = after
    if prefix is not None:
        frame["prefix"] = prefix
    reply = await hub.request(frame)
    found = [Room.from_wire(r) for r in reply.get("rooms") or [] if isinstance(r, dict)]
    return RoomsPage(found, reply.get("has_more") is True, _opt_str(reply.get("next")))


async def every_room(hub: Hub, *, prefix: str | None, page_size: int) -> AsyncIterator[Room]:
    """Every room of the directory under `prefix`, page by page (short or empty pages included)."""
    after: str | None = None
    while True:
        page = await rooms(hub, after=after, prefix=prefix, limit=page_size)
        for found in page:
            yield found
        if not page.has_more or page.next is None or page.next == after:
            return
        after = page.next


async def room(hub: Hub, channel: str) -> Room | None:
    """The directory entry of `channel`, None when the server knows no such channel."""
    try:
        reply = await hub.request({"type": "room_get", "channel": channel})
    except RequestError as exc:
        if exc.code == Code.NOT_FOUND:
            return None
        raise
    return Room.from_wire(reply.get("room") or {})


async def set_room(hub: Hub, channel: str, *, title: str | None, topic: str | None, create: bool) -> Room:
    """Set a room's title and topic (needs `manage`); with `create`, AlreadyExistsError when the
    channel has metadata or messages already. Returns the room as stored."""
    frame: dict[str, Any] = {"type": "room_set", "channel": channel, "create": create}
    if title is not None:
        frame["title"] = title
    if topic is not None:
        frame["topic"] = topic
    try:
        reply = await hub.request(frame)
    except AlreadyExistsError as exc:
        # Our own create, resent after a drop ate its ack: the room is the one we made.
        if exc.resent:
            made = await room(hub, channel)
            if made is not None and made.updated_by == hub.state.client_id:
                return made
        raise
    return Room.from_wire(reply.get("room") or {})


async def unread(hub: Hub, channels: Sequence[str] | None, after: str | None) -> UnreadPage:
    """Unread and mention counts for `channels` (1-100), or else one page of the channels where
    this member has a read mark, by name after `after`."""
    frame: dict[str, Any] = {"type": "unread"}
    if channels is not None:
        frame["channels"] = list(channels)
    if after is not None:
        frame["after"] = after
    reply = await hub.request(frame)
    entries = [Unread.from_wire(u) for u in reply.get("channels") or [] if isinstance(u, dict)]
    return UnreadPage(entries, reply.get("has_more") is True, _opt_str(reply.get("next")))


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
