"""A channel's agent-room requests: claims, runs and input requests (docs/protocol.md, "Agent rooms")."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any, Literal, cast

from agentchat.claims import Claiming
from agentchat.errors import RequestError
from agentchat.events import ChannelEvent, Delivered
from agentchat.ports import ChannelView, Hub
from agentchat.requests import Asked
from agentchat.roommodels import ClaimEvent, InputAnswer, InputRequest, Policy
from agentchat.runs import Run
from agentchat_server.protocol import Code


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

    # --- input requests -----------------------------------------------------------------------

    async def ask(
        self,
        prompt: str,
        *,
        shape: dict[str, Any] | None = None,
        data: Any = None,
        deadline: int | None = None,
        run: Run | str | None = None,
        to: Sequence[str] | None = None,
        id: str | None = None,
    ) -> Asked:
        """Ask the room for input: an approval by default, or `shape` `{"kind": "choice", "options":
        [...]}`, `{"kind": "text"}`, `{"kind": "json"}`; `data` is context for whoever answers,
        `deadline` seconds (the room's `input_deadline` by default), `run` the run that waits on it
        (it goes `input_required`), `to` the only members who may answer, `id` an idempotency key.
        Attaches the channel; returns an Asked: `answer = await asked.wait()`."""
        view = self._view()
        await view.attach()
        frame: dict[str, Any] = {
            "type": "ask",
            "channel": self.name,
            "prompt": prompt,
            "id": id or uuid.uuid4().hex,
        }
        options = {"shape": shape, "data": data, "deadline": deadline, "to": list(to) if to else None}
        frame.update({k: v for k, v in options.items() if v is not None})
        if run is not None:
            frame["run_id"] = run if isinstance(run, str) else run.id
        early = _Answers(view)
        try:
            reply = await self.client.request(frame)
        finally:
            early.stop()
        request = InputRequest(
            request_id=str(reply["request_id"]),
            channel=self.name,
            prompt=prompt,
            shape=shape or {"kind": "approval"},
            deadline=int(reply.get("deadline") or 0),
            serial=reply.get("serial") if isinstance(reply.get("serial"), int) else None,
            client_id=self.client.state.client_id or "",
            data=data,
            to=tuple(to) if to else None,
            run_id=frame.get("run_id"),
        )
        return early.hand_to(Asked(view, request))

    async def answer(
        self, request_id: str, outcome: Literal["approve", "deny", "data"], data: Any = None
    ) -> int:
        """Answer an input request: `approve` or `deny` (any shape may be denied; `data` an optional
        note), or `data` with `data` fitting its shape (an option of a choice, a string, any JSON).
        Returns the answer's serial; RequestClosed when it was answered (`answer`) or expired
        already, a 40300 RequestError when it names other addressees."""
        frame: dict[str, Any] = {
            "type": "answer",
            "channel": self.name,
            "request_id": request_id,
            "outcome": outcome,
        }
        if data is not None:
            frame["data"] = data
        reply = await self.client.request(frame)
        return int(reply.get("serial") or 0)

    async def requests(
        self,
        *,
        status: Literal["pending", "closed", "any"] = "pending",
        mine: bool = False,
        after: int | None = None,
        limit: int = 50,
    ) -> list[InputRequest]:
        """Input requests of the channel in serial order after `after` (at most `limit`, read page
        by page): `pending` by default, `closed` (with their `answer`) or `any`; `mine` for this
        client's own, which is how an agent that restarted finds its answers."""
        found: list[InputRequest] = []
        while len(found) < limit:
            frame: dict[str, Any] = {
                "type": "requests",
                "channel": self.name,
                "status": status,
                "mine": mine,
                "limit": min(50, limit - len(found)),
            }
            if after is not None:
                frame["after"] = after
            reply = await self.client.request(frame)
            entries = [r for r in reply.get("requests") or [] if isinstance(r, dict)]
            page = [InputRequest.from_wire(r, self.name) for r in entries]
            found.extend(page)
            if not reply.get("has_more") or not page or page[-1].serial is None:
                break
            after = page[-1].serial
        return found

    async def pending_answer(self, request_id: str) -> Asked:
        """The Asked of this client's request `request_id`, found again (after a restart): its
        answer if it came meanwhile, else it arrives live. A 40403 RequestError if there is none."""
        view = self._view()
        early = _Answers(view)
        try:
            await view.attach()
            after = None
            while True:
                page = await self.requests(status="any", mine=True, after=after, limit=50)
                match = [r for r in page if r.request_id == request_id]
                if match:
                    return early.hand_to(Asked(view, match[0]))
                if len(page) < 50 or page[-1].serial is None:
                    raise RequestError(Code.REQUEST_NOT_FOUND, f"no request {request_id} of yours here")
                after = page[-1].serial
        finally:
            early.stop()

    def _view(self) -> ChannelView:
        # The Channel this half is mixed into is the view runs and requests need.
        return cast(ChannelView, self)


class _Answers:
    """Answers delivered while a request is on its way (before its Asked listens): kept for it."""

    def __init__(self, view: ChannelView) -> None:
        self.seen: list[InputAnswer] = []
        self.stop = view.listen(self._on_event)

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Delivered):
            answer = InputAnswer.from_message(event.message)
            if answer is not None:
                self.seen.append(answer)

    def hand_to(self, asked: Asked) -> Asked:
        for answer in self.seen:
            asked.settle(answer)
        return asked
