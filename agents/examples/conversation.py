"""Two agents in conversation, taking turns with `if_serial`: each speaks only right after the other."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence

from agentchat.channel import Channel
from agentchat.client import Client
from agentchat.errors import ConflictError
from agentchat.models import Message

QUESTIONS = (
    "What should we build first?",
    "Why that one?",
    "What could go wrong?",
)
ANSWERS = (
    "The smallest thing a user can try end to end.",
    "Because real use teaches us more than any plan.",
    "We could polish the wrong thing; so we ship early and listen.",
)


async def speak_when_my_turn(room: Channel, text: str, after: int, message_id: str) -> int:
    """Publish `text` only if the channel's last serial is `after` (my turn). If someone else spoke
    meanwhile, `if_serial` refuses; the turn is still mine, so try again after what they said."""
    while True:
        try:
            serial = await room.publish(text, name="chat", id=message_id, if_serial=after)
            assert serial is not None
            return serial
        except ConflictError as conflict:
            assert conflict.last_serial is not None
            after = conflict.last_serial


async def _agent(
    client: Client, channel: str, lines: Sequence[str], partner: str, *, opens: bool, run: str
) -> None:
    room = client.channel(channel)
    subscription = room.subscribe()
    await subscription.start()
    last = subscription.last_serial or 0
    for turn, line in enumerate(lines):
        if turn > 0 or not opens:
            async for message in subscription:
                if message.client_id == partner:
                    last = message.serial or last
                    break
        await speak_when_my_turn(room, line, last, f"{client.client_id}:{run}:{turn}")


async def run_conversation(
    url: str,
    mint: Callable[[str, str], str],
    channel: str = "room:lobby",
    questions: Sequence[str] = QUESTIONS,
    answers: Sequence[str] = ANSWERS,
) -> list[Message]:
    """Run "asker" and "answerer" through their lines; return the conversation in serial order."""
    run = uuid.uuid4().hex[:8]
    async with (
        Client(url, token_provider=lambda: mint("asker", "agent")) as asker,
        Client(url, token_provider=lambda: mint("answerer", "agent")) as answerer,
    ):
        start = (await asker.channel(channel).history(limit=1)).messages
        after = start[0].serial if start else 0
        async with asyncio.TaskGroup() as group:
            group.create_task(_agent(answerer, channel, answers, "asker", opens=False, run=run))
            await answerer.channel(channel).attach()
            group.create_task(_agent(asker, channel, questions, "answerer", opens=True, run=run))
        page = await asker.channel(channel).history(after=after, direction="forwards", limit=100)
        return [m for m in page.messages if m.client_id in ("asker", "answerer")]
