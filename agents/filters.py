"""Which messages a bot handler takes: messages or events (edit, delete, reactions), addressing
(@mentions), sender kind, channel, event name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from agentchat.models import Message

Addressed = Literal["any", "me", "me_or_nobody"]

MESSAGES: frozenset[str | None] = frozenset({None})
"""`Filter.actions` of `on_message` handlers: messages only, never events."""
EDITS: frozenset[str | None] = frozenset({"edit"})
DELETES: frozenset[str | None] = frozenset({"delete"})
REACTIONS: frozenset[str | None] = frozenset({"react", "unreact"})
ROOM_RECORDS = "agentchat."
"""Names of the room's own records (run starts and ends, input requests and answers, the loop
brake's notice): no handler takes them unless it names them in `names`."""


@dataclass(frozen=True, slots=True)
class Filter:
    """Which messages a handler takes. The bot's own messages never match.

    `actions` says which kind: messages (`None`, the default) or events (`edit`, `delete`, `react`,
    `unreact`), so a handler for messages never sees an edit or a reaction. The room's records
    (`agentchat.*`: a person's answer to an input request, run records) match only by `names`.
    """

    addressed: Addressed = "any"
    kinds: frozenset[str] | None = None
    channel: str | None = None
    names: frozenset[str] | None = None
    when: Callable[[Message], bool] | None = None
    actions: frozenset[str | None] = MESSAGES

    def matches(self, message: Message, me: str) -> bool:
        """True when a bot whose client_id is `me` should hand `message` to this filter's handler."""
        if message.client_id == me or message.serial is None or message.action not in self.actions:
            return False
        if self.addressed == "me" and me not in message.mentions:
            return False
        if self.addressed == "me_or_nobody" and message.mentions and me not in message.mentions:
            return False
        if self.kinds is not None and message.kind not in self.kinds:
            return False
        if self.channel is not None and not fnmatch.fnmatchcase(message.channel, self.channel):
            return False
        if self.names is not None and message.name not in self.names:
            return False
        if self.names is None and message.name.startswith(ROOM_RECORDS):
            return False
        return self.when is None or self.when(message)
