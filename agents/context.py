"""What a bot handler gets: the triggering message and ways to answer it exactly once."""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any, Literal

from agentchat.models import Message
from agentchat.stream import Stream

if TYPE_CHECKING:
    from agentchat.bot import Bot
    from agentchat.channel import Channel
    from agentchat.client import Client

MAX_ID = 128


def reply_id(client_id: str, channel: str, serial: int, attempt: int = 0, index: int = 0) -> str:
    """The id of a bot's answer to message `serial`: the same on every run, so the server dedupes it.

    `attempt` > 0 marks a new answer after an earlier one was aborted; `index` > 0 a handler's
    second, third … reply to the same message.
    """
    where = channel
    if len(client_id) + len(channel) + 48 > MAX_ID:
        where = hashlib.sha256(channel.encode()).hexdigest()[:16]
    value = f"{client_id}:reply:{where}:{serial}"
    if attempt:
        value += f":retry{attempt}"
    if index:
        value += f":{index + 1}"
    return value


class Context:
    """Handed to each handler call: `message`, `channel`, and `reply` / `stream` with derived ids.

    Replies carry `reply_to=message.serial` and an id derived from it (see `reply_id`), so a bot
    that runs again after a crash cannot post a second answer: the server keeps the first.
    """

    def __init__(self, bot: Bot, channel: Channel, message: Message, attempt: int) -> None:
        self.bot = bot
        self.channel = channel
        self.message = message
        self.attempt = attempt
        self.replies = 0
        self.stopped_by_cancel = False
        self._task: asyncio.Task[Any] | None = None

    @property
    def client(self) -> Client:
        """The bot's Client (for other channels or raw requests)."""
        return self.channel.client

    def next_reply_id(self) -> str:
        """The id the next reply (message or stream) of this handler call will use."""
        assert self.message.serial is not None
        me = self.client.client_id or self.bot.client_id
        return reply_id(me, self.channel.name, self.message.serial, self.attempt, self.replies)

    async def reply(self, data: Any, *, name: str = "message") -> int | None:
        """Publish an answer (reply_to the trigger, derived id); return its serial."""
        message_id = self.next_reply_id()
        self.replies += 1
        return await self.channel.publish(data, name=name, id=message_id, reply_to=self.message.serial)

    def stream(
        self,
        *,
        name: str = "message",
        meta: Any = None,
        format: Literal["text", "json"] = "text",
        coalesce: float | None = None,
    ) -> Stream:
        """A streamed answer (reply_to the trigger, derived id). Opening it raises AlreadyExistsError
        when the answer exists; the Bot treats that as done. A cancel stops the handler."""
        stream = _BotStream(
            self,
            name=name,
            reply_to=self.message.serial,
            id=self.next_reply_id(),
            meta=meta,
            format=format,
            coalesce=self.bot.coalesce if coalesce is None else coalesce,
        )
        self.replies += 1
        return stream

    def _stop_handler(self) -> None:
        # The model may be blocked awaiting its next token; cancelling the task stops it now.
        if self._task is not None and not self._task.done():
            self.stopped_by_cancel = True
            self._task.cancel()


class _BotStream(Stream):
    """A Stream that keeps the bot's presence status in step and stops the handler on cancel."""

    def __init__(self, context: Context, **options: Any) -> None:
        super().__init__(context.channel, **options)
        self._context = context
        self._counted = False
        self.on_cancel(context._stop_handler)

    async def append(self, chunk: Any) -> None:
        # "streaming" starts with the first token; until then the bot is still "thinking".
        if not self._counted and self.status == "open":
            self._counted = True
            self._context.bot._streams_changed(+1)
        await super().append(chunk)

    def _release(self) -> None:
        super()._release()
        if self._counted:
            self._counted = False
            self._context.bot._streams_changed(-1)
