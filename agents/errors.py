"""Exceptions the SDK raises: refused requests, lost continuity, ended streams, a closed client."""

from __future__ import annotations

from typing import Any

from agentchat_server.protocol import Code


class AgentChatError(Exception):
    """Base of every SDK error."""


class RequestError(AgentChatError):
    """The server refused a request with a `nack`; `code` is the wire code, `details` its extra fields."""

    def __init__(self, code: int, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}
        # True when the request was sent again after a reconnect: an "exists" reply may be our own.
        self.resent = False


class ConflictError(RequestError):
    """`if_serial` did not match: the channel moved on to `last_serial`."""

    @property
    def last_serial(self) -> int | None:
        """The channel's last serial when the publish was refused (publish again after it)."""
        value = self.details.get("last_serial")
        return value if isinstance(value, int) else None


class AlreadyExistsError(RequestError):
    """A message (`serial`) or an open stream (`stream_id`) with this id exists: do not answer again."""

    @property
    def serial(self) -> int | None:
        """The serial of the message that has this id, when one exists."""
        value = self.details.get("serial")
        return value if isinstance(value, int) else None

    @property
    def stream_id(self) -> str | None:
        """The open stream that has this id, when one is open."""
        value = self.details.get("stream_id")
        return value if isinstance(value, str) else None


class RateLimitedError(RequestError):
    """Too many publishes; retry after `retry_after` seconds."""

    @property
    def retry_after(self) -> float:
        """Seconds to wait before publishing again (1 when the server did not say)."""
        value = self.details.get("retry_after")
        return float(value) if isinstance(value, int | float) else 1.0


class MessageNotFound(RequestError):
    """`40402`: the serial of an edit, delete, reaction or thread root is no message of the channel
    (missing, removed by retention, or an event)."""

    @property
    def serial(self) -> int | None:
        """The serial that is not a message, when the server named it."""
        value = self.details.get("serial")
        return value if isinstance(value, int) else None


class MessageDeleted(RequestError):
    """`40904`: the message was deleted; it takes no edits and no reactions."""


class TooManyReactions(RequestError):
    """`42904`: the message holds as many distinct reactions, or reacting members, as it may."""


class ClaimHeld(RequestError):
    """`40905`: another member holds the message's claim (or answered it: `state` done)."""

    @property
    def holder(self) -> str | None:
        """The client id holding (or that answered) the claim, when the server named it."""
        value = self.details.get("holder")
        return value if isinstance(value, str) else None


class ClaimLost(RequestError):
    """`40906`: the fencing token is not the claim's current one (the lease lapsed or was released):
    claim again before replying."""


class NotAddressed(RequestError):
    """`40302`: the room's reply policy is `addressed` and the message was neither addressed to this
    agent nor claimed by it."""


class LoopBrake(RequestError):
    """`42907`: too many agent turns without a human message; wait for a person to speak."""

    @property
    def budget(self) -> int | None:
        """The room's `loop_budget` of agent turns."""
        value = self.details.get("budget")
        return value if isinstance(value, int) else None


class RequestClosed(RequestError):
    """`40907`: the input request was answered already (`answer`) or expired (`status`)."""

    @property
    def answer(self) -> dict[str, Any] | None:
        """The answer that closed the request, when the server gave it."""
        value = self.details.get("answer")
        return value if isinstance(value, dict) else None


def request_error(frame: dict[str, Any]) -> RequestError:
    """Build the most specific RequestError for a `nack` or `error` frame."""
    code = int(frame.get("code", Code.INTERNAL))
    message = str(frame.get("message", ""))
    details = {k: v for k, v in frame.items() if k not in ("type", "ref", "code", "message")}
    cls: type[RequestError] = {
        Code.CONFLICT: ConflictError,
        Code.ALREADY_EXISTS: AlreadyExistsError,
        Code.RATE_LIMITED: RateLimitedError,
        Code.MESSAGE_NOT_FOUND: MessageNotFound,
        Code.MESSAGE_DELETED: MessageDeleted,
        Code.TOO_MANY_REACTIONS: TooManyReactions,
        Code.CLAIMED: ClaimHeld,
        Code.CLAIM_LOST: ClaimLost,
        Code.REPLY_NOT_ALLOWED: NotAddressed,
        Code.LOOP_BRAKE: LoopBrake,
        Code.REQUEST_CLOSED: RequestClosed,
    }.get(code, RequestError)
    return cls(code, message, details)


class ConnectionClosed(AgentChatError):
    """The client stopped for good: closed by the user, or by the server with a code that forbids retry."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed ({code}): {reason}" if code else f"connection closed: {reason}")
        self.code = code
        self.reason = reason


class ServerUnavailable(AgentChatError, TimeoutError):
    """No agentchat server answered at the URL within the time given to wait for one."""

    def __init__(self, url: str, waited: float) -> None:
        super().__init__(f"no agentchat server answered at {url} within {waited:g} s")
        self.url = url
        self.waited = waited


class DevModeOff(AgentChatError):
    """The server does not mint development tokens (it was not started with `--dev`)."""


class LinkGone(AgentChatError):
    """The connection a request was sent on ended before its reply, and the request is not one that
    is sent again after a reconnect (attach, detach, auth, ephemeral publishes)."""

    def __init__(self, message: str = "the connection ended before the reply") -> None:
        super().__init__(message)


class TooManyPending(AgentChatError):
    """More requests wait for replies (or for a connection) than the client's `max_pending` bound."""


class ContinuityLost(AgentChatError):
    """Raised by a subscription when messages may have been missed (retention, epoch change).

    Delivery continues live after `position`; reload history to fill the view, then keep iterating
    the same subscription.
    """

    def __init__(self, channel: str, code: int, reason: str, position: Any) -> None:
        super().__init__(f"continuity lost in {channel} ({code}): {reason}")
        self.channel = channel
        self.code = code
        self.reason = reason
        self.position = position


class StreamCancelled(AgentChatError):
    """The stream was cancelled (by a member with `cancel`); the writer should stop producing."""

    def __init__(self, stream_id: str, by: str | None) -> None:
        super().__init__(f"stream {stream_id} cancelled by {by or 'unknown'}")
        self.stream_id = stream_id
        self.by = by


class RunCancelled(AgentChatError):
    """A member cancelled the run this client writes (`by`); its lanes are over. The run's
    `async with` block swallows it."""

    def __init__(self, run_id: str, by: str | None) -> None:
        super().__init__(f"run {run_id} cancelled by {by or 'unknown'}")
        self.run_id = run_id
        self.by = by


class StreamLost(AgentChatError):
    """The stream cannot be continued (its session expired or the server ended it as aborted)."""
