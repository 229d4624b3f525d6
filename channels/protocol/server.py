"""Server frames: one typed builder per frame type the server sends; nothing else builds them.

Each builder returns the plain dict the codec encodes. docs/protocol.md ("Server frames") is the
prose contract; the frame type names are `SERVER_FRAME_TYPES`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

Frame = dict[str, Any]

SERVER_FRAME_TYPES = frozenset(
    {
        "connected",
        "attached",
        "detached",
        "message",
        "presence",
        "presence_sync",
        "stream_open",
        "stream_chunk",
        "stream_snapshot",
        "stream_cancelled",
        "claim",
        "run_status",
        "run_snapshot",
        "run_state",
        "run_cancelled",
        "ack",
        "nack",
        "error",
        "heartbeat",
        "auth_renew",
        "room",
    }
)


class MessageRecord(Protocol):
    """What a durable message frame is built from (the Store's records have these fields)."""

    channel: str
    serial: int
    id: str
    name: str
    data: Any
    client_id: str
    kind: str
    ts: int
    reply_to: int | None
    stream_id: str | None
    status: str | None
    meta: Any
    extra: Mapping[str, Any] | None
    thread: int | None
    action: str | None
    target: int | None


def reason(code: int, message: str) -> Frame:
    """The `reason` object of `connected` and `attached` when continuity could not be kept."""
    return {"code": code, "message": message}


def connected(
    *,
    session_id: str,
    key: str,
    client_id: str,
    kind: str,
    resumed: bool,
    channels: Sequence[str],
    heartbeat_interval: float,
    resume_window: float,
    expires_at: int,
    limits: Mapping[str, int],
    why: Frame | None = None,
    display_name: str | None = None,
) -> Frame:
    """The reply to `connect`: the session (new or resumed), its identity and the server's limits."""
    frame: Frame = {
        "type": "connected",
        "session_id": session_id,
        "key": key,
        "client_id": client_id,
        "kind": kind,
        "resumed": resumed,
        "channels": list(channels),
        "heartbeat_interval": heartbeat_interval,
        "resume_window": resume_window,
        "expires_at": expires_at,
        "limits": dict(limits),
    }
    if display_name is not None:
        frame["display_name"] = display_name
    if why is not None:
        frame["reason"] = why
    return frame


def attached(
    channel: str,
    serial: int,
    epoch: str,
    resumed: bool,
    *,
    ref: int | None = None,
    why: Frame | None = None,
    policy: Mapping[str, Any] | None = None,
) -> Frame:
    """An attach took effect at `serial` (replayed messages run up to it); or, unsolicited and with
    resumed false, continuity was lost and delivery continues after `serial`. `policy` is the
    room's agent policy (reply policy, loop budget, double texting), on replies to `attach`."""
    frame: Frame = {
        "type": "attached",
        "channel": channel,
        "position": {"serial": serial, "epoch": epoch},
        "resumed": resumed,
    }
    if ref is not None:
        frame["ref"] = ref
    if why is not None:
        frame["reason"] = why
    if policy is not None:
        frame["policy"] = dict(policy)
    return frame


def detached(channel: str, *, ref: int | None = None, code: int | None = None, message: str = "") -> Frame:
    """A detach took effect: the reply to `detach`, or a server-initiated one carrying a code."""
    frame: Frame = {"type": "detached", "channel": channel}
    if ref is not None:
        frame["ref"] = ref
    if code is not None:
        frame["code"] = code
        frame["message"] = message
    return frame


def message(m: MessageRecord, my_reactions: Sequence[str] | None = None) -> Frame:
    """A durable message: a member's message, or an event (`action`, `target`) on one. Its
    server-stamped state (`edited`, `deleted`, `reactions`, `replies`, `rev`, ...) comes as stored;
    `my_reactions` (history replies only) lists the reader's own reactions to it."""
    frame: Frame = {
        "type": "message",
        "channel": m.channel,
        "serial": m.serial,
        "id": m.id,
        "name": m.name,
        "data": m.data,
        "client_id": m.client_id,
        "kind": m.kind,
        "ts": m.ts,
    }
    if m.reply_to is not None:
        frame["reply_to"] = m.reply_to
    if m.stream_id is not None:
        frame["stream_id"] = m.stream_id
        frame["status"] = m.status
    if m.meta is not None:
        frame["meta"] = m.meta
    if m.thread is not None:
        frame["thread"] = m.thread
    if m.action is not None:
        frame["action"] = m.action
        frame["target"] = m.target
    if m.extra:
        frame.update(m.extra)
    if my_reactions:
        frame["my_reactions"] = list(my_reactions)
    return frame


def ephemeral_message(
    channel: str,
    *,
    name: str,
    data: Any,
    client_id: str,
    kind: str,
    ts: int,
    message_id: str | None,
    reply_to: int | None,
    extra: Mapping[str, Any] | None = None,
    thread: int | None = None,
) -> Frame:
    """A live-only message: no serial, never stored; an `id` only if the publisher gave one."""
    frame: Frame = {
        "type": "message",
        "channel": channel,
        "serial": None,
        "name": name,
        "data": data,
        "client_id": client_id,
        "kind": kind,
        "ts": ts,
        "ephemeral": True,
    }
    if message_id is not None:
        frame["id"] = message_id
    if reply_to is not None:
        frame["reply_to"] = reply_to
    if thread is not None:
        frame["thread"] = thread
    if extra:
        frame.update(extra)
    return frame


def room_entry(
    channel: str,
    *,
    title: str | None,
    topic: str | None,
    last_serial: int,
    last_ts: int | None,
    members: int,
    updated_by: str | None = None,
    updated_ts: int | None = None,
) -> Frame:
    """One room of the directory: its metadata, presence member count and last activity."""
    entry: Frame = {"channel": channel, "members": members, "last_serial": last_serial}
    if last_ts is not None:
        entry["last_ts"] = last_ts
    if title is not None:
        entry["title"] = title
    if topic is not None:
        entry["topic"] = topic
    if updated_by is not None:
        entry["updated_by"] = updated_by
        entry["updated_ts"] = updated_ts
    return entry


def room(entry: Mapping[str, Any]) -> Frame:
    """Live: a room's title or topic changed (`entry` as in the directory, without counts)."""
    return {"type": "room", **entry}


def unread_entry(
    channel: str, *, last_read: int, last_serial: int, unread: int, mentions: int, capped: bool
) -> Frame:
    """A member's unread and mention counts in one channel (`capped`: at least that many)."""
    entry: Frame = {
        "channel": channel,
        "last_read": last_read,
        "last_serial": last_serial,
        "unread": unread,
        "mentions": mentions,
    }
    if capped:
        entry["capped"] = True
    return entry


def member(
    client_id: str, connection_id: str, kind: str, data: Any, ts: int, display_name: str | None = None
) -> Frame:
    """One presence entry (inside `presence` and `presence_sync` frames and `presence_get` replies)."""
    entry: Frame = {
        "client_id": client_id,
        "connection_id": connection_id,
        "kind": kind,
        "data": data,
        "ts": ts,
    }
    if display_name is not None:
        entry["display_name"] = display_name
    return entry


def presence(channel: str, action: str, entry: Frame) -> Frame:
    """A presence diff: `enter`, `update` or `leave` of one entry."""
    return {"type": "presence", "channel": channel, "action": action, "member": entry}


def presence_sync(channel: str, members: list[Frame], last: bool) -> Frame:
    """One page of the presence snapshot sent after `attached`; `last` marks the final page."""
    return {"type": "presence_sync", "channel": channel, "members": members, "last": last}


def stream_open(header: Mapping[str, Any]) -> Frame:
    """A stream started; `header` is the stream's channel, id, writer, name, format, ts, reply_to, meta."""
    return {"type": "stream_open", **header}


def stream_chunk(channel: str, stream_id: str, index: int, chunk: Any) -> Frame:
    """Chunk `index` of an open stream."""
    return {"type": "stream_chunk", "channel": channel, "stream_id": stream_id, "i": index, "d": chunk}


def stream_snapshot(header: Mapping[str, Any], content: Any, next_index: int) -> Frame:
    """An open stream's content so far (chunks 0 .. next_index-1), for a reader that arrives mid-stream."""
    return {"type": "stream_snapshot", **header, "content": content, "next": next_index}


def stream_cancelled(channel: str, stream_id: str, by: str) -> Frame:
    """To a stream's writer: member `by` cancelled it; later appends are refused."""
    return {"type": "stream_cancelled", "channel": channel, "stream_id": stream_id, "by": by}


def claim(record: Mapping[str, Any]) -> Frame:
    """A claim changed: `state` held (granted), released, expired or done; `token` is its fencing token."""
    return {"type": "claim", **record}


def run_status(header: Mapping[str, Any]) -> Frame:
    """A run started or changed status; `version` grows with each change (keep the highest)."""
    return {"type": "run_status", **header}


def run_snapshot(header: Mapping[str, Any], state: Any, deltas: Sequence[Any]) -> Frame:
    """An active run for a reader that attaches: its header, and its shared state as the last
    snapshot plus the JSON Patch operations sent since (apply them in order)."""
    frame: Frame = {"type": "run_snapshot", **header}
    if state is not None:
        frame["state"] = state
    if deltas:
        frame["deltas"] = list(deltas)
    return frame


def run_state(
    channel: str, run_id: str, *, snapshot: Any = None, delta: Sequence[Any] | None = None
) -> Frame:
    """A run's shared state: a whole `snapshot`, or a `delta` of JSON Patch operations."""
    frame: Frame = {"type": "run_state", "channel": channel, "run_id": run_id}
    if delta is not None:
        frame["delta"] = list(delta)
    else:
        frame["snapshot"] = snapshot
    return frame


def run_cancelled(channel: str, run_id: str, by: str) -> Frame:
    """To a run's writer: member `by` cancelled it; stop working on it."""
    return {"type": "run_cancelled", "channel": channel, "run_id": run_id, "by": by}


def ack(ref: int, **fields: Any) -> Frame:
    """Success reply to the request with `ref`, with its result fields."""
    return {"type": "ack", "ref": ref, **fields}


def nack(ref: int | None, code: int, message: str, **details: Any) -> Frame:
    """Refusal: a `nack` for a request with a `ref`, an `error` for a frame without one."""
    frame: Frame = {"type": "nack" if ref is not None else "error", "code": code, "message": message}
    if ref is not None:
        frame["ref"] = ref
    frame.update(details)
    return frame


def heartbeat(ts: int) -> Frame:
    """Sent after `heartbeat_interval` seconds of silence from the server."""
    return {"type": "heartbeat", "ts": ts}


def auth_renew(expires_at: int) -> Frame:
    """The token expires soon: send `auth` with a fresh one."""
    return {"type": "auth_renew", "expires_at": expires_at}


def reset(code: int | None, message: str | None, position: Mapping[str, Any]) -> Frame:
    """SSE only: continuity was lost (the `attached` with resumed false, as an event)."""
    return {"type": "reset", "code": code, "message": message, "position": dict(position)}
