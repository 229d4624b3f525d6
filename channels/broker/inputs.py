"""Input requests (approvals and questions): an agent asks, a member answers, a deadline expires them.

A request is a durable record in its channel (`agentchat.input_request`) and a row; its answer is
another record (`agentchat.input_answer`) addressed to the asker and replying to the request, so
it reaches the asker live, on replay after a reconnect, and through `requests` after a restart.
The first answer wins (compare-and-set in the commit); a run that asked shows `input_required`
until its requests close.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from agentchat_server.auth import Identity
from agentchat_server.broker.committer import Committer
from agentchat_server.broker.connections import Connection
from agentchat_server.broker.members import now_ms
from agentchat_server.broker.rooms import RoomRules, refused, wire_fields
from agentchat_server.broker.run_records import appended
from agentchat_server.core.agentrooms import SERVER_CLIENT_ID
from agentchat_server.core.inputs import RequestRecord, check_answer, may_answer
from agentchat_server.core.records import NewMessage
from agentchat_server.protocol import (
    AnswerBody,
    AskFrame,
    Code,
    ProtocolError,
    encode_value,
    encoded_size,
    utf8_len,
)
from agentchat_server.settings import Settings
from agentchat_server.store import Append, AskInput, CloseInput, Store

Spend = Callable[[Identity, Connection | None], None]
REQUEST_RECORD = "agentchat.input_request"
ANSWER_RECORD = "agentchat.input_answer"
PAGE_OVERHEAD = 256  # bytes a listed request adds to its prompt, data and answer


class _System:
    """The sender of records the server writes itself (expiries)."""

    client_id = SERVER_CLIENT_ID
    kind = "system"


class Inputs:
    """Input requests: ask, answer, list, expire."""

    def __init__(
        self, settings: Settings, store: Store, committer: Committer, rules: RoomRules, spend: Spend
    ) -> None:
        self.settings = settings
        self.store = store
        self.committer = committer
        self.rules = rules
        self.spend = spend

    async def ask(self, conn: Connection, frame: AskFrame) -> dict[str, Any]:
        """Record a request (and make its run wait for input); the reply has its id and deadline."""
        identity = conn.identity
        identity.require(frame.channel, "publish")
        self.spend(identity, conn)
        now = now_ms()
        policy = self.settings.policy(frame.channel)
        deadline = now + 1000 * (frame.deadline or policy.input_deadline)
        shape = frame.shape.model_dump()
        data: dict[str, Any] = {"prompt": frame.prompt, "shape": shape, "deadline": deadline}
        if frame.data is not None:
            data["data"] = frame.data
        request_id = "q_" + secrets.token_urlsafe(12)
        extra = wire_fields(
            request_id=request_id, run_id=frame.run_id, to=frame.to, display_name=identity.display_name
        )
        message = self._record(identity, frame.id or request_id, REQUEST_RECORD, data, None, extra, now)
        request = RequestRecord(
            request_id,
            frame.channel,
            0,
            identity.client_id,
            now,
            frame.prompt,
            shape,
            deadline,
            frame.data,
            frame.to,
            frame.run_id,
        )
        effect = AskInput(request, self.settings.max_requests_per_channel)
        write = self.rules.write(
            identity, frame.channel, turn=False, run_id=frame.run_id, session=conn.session_id, effect=effect
        )
        result = self.rules.settle(
            appended(await self.committer.submit(Append(frame.channel, [message], room=write)))
        )
        made = result.request
        if made is None:
            raise ProtocolError(Code.UNAVAILABLE, "the request's record is gone (retention)")
        return {"request_id": made.request_id, "serial": made.serial, "deadline": made.deadline}

    async def answer(
        self, identity: Identity, conn: Connection | None, channel: str, request_id: str, body: AnswerBody
    ) -> dict[str, Any]:
        """Answer a pending request (the first answer wins); replies with the answer's serial."""
        identity.require(channel, "answer")
        self.spend(identity, conn)
        request = await self.store.request(request_id)
        if request is None or request.channel != channel:
            raise ProtocolError(Code.REQUEST_NOT_FOUND, "input request not found")
        problem = may_answer(request, identity.client_id) or check_answer(
            request.shape, body.outcome, body.data
        )
        if problem is not None:
            raise refused(problem)
        now = now_ms()
        data: dict[str, Any] = {"outcome": body.outcome}
        if body.data is not None:
            data["data"] = body.data
        answer = {**data, "client_id": identity.client_id, "ts": now}
        message = self._answer_record(identity, request, data, identity.display_name, now)
        write = self.rules.write(
            identity, channel, turn=False, effect=CloseInput(request_id, "answered", answer)
        )
        result = self.rules.settle(
            appended(await self.committer.submit(Append(channel, [message], room=write)))
        )
        return {"serial": result.serials[0]}

    async def expire(self, request: RequestRecord) -> None:
        """Close a request whose deadline passed: an `expired` answer from the server reaches the asker."""
        now = now_ms()
        data = {"outcome": "expired"}
        message = self._answer_record(
            _System(),
            request,
            data,
            None,
            now,
            message_id=f"expired:{request.request_id}:{secrets.token_hex(6)}",
        )
        write = self.rules.write(
            _System(),
            request.channel,
            turn=False,
            effect=CloseInput(request.request_id, "expired", {**data, "ts": now}),
        )
        result = appended(await self.committer.submit(Append(request.channel, [message], room=write)))
        self.rules.announce(result)

    async def page(
        self, identity: Identity, channel: str, *, mine: bool, status: str, after: int | None, limit: int
    ) -> dict[str, Any]:
        """One page of the channel's requests (`requests`, `has_more`), cut by count and bytes."""
        identity.require(channel, "history")
        found, more = await self.store.requests(
            channel, asker=identity.client_id if mine else None, status=status, after=after, limit=limit
        )
        listed: list[dict[str, Any]] = []
        size = 0
        for request in found:
            wire = request.wire()
            size += utf8_len(encode_value(wire)) + PAGE_OVERHEAD
            if listed and size > self.settings.max_page_bytes:
                more = True
                break
            listed.append(wire)
        return {"requests": listed, "has_more": more}

    def _answer_record(
        self,
        writer: Any,
        request: RequestRecord,
        data: dict[str, Any],
        display_name: str | None,
        now: int,
        message_id: str | None = None,
    ) -> NewMessage:
        extra = wire_fields(
            request_id=request.request_id,
            run_id=request.run_id,
            to=[request.client_id],
            display_name=display_name,
        )
        return self._record(
            writer,
            message_id or "a_" + secrets.token_urlsafe(12),
            ANSWER_RECORD,
            data,
            request.serial,
            extra,
            now,
        )

    def _record(
        self,
        writer: Any,
        message_id: str,
        name: str,
        data: dict[str, Any],
        reply_to: int | None,
        extra: dict[str, Any] | None,
        now: int,
    ) -> NewMessage:
        data_json = encode_value(data)
        limit = self.settings.max_message_bytes
        if encoded_size(data, data_json, limit) > limit:
            raise ProtocolError(
                Code.MESSAGE_TOO_LARGE, f"the record's data exceeds {limit} bytes", limit=limit
            )
        return NewMessage(
            message_id,
            name,
            data,
            data_json,
            writer.client_id,
            writer.kind,
            now,
            reply_to,
            extra=extra,
            extra_json=None if extra is None else encode_value(extra),
        )
