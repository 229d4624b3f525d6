"""Waiting for the answer to an input request this client asked: live, on replay, or after a restart."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agentchat.events import ChannelEvent, Delivered
from agentchat.ports import ChannelView
from agentchat.roommodels import InputAnswer, InputRequest


class Asked:
    """An input request this client asked (`channel.ask`) or looks for again after a restart
    (`channel.pending_answer`): `await asked.wait()` returns its InputAnswer.

    The channel stays attached, so the answer (addressed to the asker) arrives live, or on replay
    after a reconnect; a request that closed while no one listened is found by listing it.
    """

    def __init__(self, channel: ChannelView, request: InputRequest) -> None:
        self.channel = channel
        self.request = request
        self.answer: InputAnswer | None = request.answer
        self._answered = asyncio.Event()
        self._unlisten: Callable[[], None] | None = None
        if self.answer is not None:
            self._answered.set()
        else:
            self._unlisten = channel.listen(self._on_event)

    def __repr__(self) -> str:
        return f"<Asked {self.request_id} answer={self.answer}>"

    @property
    def request_id(self) -> str:
        """The request's id (answer it with `channel.answer(request_id, ...)`)."""
        return self.request.request_id

    @property
    def done(self) -> bool:
        """True once the request is answered or expired."""
        return self.answer is not None

    async def wait(self) -> InputAnswer:
        """The answer, once given (its `outcome` is `expired` when the deadline passed first)."""
        await self._answered.wait()
        assert self.answer is not None
        return self.answer

    def settle(self, answer: InputAnswer) -> None:
        """Take `answer` as the request's (from a listing that found it closed)."""
        if self.answer is None and answer.request_id == self.request_id:
            self.answer = answer
            self._answered.set()
            self.close()

    def close(self) -> None:
        """Stop listening for the answer."""
        if self._unlisten is not None:
            self._unlisten()
            self._unlisten = None

    def _on_event(self, event: ChannelEvent) -> None:
        if isinstance(event, Delivered):
            answer = InputAnswer.from_message(event.message)
            if answer is not None:
                self.settle(answer)
