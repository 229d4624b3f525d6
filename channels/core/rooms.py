"""Rooms: the canonical form of room names, and what a room's title and topic may hold.

Rules:
- Channel names are case-sensitive on the wire. In the `room:` namespace the canonical form is
  lowercase: `room:` then `[a-z0-9]` then up to 194 of `[a-z0-9_.@-]` (no second `:`). What a
  person typed ("Design Review") is the room's *title*, kept as metadata; the channel is its slug
  (`room:design-review`, the web app's rule). Creating or describing a `room:` channel whose name
  is not canonical is refused (`40004`) with the canonical name when one exists.
- Other namespaces keep their names as they are (`support:Queue-1`).
- A title has 1-100 characters, a topic 0-500, in any script, without control or formatting
  characters (bidi overrides included; the joiners emoji need are fine) and without surrounding
  spaces.
"""

from __future__ import annotations

import re
import unicodedata

ROOM_NAMESPACE = "room:"
_ROOM = re.compile(r"room:[a-z0-9][a-z0-9_.@\-]{0,194}")
MAX_TITLE = 100
MAX_TOPIC = 500


def is_room(channel: str) -> bool:
    """True for channels of the `room:` namespace, where the canonical-name rule holds."""
    return channel.startswith(ROOM_NAMESPACE)


def canonical_room(channel: str) -> str | None:
    """The canonical form of a `room:` channel name (lowercased), or None if it has none."""
    lowered = channel.lower()
    return lowered if _ROOM.fullmatch(lowered) else None


def room_name_problem(channel: str) -> str | None:
    """Why `channel` cannot be described as a room, or None (non-room namespaces always can)."""
    if not is_room(channel) or _ROOM.fullmatch(channel):
        return None
    return "room names are lowercase: room: then a-z 0-9 and _ . @ - (the title keeps the typed form)"


def text_problem(text: str, what: str, low: int, high: int) -> str | None:
    """Why `text` cannot be a title or topic, or None."""
    if not low <= len(text) <= high or text != text.strip():
        return f"a {what} has {low} to {high} characters, without surrounding spaces"
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Co", "Cn", "Zl", "Zp") or (
            category == "Cf" and char not in "\u200c\u200d"
        ):
            return f"a {what} cannot hold control or formatting characters"
    return None
