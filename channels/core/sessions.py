"""Sessions, positions and liveness as pure decisions: resume, attach start, drop timers, connection checks.

Rules:
- A session resumes only with its secret key and for the same client_id; anything else gets a new
  session and the reason `80001`.
- A connection that ends gracefully (close 1000), or one that cannot resume (SSE), or any
  connection while the server shuts down, ends its session at once. Otherwise the session
  waits: its presence leaves after `presence_grace`, its streams end after `stream_grace`, and the
  session itself is forgotten after `resume_window`, each unless it resumes first.
- An attach without a position starts live at the channel's head. With a position it continues
  after that serial, unless the epoch differs (`80003`), the position is ahead of the head
  (`80003`: the reader saw a channel that no longer exists), or history after it is gone
  (`80002`); then it starts live at the head and says why.
- A connection is checked once per sweep period: gone transports close, expired tokens close
  (4003), a renewal notice goes out at `renew_at` (30 s before expiry, or half-way through the
  life of a shorter token), a client silent for two heartbeat intervals is closed (4009), and a
  server silent for one interval sends a heartbeat.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import Enum

from agentchat_server.protocol import Code

RENEW_NOTICE = 30.0  # seconds before expiry when `auth_renew` goes out (at most half the token's life)


def renew_at(issued_at: float, expires_at: float) -> float:
    """When a connection is asked to renew its token: 30 s before expiry, or half-way through a
    shorter token's life (so a fresh short token is not asked to renew at once, again and again)."""
    return expires_at - min(RENEW_NOTICE, (expires_at - issued_at) / 2)


def may_resume(stored_key: str, stored_client: str, given_key: str, client_id: str) -> bool:
    """True when a resume request proves the session (constant-time key comparison)."""
    return hmac.compare_digest(stored_key, given_key) and stored_client == client_id


@dataclass(frozen=True, slots=True)
class DropPlan:
    """What happens to a session whose connection ended: now, or after each delay (None: nothing)."""

    end_now: bool
    presence_after: float | None = None
    streams_after: float | None = None
    expire_after: float | None = None


def drop_plan(
    *,
    graceful: bool,
    shutting_down: bool,
    resumable: bool,
    has_presence: bool,
    has_streams: bool,
    presence_grace: float,
    stream_grace: float,
    resume_window: float,
) -> DropPlan:
    """The timers a dropped connection's session gets (see the rules above)."""
    if graceful or shutting_down or not resumable:
        return DropPlan(end_now=True)
    return DropPlan(
        end_now=False,
        presence_after=presence_grace if has_presence else None,
        streams_after=stream_grace if has_streams else None,
        expire_after=resume_window,
    )


@dataclass(frozen=True, slots=True)
class AttachStart:
    """Where delivery starts for an attach: after serial `start`; `reason` when continuity was lost."""

    start: int
    resumed: bool
    reason: tuple[int, str] | None = None


def attach_start(
    position: tuple[int, str | None] | None, *, head: int, first_serial: int, epoch: str
) -> AttachStart:
    """Decide an attach's starting serial from the requested position and the channel's true state."""
    if position is None:
        return AttachStart(head, True)
    serial, seen_epoch = position
    if seen_epoch and epoch and seen_epoch != epoch:
        return AttachStart(head, False, (Code.EPOCH_CHANGED, "channel history was reset"))
    if serial > head:
        return AttachStart(head, False, (Code.EPOCH_CHANGED, "position is ahead of the channel"))
    if serial + 1 < first_serial:
        return AttachStart(head, False, (Code.HISTORY_LOST, "history after the position is gone"))
    return AttachStart(serial, True)


class Check(Enum):
    """The outcome of one liveness check of a connection."""

    OK = "ok"
    TRANSPORT_GONE = "transport_gone"
    EXPIRED = "expired"
    RENEW = "renew"
    SILENT = "silent"
    HEARTBEAT = "heartbeat"


def check_connection(
    *,
    wall: float,
    mono: float,
    expires_at: float,
    renew_at: float,
    transport_closing: bool,
    renew_sent: bool,
    unidirectional: bool,
    last_recv: float,
    last_send: float,
    interval: float,
) -> Check:
    """One sweep decision for a connection (see the rules above); the caller carries it out."""
    if transport_closing:
        return Check.TRANSPORT_GONE
    if wall >= expires_at:
        return Check.EXPIRED
    if not renew_sent and not unidirectional and wall >= renew_at:
        return Check.RENEW
    if not unidirectional and mono - last_recv > 2 * interval:
        return Check.SILENT
    if mono - last_send >= interval:
        return Check.HEARTBEAT
    return Check.OK
