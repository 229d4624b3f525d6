"""Error codes, WebSocket close codes with the client's reconnect policy, and ProtocolError.

The reconnect policy per close code is one table (`RECONNECT_POLICY`). The Python SDK reads it
from here; `web/agentchat.js` carries the same table, and `tests/vectors/reconnect.json` runs
all of them (and docs/protocol.md's table) against one set of cases, so they cannot drift.
"""

from __future__ import annotations

from typing import Any, Literal

MAX_SERIAL = 2**53 - 1


class Code:
    """Numeric error codes carried by `nack` and `error` frames and by REST error bodies."""

    BAD_REQUEST = 40000
    MALFORMED_FRAME = 40001
    INVALID_FRAME = 40002
    UNKNOWN_FRAME_TYPE = 40003
    INVALID_VALUE = 40004
    NOT_ATTACHED = 40005
    NOT_CONNECTED = 40006
    UNAUTHORIZED = 40100
    TOKEN_INVALID = 40101
    TOKEN_EXPIRED = 40102
    FORBIDDEN = 40300
    ORIGIN_FORBIDDEN = 40301
    REPLY_NOT_ALLOWED = 40302  # the room's reply policy: not addressed to you, not claimed by you
    NOT_FOUND = 40400
    STREAM_NOT_FOUND = 40401
    MESSAGE_NOT_FOUND = 40402
    REQUEST_NOT_FOUND = 40403
    RUN_NOT_FOUND = 40404
    REQUEST_TIMEOUT = 40800
    CONFLICT = 40900
    NOT_STREAM_WRITER = 40901
    ALREADY_EXISTS = 40902
    CHUNK_OUT_OF_ORDER = 40903
    MESSAGE_DELETED = 40904
    CLAIMED = 40905  # another member holds the claim (or it is done)
    CLAIM_LOST = 40906  # the fencing token is not the claim's current one
    REQUEST_CLOSED = 40907  # the input request was answered already or expired
    NOT_RUN_WRITER = 40908
    FRAME_TOO_LARGE = 41300
    MESSAGE_TOO_LARGE = 41301
    STREAM_TOO_LARGE = 41302
    RUN_STATE_TOO_LARGE = 41303
    RATE_LIMITED = 42900
    TOO_MANY_CHANNELS = 42901
    TOO_MANY_CONNECTIONS = 42902
    TOO_MANY_STREAMS = 42903
    TOO_MANY_REACTIONS = 42904
    TOO_MANY_RUNS = 42905
    TOO_MANY_REQUESTS = 42906
    LOOP_BRAKE = 42907  # too many agent turns without a human message
    INTERNAL = 50000
    UNAVAILABLE = 50300
    # Continuity reasons, carried by `connected.reason` and `attached.reason`.
    SESSION_EXPIRED = 80001
    HISTORY_LOST = 80002
    EPOCH_CHANGED = 80003


class CloseCode:
    """WebSocket close codes the server (or a client, for a dead link) uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    ABNORMAL = 1006  # no close frame: the socket dropped (never sent, only observed)
    TOO_BIG = 1009
    INTERNAL = 1011
    SERVICE_RESTART = 1012
    DEAD_LINK = 4000  # a client's own close when the server went silent
    PROTOCOL_ABUSE = 4002
    TOKEN_EXPIRED = 4003
    UNAUTHORIZED = 4004
    TOO_MANY_CONNECTIONS = 4005
    CONNECT_TIMEOUT = 4006
    SLOW_CONSUMER = 4008
    HEARTBEAT_TIMEOUT = 4009
    SESSION_TAKEN_OVER = 4010


Reconnect = Literal["resume", "renew", "stop"]
"""What a client does after a close: `resume` reconnects with backoff and resumes its session;
`renew` gets a fresh token first, then resumes (or stops if it has no way to get one); `stop`
ends the client, because reconnecting cannot help."""

RECONNECT_POLICY: dict[int, tuple[Reconnect, str]] = {
    CloseCode.NORMAL: ("stop", "normal close"),
    CloseCode.GOING_AWAY: ("resume", "server shutting down or restarting"),
    CloseCode.ABNORMAL: ("resume", "connection dropped without a close frame"),
    CloseCode.TOO_BIG: ("stop", "a frame above the hard limit (max_ws_message): fix the client"),
    CloseCode.INTERNAL: ("resume", "internal error"),
    CloseCode.SERVICE_RESTART: ("resume", "service restarting"),
    CloseCode.DEAD_LINK: ("resume", "the client closed a silent connection"),
    CloseCode.PROTOCOL_ABUSE: ("stop", "too many bad frames: fix the client"),
    CloseCode.TOKEN_EXPIRED: ("renew", "token expired: get a new token, then resume"),
    CloseCode.UNAUTHORIZED: ("stop", "connect missing or token invalid"),
    CloseCode.TOO_MANY_CONNECTIONS: ("stop", "too many connections for this client_id"),
    CloseCode.CONNECT_TIMEOUT: ("resume", "no connect frame in time"),
    CloseCode.SLOW_CONSUMER: ("resume", "slow consumer: resume from the position, nothing is lost"),
    CloseCode.HEARTBEAT_TIMEOUT: ("resume", "no frame from the client in 2 heartbeat intervals"),
    CloseCode.SESSION_TAKEN_OVER: ("stop", "a newer connection resumed this session"),
}
DEFAULT_RECONNECT: Reconnect = "resume"  # any code not in the table, including none at all


def reconnect_policy(code: int | None) -> Reconnect:
    """The client's action after a close with `code` (None: the socket dropped without one)."""
    if code is None:
        return DEFAULT_RECONNECT
    entry = RECONNECT_POLICY.get(code)
    return DEFAULT_RECONNECT if entry is None else entry[0]


class ProtocolError(Exception):
    """A client's frame or request was refused; carries the wire code and a safe message."""

    def __init__(self, code: int, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
