"""Ids of a bot's answers: the same for the bot on every run, not guessable by anyone else.

An answer's id is `r_` + HMAC-SHA256(secret, channel, serial, attempt, index), hex, 32 digits. The
server stores an id once, so a restarted bot that computes the same id cannot post a second
answer; a member without the secret cannot compute it, so cannot take the id first and silence
the answer. Where the secret comes from, first found wins:

1. `Bot(reply_secret=...)`;
2. the AGENTCHAT_REPLY_SECRET environment variable;
3. derived from the API key the bot mints its tokens with (`agentchat bot --keys`, the demo):
   HMAC-SHA256(key secret, "agentchat reply ids" + client_id), one-way, so it reveals nothing of
   the key; rotating the key changes the ids;
4. otherwise random for this run: a restarted bot's ids differ, so only its catch-up scan (which
   skips messages it has answered) keeps it from answering twice, not the server's id check.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Mapping

SECRET_ENV = "AGENTCHAT_REPLY_SECRET"
ID_DIGITS = 32


def reply_id(secret: bytes, channel: str, serial: int, attempt: int = 0, index: int = 0) -> str:
    """The id of the answer to message `serial` of `channel`.

    `attempt` > 0 marks a new answer after an earlier one was aborted; `index` > 0 a handler's
    second, third … reply to the same message.
    """
    text = f"{channel}\n{serial}\n{attempt}\n{index}".encode()
    return "r_" + hmac.new(secret, text, hashlib.sha256).hexdigest()[:ID_DIGITS]


def secret_from_key(key: str, client_id: str) -> bytes:
    """A reply secret for `client_id` derived from an API key ("name:secret")."""
    _, sep, value = key.partition(":")
    if not sep or not value:
        raise ValueError("an API key is 'name:secret'")
    return hmac.new(value.encode(), b"agentchat reply ids\n" + client_id.encode(), hashlib.sha256).digest()


def configured_secret(explicit: str | bytes | None, environ: Mapping[str, str] | None = None) -> bytes | None:
    """The secret given explicitly or in AGENTCHAT_REPLY_SECRET, as bytes; None when neither is set."""
    if explicit is None:
        explicit = (os.environ if environ is None else environ).get(SECRET_ENV) or None
    if explicit is None:
        return None
    return explicit.encode() if isinstance(explicit, str) else explicit


def random_secret() -> bytes:
    """A secret for one run only (see the module docstring for what that costs)."""
    return secrets.token_bytes(32)
