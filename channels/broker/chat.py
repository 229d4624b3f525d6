"""Group chat on top of messages: edits, deletes, reactions, read marks, unread counts and the room
directory, for WebSocket frames and REST alike.

Edits, deletes and reactions are durable events: rights and sizes are checked here, the rules on
their target (`core.chat`) inside the commit, and they fan out like any message. Read marks and
room metadata are durable too (group commit, ack after commit); a room's new title goes out live.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.publisher import Publisher, RandomIds
from agentchat_server.core.chat import ChatEvent, reaction_problem
from agentchat_server.core.records import NewMessage
from agentchat_server.core.rooms import MAX_TITLE, MAX_TOPIC, canonical_room, room_name_problem, text_problem
from agentchat_server.protocol import Code, ProtocolError, encode_value, encoded_size, utf8_len
from agentchat_server.protocol import server as frames
from agentchat_server.protocol.mentions import mentioned
from agentchat_server.settings import Settings
from agentchat_server.store import Append, AppendResult, MarkRead, Outcome, PutRoom, ReadMark, Room, Store

Reply = dict[str, Any]
PublishLive = Callable[..., None]
MembersCount = Callable[[str], Awaitable[int]]
DIRECTORY_SCAN = 200  # channel names read per Store query while filtering by capabilities
DIRECTORY_SCAN_MAX = 2000  # names read for one directory page at most; then `next` pages on
UNREAD_PAGE = 100  # channels per `unread` page of a member's read marks


class Chat:
    """Events on messages, read state and the directory of one node."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        committer: Committer,
        publisher: Publisher,
        publish_live: PublishLive,
        members_count: MembersCount,
    ) -> None:
        self.settings = settings
        self.store = store
        self.committer = committer
        self.publisher = publisher
        self.publish_live = publish_live
        self.members_count = members_count  # presence entries of a channel, on every node
        self._ids = RandomIds()
        # Overflow policy: reads beyond the cap wait their turn (holding nothing large).
        self._gate = asyncio.Semaphore(settings.history_concurrency)

    # --- events on messages -------------------------------------------------------------------

    def edit(
        self,
        identity: Identity,
        channel: str,
        serial: int,
        data: Any,
        message_id: str | None,
        conn: Connection | None = None,
    ) -> asyncio.Future[Reply]:
        """Replace the data of one's own message; the future gives `{"serial"}` of the edit event."""
        identity.require(channel, "publish")
        limit = self.settings.max_message_bytes
        data_json = encode_value(data)
        if encoded_size(data, data_json, limit) > limit:
            raise ProtocolError(Code.MESSAGE_TOO_LARGE, f"message data exceeds {limit} bytes", limit=limit)
        event = ChatEvent("edit", serial)
        return self._event(identity, channel, event, data, data_json, message_id, conn)

    def delete(
        self,
        identity: Identity,
        channel: str,
        serial: int,
        message_id: str | None,
        conn: Connection | None = None,
    ) -> asyncio.Future[Reply]:
        """Delete a message (one's own; anyone's with `moderate`): it becomes a tombstone."""
        moderator = identity.can(channel, "moderate")
        if not moderator:
            identity.require(channel, "publish")
        event = ChatEvent("delete", serial, moderator=moderator)
        return self._event(identity, channel, event, None, "null", message_id, conn)

    def react(
        self,
        identity: Identity,
        channel: str,
        serial: int,
        reaction: str,
        remove: bool,
        conn: Connection | None = None,
    ) -> asyncio.Future[Reply]:
        """Add or remove one's reaction; `{"serial": null}` when nothing changed."""
        identity.require(channel, "publish")
        problem = reaction_problem(reaction)
        if problem is not None:
            raise ProtocolError(Code.INVALID_VALUE, problem)
        s = self.settings
        event = ChatEvent(
            "unreact" if remove else "react",
            serial,
            max_kinds=s.max_reactions_per_message,
            max_reactors=s.max_reactors_per_message,
            listed=s.reaction_clients_listed,
        )
        return self._event(identity, channel, event, reaction, encode_value(reaction), None, conn)

    def _event(
        self,
        identity: Identity,
        channel: str,
        event: ChatEvent,
        data: Any,
        data_json: str,
        message_id: str | None,
        conn: Connection | None,
    ) -> asyncio.Future[Reply]:
        self.publisher.spend(identity, conn)
        extra = None if identity.display_name is None else {"display_name": identity.display_name}
        message = NewMessage(
            message_id or self._ids.new(),
            event.action,
            data,
            data_json,
            identity.client_id,
            identity.kind,
            now_ms(),
            fresh_id=message_id is None,
            extra=extra,
            extra_json=None if extra is None else encode_value(extra),
            mentions=mentioned(data, identity.client_id) if event.action == "edit" else (),
            event=event,
        )
        return self._settle(self.committer.submit(Append(channel, [message])), _event_reply)

    # --- read state -----------------------------------------------------------------------------

    def mark_read(
        self, identity: Identity, channel: str, serial: int, conn: Connection | None = None
    ) -> asyncio.Future[Reply]:
        """Move the member's read mark forward; `{"serial", "moved"}` (a lower serial moves nothing)."""
        identity.require(channel, "subscribe")
        self.publisher.spend(identity, conn)
        op = MarkRead(channel, identity.client_id, serial, now_ms())
        return self._settle(self.committer.submit(op), _read_reply)

    async def unread(self, identity: Identity, channels: Sequence[str] | None, after: str | None) -> Reply:
        """Unread and mention counts for `channels`, or a page of the member's read marks."""
        if channels is not None:
            for name in channels:
                identity.require(name, "subscribe")
        async with self._gate:
            found, more = await self.store.unread(
                identity.client_id, channels, after, UNREAD_PAGE, self.settings.unread_count_cap
            )
        entries = [
            frames.unread_entry(
                u.channel,
                last_read=u.last_read,
                last_serial=u.last_serial,
                unread=u.unread,
                mentions=u.mentions,
                capped=u.capped,
            )
            for u in found
            # A mark in a channel the token no longer sees stays stored, unshown.
            if identity.can(u.channel, "subscribe")
        ]
        reply: Reply = {"channels": entries, "has_more": more}
        if more and found:
            reply["next"] = found[-1].channel
        return reply

    # --- the directory --------------------------------------------------------------------------

    async def rooms(self, identity: Identity, after: str | None, prefix: str | None, limit: int) -> Reply:
        """One page of the channels this token may subscribe to, by name: `rooms`, `has_more`, `next`."""
        prefixes = _narrow(identity.capabilities.prefixes_with("subscribe"), prefix)
        limit = min(limit, self.settings.directory_max_page)
        budget = self.settings.max_page_bytes
        entries: list[Reply] = []
        cursor, scanned, more = after, 0, bool(prefixes)
        while more and len(entries) < limit and scanned < DIRECTORY_SCAN_MAX:
            async with self._gate:
                batch, more = await self.store.rooms(prefixes, cursor, DIRECTORY_SCAN)
            scanned += len(batch)
            for found in batch:
                if len(entries) == limit:
                    more = True  # `found` and what follows are left for the next page
                    break
                if identity.can(found.channel, "subscribe"):
                    entry = self._entry(found, await self.members_count(found.channel))
                    size = utf8_len(encode_value(entry))
                    if entries and size > budget:
                        more = True
                        break
                    budget -= size
                    entries.append(entry)
                cursor = found.channel
        reply: Reply = {"rooms": entries, "has_more": more}
        if more and cursor is not None:
            reply["next"] = cursor
        return reply

    async def room(self, identity: Identity, channel: str) -> Reply:
        """One channel's directory entry (`40400` when the channel has neither messages nor metadata)."""
        identity.require(channel, "subscribe")
        async with self._gate:
            found = await self.store.room(channel)
        if found is None:
            raise ProtocolError(Code.NOT_FOUND, "no such room")
        return {"room": self._entry(found, await self.members_count(channel))}

    def set_room(
        self,
        identity: Identity,
        channel: str,
        title: str | None,
        topic: str | None,
        create: bool,
        conn: Connection | None = None,
    ) -> asyncio.Future[Reply]:
        """Create (`create`: refused if it exists) or update a room's title and topic; needs `manage`.
        Attached readers get a live `room` frame."""
        identity.require(channel, "manage")
        problem = room_name_problem(channel)
        if problem is not None:
            canonical = canonical_room(channel)
            details = {} if canonical is None else {"canonical": canonical}
            raise ProtocolError(Code.INVALID_VALUE, problem, **details)
        for text, what, low, high in ((title, "title", 1, MAX_TITLE), (topic, "topic", 0, MAX_TOPIC)):
            if text is not None and (problem := text_problem(text, what, low, high)):
                raise ProtocolError(Code.INVALID_VALUE, problem)
        if title is None and topic is None and not create:
            raise ProtocolError(Code.INVALID_VALUE, "give a title, a topic, or create")
        self.publisher.spend(identity, conn)
        op = PutRoom(channel, title, topic, identity.client_id, now_ms(), create)

        return asyncio.get_running_loop().create_task(self._put_room(op))

    async def _put_room(self, op: PutRoom) -> Reply:
        result = await self.committer.submit(op)
        assert isinstance(result, Room)
        if result.refusal is not None:
            raise ProtocolError(result.refusal.code, result.refusal.message, **result.refusal.details)
        entry = self._entry(result, await self.members_count(op.channel))
        live = {k: v for k, v in entry.items() if k not in ("members", "last_serial", "last_ts")}
        self.publish_live(op.channel, frames.room(live))
        return {"room": entry}

    def _entry(self, found: Room, members: int) -> Reply:
        return frames.room_entry(
            found.channel,
            title=found.title,
            topic=found.topic,
            last_serial=found.last_serial,
            last_ts=found.last_ts,
            members=members,
            updated_by=found.updated_by,
            updated_ts=found.updated_ts,
        )

    @staticmethod
    def _settle(
        committed: asyncio.Future[Outcome], reply: Callable[[Outcome], Reply]
    ) -> asyncio.Future[Reply]:
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

        def settle(fut: asyncio.Future[Outcome]) -> None:
            if done.done():
                return
            exc = fut.exception()
            if exc is not None:
                done.set_exception(exc)
                return
            try:
                done.set_result(reply(fut.result()))
            except ProtocolError as refusal:
                done.set_exception(refusal)

        committed.add_done_callback(settle)
        return done


def _event_reply(result: Outcome) -> Reply:
    assert isinstance(result, AppendResult)
    if result.refusal is not None:
        raise ProtocolError(result.refusal.code, result.refusal.message, **result.refusal.details)
    if result.unchanged:
        return {"serial": None}
    reply: Reply = {"serial": result.serials[0]}
    if result.duplicates:
        reply["duplicate"] = True
    return reply


def _read_reply(result: Outcome) -> Reply:
    assert isinstance(result, ReadMark)
    if result.refusal is not None:
        raise ProtocolError(result.refusal.code, result.refusal.message, **result.refusal.details)
    return {"serial": result.serial, "moved": result.moved}


def _narrow(prefixes: list[str], prefix: str | None) -> list[str]:
    """The token's prefixes narrowed to those under the client's `prefix`."""
    if prefix is None:
        return prefixes
    narrowed = set()
    for granted in prefixes:
        if prefix.startswith(granted):
            narrowed.add(prefix)
        elif granted.startswith(prefix):
            narrowed.add(granted)
    return sorted(narrowed)
