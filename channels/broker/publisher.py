"""Publishing: rights, rate limits and sizes checked, then a live fan-out (ephemeral) or a commit (durable).

Sizes are bytes of the larger wire format, never characters. Ids are the publisher's idempotency
keys, scoped to its client id (another member cannot take them); ids the server makes are 128
random bits. Durable publishes carry the agent-room rules of their channel (`broker.rooms`).
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import RoomRules, wire_fields
from agentchat_server.core.ratelimit import KeyedBuckets, TokenBucket
from agentchat_server.core.records import NewMessage
from agentchat_server.metrics import Metrics
from agentchat_server.protocol import Code, OutgoingMessage, ProtocolError, encode_value, encoded_size
from agentchat_server.protocol import server as frames
from agentchat_server.protocol.mentions import mentioned
from agentchat_server.settings import Settings
from agentchat_server.store import Append, AppendResult, Outcome, RoomWrite

PublishLive = Callable[..., None]
Reply = dict[str, Any]


class Publisher:
    """Accepts publishes from connections (WebSocket) and requests (REST)."""

    def __init__(
        self,
        settings: Settings,
        committer: Committer,
        publish_live: PublishLive,
        metrics: Metrics,
        rules: RoomRules,
    ) -> None:
        self.settings = settings
        self.committer = committer
        self.publish_live = publish_live
        self.metrics = metrics
        self.rules = rules
        self._ids = RandomIds()
        self._rest = KeyedBuckets(settings.rest_publish_rate, settings.rest_publish_burst)

    def publish(
        self,
        identity: Identity,
        channel: str,
        messages: Sequence[OutgoingMessage],
        if_serial: int | None,
        conn: Connection | None = None,
    ) -> asyncio.Future[Reply]:
        """Check rights, limits and sizes, then fan out (ephemeral) or queue for commit (durable).

        The future gives the ack fields (`serials`, `duplicates`) once the messages are committed
        (at once for ephemeral ones), or fails with ProtocolError (an `if_serial` conflict)."""
        identity.require(channel, "publish")
        self.spend(identity, conn)
        prepared = self._prepare(identity, messages)
        done: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        if messages[0].ephemeral:
            for m, sent in zip(prepared, messages, strict=True):
                frame = frames.ephemeral_message(
                    channel,
                    name=m.name,
                    data=m.data,
                    client_id=m.client_id,
                    kind=m.kind,
                    ts=m.ts,
                    message_id=sent.id,  # live-only: nothing to dedupe, so no server-made id
                    reply_to=m.reply_to,
                    extra=m.extra,
                    thread=m.thread,
                )
                self.publish_live(channel, frame)
            self.metrics.publishes_ephemeral.inc(len(prepared))
            done.set_result({"serials": [None] * len(prepared), "duplicates": []})
            return done
        room = self._room(identity, channel, messages, conn)
        self.metrics.publishes_durable.inc(len(prepared))
        self.committer.submit(Append(channel, prepared, if_serial, room)).add_done_callback(
            lambda fut: self._settle(fut, done)
        )
        return done

    def _room(
        self, identity: Identity, channel: str, messages: Sequence[OutgoingMessage], conn: Connection | None
    ) -> RoomWrite | None:
        first = messages[0]  # claim and run_id come on one-message publishes only
        if identity.kind != "agent" and first.claim is None and first.run_id is None:
            return None  # people are held to no room rule; the Store resets the brake when they speak
        if first.run_id is not None:
            if conn is None or conn.session_id is None:
                raise ProtocolError(
                    Code.NOT_RUN_WRITER, "a run's messages come from the connection writing it"
                )
            return self.rules.write(
                identity, channel, turn=False, run_id=first.run_id, session=conn.session_id
            )
        return self.rules.write(
            identity,
            channel,
            turn=True,
            replies=[m.reply_to for m in messages],
            token=first.claim,
            finish=None if first.claim is None else "done",
        )

    def _settle(self, committed: asyncio.Future[Outcome], done: asyncio.Future[Reply]) -> None:
        if done.done():
            return
        exc = committed.exception()
        if exc is not None:
            done.set_exception(exc)
            return
        result = committed.result()
        assert isinstance(result, AppendResult)
        try:
            self.rules.settle(result)
        except ProtocolError as refusal:
            done.set_exception(refusal)
            return
        if result.conflict is not None:
            done.set_exception(
                ProtocolError(Code.CONFLICT, "channel moved on (if_serial)", last_serial=result.conflict)
            )
        else:
            done.set_result({"serials": result.serials, "duplicates": result.duplicates})

    def spend(self, identity: Identity, conn: Connection | None) -> None:
        """Take one publish from the rate budget (the connection's, or the client id's over REST):
        42900 with `retry_after` when it is spent. Edits, deletes, reactions, read marks, claims,
        runs and input requests pay like publishes."""
        now = time.monotonic()
        s = self.settings
        if conn is not None:
            bucket = conn.publish_bucket
            if bucket is None:
                bucket = conn.publish_bucket = TokenBucket(s.publish_rate, s.publish_burst, now)
            wait = 0.0 if bucket.take(now) else bucket.retry_after()
        else:
            wait = self._rest.take(identity.client_id, now)
        if wait:
            raise ProtocolError(Code.RATE_LIMITED, "publish rate exceeded", retry_after=round(wait, 3))

    def _prepare(self, identity: Identity, messages: Sequence[OutgoingMessage]) -> list[NewMessage]:
        """Validate sizes and ids, stamp sender and time; raises ProtocolError."""
        ts = now_ms()
        prepared: list[NewMessage] = []
        seen: set[str] = set()
        limit = self.settings.max_message_bytes
        extra: dict[str, Any] | None = None
        extra_json: str | None = None
        if identity.display_name is not None:
            extra = {"display_name": identity.display_name}
            extra_json = encode_value(extra)
        for m in messages:
            room = wire_fields(
                to=m.to,
                run_id=m.run_id,
                lane=m.lane,
                tool_call=None if m.tool_call is None else m.tool_call.model_dump(exclude_none=True),
            )
            m_extra, m_extra_json = extra, extra_json
            if room is not None:
                m_extra = {**(extra or {}), **room}
                m_extra_json = encode_value(m_extra)
            data_json = encode_value(m.data)
            if encoded_size(m.data, data_json, limit) > limit:
                raise ProtocolError(
                    Code.MESSAGE_TOO_LARGE, f"message data exceeds {limit} bytes", limit=limit
                )
            message_id = m.id or self._ids.new()
            if message_id in seen:
                raise ProtocolError(Code.INVALID_VALUE, "two messages of one batch share an id")
            seen.add(message_id)
            prepared.append(
                NewMessage(
                    message_id,
                    m.name,
                    m.data,
                    data_json,
                    identity.client_id,
                    identity.kind,
                    ts,
                    m.reply_to,
                    fresh_id=m.id is None,  # 128 random bits: cannot collide with a stored id
                    extra=m_extra,
                    extra_json=m_extra_json,
                    thread=m.thread,
                    mentions=mentioned(m.data, identity.client_id, m.to),
                )
            )
        return prepared


class RandomIds:
    """Server-made message ids: 128 unpredictable bits each, from one os.urandom call per 256 ids
    (a syscall per id was a tenth of a durable publish's CPU)."""

    __slots__ = ("_pool", "_used")

    def __init__(self) -> None:
        self._pool = b""
        self._used = 0

    def new(self) -> str:
        """A fresh id: `m_` and 22 url-safe base64 characters."""
        if self._used >= len(self._pool):
            self._pool, self._used = os.urandom(16 * 256), 0
        start = self._used
        self._used = start + 16
        return "m_" + base64.urlsafe_b64encode(self._pool[start : start + 16]).rstrip(b"=").decode()
