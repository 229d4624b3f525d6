"""Agent-room decisions, pure: addressing, claims (leases with fencing tokens) and the loop brake.

Rules:
- Addressing. A message's `to` names client ids. A reader that filters `to_me` gets the messages
  with no `to`, those whose `to` names it, and its own. The Store keeps `to` as `,a,b,` so one
  SQL `LIKE` finds a reader's messages.
- Claims. One claim per message, kept as a row. Claiming a free message (never claimed,
  released, expired, or held past its lease) grants a lease and a fencing token one higher than
  the row's last; the holder's session may claim again (a retry) and gets the same lease renewed;
  anyone else is refused (`40905`, with the holder) while the lease runs, and always once the
  claim is `done`. Renewing takes the current token; a token that is not current is `40906`.
- A claim binds agents' replies while held or done: an agent's reply to the message must carry
  the holder's current token (`40906`, or `40905` for non-holders). A good reply that completes
  the answer makes the claim `done` (no one claims it again); a failed, cancelled or aborted one
  releases it for others.
- Loop brake. A channel counts its agents' turns since the last human message; a turn is a run
  of writes by one agent, so a new turn starts when another agent speaks (a lone bot writing
  many messages is one turn; two agents answering each other take a turn each time). A human
  message resets the count. An agent starting a turn past the namespace's budget is refused
  (`42907`), and from then every agent is, until a person speaks; the first refusal posts one
  notice. `BRAKED` marks "braked, notice posted", so no second column is needed for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from agentchat_server.core.records import NewMessage
from agentchat_server.core.refusal import Refusal
from agentchat_server.protocol import Code, encode_value

BRAKED = 2**31  # agent_turns after the brake's notice was posted (>= any budget)
Turn = Literal["human", "agent"]


# --- addressing ------------------------------------------------------------------------------------


def to_column(to: Sequence[str] | None) -> str | None:
    """How the Store keeps a message's addressees: `,a,b,` (None when addressed to nobody)."""
    return None if not to else "," + ",".join(to) + ","


def like_pattern(client_id: str) -> str:
    """The SQL LIKE pattern (escape `\\`) matching a `to` column that names `client_id`."""
    escaped = client_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%,{escaped},%"


def for_reader(to: Any, sender: str, reader: str) -> bool:
    """True when a reader filtering `to_me` gets a message with addressees `to` from `sender`."""
    return not to or reader == sender or (isinstance(to, list) and reader in to)


# --- claims ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimRow:
    """A message's claim as the Store keeps it. `state`: held, released, expired or done;
    `expires_at` in ms; `session` is the holder's session (a retry from it is not a rival)."""

    channel: str
    serial: int
    holder: str
    session: str
    token: int
    state: str
    expires_at: int
    display_name: str | None = None

    def held(self, now: int) -> bool:
        """True while the lease runs."""
        return self.state == "held" and self.expires_at > now

    def binds(self, now: int) -> bool:
        """True while agents' replies to the message need the holder's token."""
        return self.held(now) or self.state == "done"

    def event(self) -> dict[str, Any]:
        """The fields of the `claim` frame the room sees."""
        fields: dict[str, Any] = {
            "channel": self.channel,
            "serial": self.serial,
            "client_id": self.holder,
            "token": self.token,
            "state": self.state,
            "expires_at": self.expires_at,
        }
        if self.display_name is not None:
            fields["display_name"] = self.display_name
        return fields


@dataclass(frozen=True, slots=True)
class Claimant:
    """Who asks for a claim, and for how long (ms); `token` renews a lease one holds."""

    client_id: str
    session: str
    token: int | None
    ttl_ms: int
    display_name: str | None = None


def decide_claim(
    row: ClaimRow | None, who: Claimant, channel: str, serial: int, now: int
) -> ClaimRow | Refusal:
    """The claim after `who` asks for it (a grant, a renewal) or why it is refused."""
    expires = now + who.ttl_ms
    if row is not None and who.token is not None:
        if row.holder == who.client_id and row.token == who.token and row.held(now):
            return replace(row, expires_at=expires, session=who.session)
        if row.state == "done" and row.token == who.token and row.holder == who.client_id:
            return Refusal(
                Code.CLAIMED, "the claim is done (answered)", {"state": "done", "holder": row.holder}
            )
        return Refusal(Code.CLAIM_LOST, "this token is not the claim's current one", {"token": row.token})
    if who.token is not None:
        return Refusal(Code.CLAIM_LOST, "no claim holds this token")
    if row is not None:
        if row.state == "done":
            return Refusal(Code.CLAIMED, "the message was answered", {"holder": row.holder, "state": "done"})
        if row.held(now):
            if row.session == who.session:
                return replace(row, expires_at=expires)  # a retry of our own claim
            return Refusal(
                Code.CLAIMED,
                "another member holds the claim",
                {"holder": row.holder, "state": "held", "expires_at": row.expires_at},
            )
    token = 1 if row is None else row.token + 1
    return ClaimRow(channel, serial, who.client_id, who.session, token, "held", expires, who.display_name)


def decide_release(row: ClaimRow | None, client_id: str, token: int, now: int) -> ClaimRow | Refusal:
    """The claim after its holder gives it up (state released), or why that is refused."""
    if row is None or row.holder != client_id or row.token != token or not row.held(now):
        return Refusal(Code.CLAIM_LOST, "this token is not a held claim of yours")
    return replace(row, state="released")


def check_reply(row: ClaimRow | None, client_id: str, token: int | None, now: int) -> Refusal | None:
    """Whether an agent's reply to a message, carrying `token` (or none), may be written."""
    if token is None:
        if row is None or not row.binds(now):
            return None
        if row.holder != client_id:
            return Refusal(Code.CLAIMED, "another member claimed this message", {"holder": row.holder})
        return Refusal(Code.CLAIM_LOST, "reply with your claim's token")
    if row is None or row.holder != client_id or row.token != token or not row.binds(now):
        return Refusal(Code.CLAIM_LOST, "this claim token is not current (the lease was lost)")
    return None


# --- the loop brake --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Brake:
    """The outcome of one write: allowed or not, the channel's new count and last agent speaker,
    and whether to post the notice."""

    allowed: bool
    turns: int
    speaker: str | None
    notice: bool = False


def brake(turns: int, speaker: str | None, budget: int | None, turn: Turn, writer: str) -> Brake:
    """Count a write: a human resets the count; an agent continuing its own turn goes on; an
    agent starting a turn past `budget` (or any agent once braked) is refused."""
    if turn == "human":
        return Brake(True, 0, None)
    if turns == BRAKED:
        return Brake(False, BRAKED, speaker)
    if writer == speaker and turns > 0:
        return Brake(True, turns, speaker)
    if budget is not None and turns >= budget:
        return Brake(False, BRAKED, speaker, notice=True)
    return Brake(True, min(turns + 1, BRAKED - 1), writer)


SERVER_CLIENT_ID = "agentchat"  # the sender of the server's own notices (kind "system")


def brake_notice(message_id: str, budget: int, refused: str, now: int) -> NewMessage:
    """The notice the room sees when the brake first stops an agent (`refused` is its client id)."""
    data = {"budget": budget, "client_id": refused}
    return NewMessage(
        message_id, "agentchat.loop_brake", data, encode_value(data), SERVER_CLIENT_ID, "system", now
    )
