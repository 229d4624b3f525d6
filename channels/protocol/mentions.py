"""The mention rule, in one place for the server and the SDK: which members a message names.

Rules:
- A message that carries an addressee list (`to`, agent rooms) names exactly those client ids.
- Otherwise it names every `@client_id` in its text: `data` when it is a string, else
  `data["text"]` when that is a string. The `@` must not follow a word character or another `@`
  (so `ana@example.com` names nobody), and a trailing `.` is not part of the name.
- The author never mentions itself, and at most `MAX_MENTIONS` distinct members are named (the
  first ones in the text), so one message cannot fan out into unbounded mention rows.
The SDK's `Message.mentions` and the server's unread mention counts both use this function.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9][A-Za-z0-9_\-.@]{0,63})")
MAX_MENTIONS = 50


def text_of(data: Any) -> str:
    """The text of a message's data: the string itself, or `data["text"]`, else ''."""
    if isinstance(data, str):
        return data
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    return ""


def mentioned(data: Any, author: str, to: Sequence[str] | None = None) -> tuple[str, ...]:
    """The client ids a message by `author` names, in order of first appearance, without the author."""
    if to is not None:
        names: Sequence[str] = to
    else:
        text = text_of(data)
        # Most messages name nobody: one C-level scan for the `@` every mention needs skips the
        # regex, whose leading lookbehind makes it test every position of the text.
        if "@" not in text:
            return ()
        names = [name.rstrip(".") for name in MENTION.findall(text)]
    found: dict[str, None] = {}
    for name in names:
        if name and name != author and name not in found:
            found[name] = None
            if len(found) == MAX_MENTIONS:
                break
    return tuple(found)
