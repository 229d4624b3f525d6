"""Presence sets: one entry per (client_id, connection), enter/update/leave as diffs.

Rules:
- An entry is keyed by the connection id (the session id, stable across resumes).
- enter of an absent entry emits `enter`; enter or update with different data emits `update`;
  enter or update with equal data emits nothing (idempotent re-entry).
- update of an absent entry enters it.
- leave of a present entry emits `leave` with its last data; leave of an absent one emits nothing.
- A snapshot is the entries in entry order, cut in pages.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Member:
    client_id: str
    connection_id: str
    kind: str
    data: Any
    ts: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "connection_id": self.connection_id,
            "kind": self.kind,
            "data": self.data,
            "ts": self.ts,
        }


@dataclass(slots=True, frozen=True)
class Diff:
    action: str
    member: Member


class PresenceSet:
    """The members of one channel."""

    __slots__ = ("_members",)

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._members

    def enter(self, client_id: str, connection_id: str, kind: str, data: Any, ts: int) -> Diff | None:
        """Enter or update; returns the diff to broadcast, or None when nothing changed."""
        current = self._members.get(connection_id)
        if current is None:
            member = Member(client_id, connection_id, kind, data, ts)
            self._members[connection_id] = member
            return Diff("enter", member)
        if current.data == data:
            return None
        current.data = data
        current.ts = ts
        return Diff("update", Member(client_id, connection_id, kind, data, ts))

    def leave(self, connection_id: str, ts: int) -> Diff | None:
        member = self._members.pop(connection_id, None)
        if member is None:
            return None
        member.ts = ts
        return Diff("leave", member)

    def members(self) -> list[Member]:
        return list(self._members.values())

    def client_ids(self) -> set[str]:
        return {m.client_id for m in self._members.values()}

    def pages(self, size: int) -> Iterator[tuple[list[Member], bool]]:
        """Snapshot pages of at most `size` members; the flag marks the last page (always one)."""
        members = list(self._members.values())
        if not members:
            yield [], True
            return
        for start in range(0, len(members), size):
            yield members[start : start + size], start + size >= len(members)
