"""Presence sets: one entry per (client_id, connection), enter/update/leave as diffs.

Rules:
- An entry is keyed by the connection id (the session id, stable across resumes).
- enter of an absent entry emits `enter`; enter or update with different data emits `update`;
  enter or update with equal data emits nothing (idempotent re-entry).
- update of an absent entry enters it.
- leave of a present entry emits `leave` with its last data; leave of an absent one emits nothing.
- A snapshot is the entries in connection-id order, cut in pages of at most `count` entries and
  at most `max_bytes` of encoded data (a page always holds at least one entry), so no page can
  outgrow a reader's send buffer; paging on from a connection id is stable under changes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from agentchat_server.protocol import server as frames

ENTRY_OVERHEAD = 192  # bytes an entry adds to its data on the wire (ids, kind, ts, keys)


@dataclass(slots=True)
class Member:
    """One presence entry; `size` is its encoded size in bytes (data plus overhead)."""

    client_id: str
    connection_id: str
    kind: str
    data: Any
    ts: int
    size: int = ENTRY_OVERHEAD
    display_name: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The entry as the protocol sends it."""
        return frames.member(
            self.client_id, self.connection_id, self.kind, self.data, self.ts, self.display_name
        )


@dataclass(slots=True, frozen=True)
class Diff:
    """A change to broadcast: `enter`, `update` or `leave` of `member`."""

    action: str
    member: Member


class PresenceSet:
    """The members of one channel."""

    __slots__ = ("_members", "_order")

    def __init__(self) -> None:
        self._members: dict[str, Member] = {}
        self._order: list[str] = []  # connection ids, sorted

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, connection_id: object) -> bool:
        return connection_id in self._members

    def enter(
        self,
        client_id: str,
        connection_id: str,
        kind: str,
        data: Any,
        ts: int,
        size: int = ENTRY_OVERHEAD,
        display_name: str | None = None,
    ) -> Diff | None:
        """Enter or update; returns the diff to broadcast, or None when nothing changed."""
        current = self._members.get(connection_id)
        if current is None:
            member = Member(client_id, connection_id, kind, data, ts, size, display_name)
            self._members[connection_id] = member
            bisect.insort(self._order, connection_id)
            return Diff("enter", member)
        if current.data == data:
            return None
        current.data = data
        current.ts = ts
        current.size = size
        return Diff("update", Member(client_id, connection_id, kind, data, ts, size, display_name))

    def leave(self, connection_id: str, ts: int) -> Diff | None:
        """Remove an entry; the `leave` diff carries its last data."""
        member = self._members.pop(connection_id, None)
        if member is None:
            return None
        del self._order[bisect.bisect_left(self._order, connection_id)]
        member.ts = ts
        return Diff("leave", member)

    def get(self, connection_id: str) -> Member | None:
        """One entry, if present."""
        return self._members.get(connection_id)

    def members(self) -> list[Member]:
        """Every entry, in connection-id order."""
        return [self._members[cid] for cid in self._order]

    def client_ids(self) -> set[str]:
        """The distinct client ids present."""
        return {m.client_id for m in self._members.values()}

    def page(self, after: str | None, count: int, max_bytes: int) -> tuple[list[Member], bool]:
        """Entries after connection id `after` (None: from the start), within both bounds; the
        flag says whether more follow."""
        start = 0 if after is None else bisect.bisect_right(self._order, after)
        out: list[Member] = []
        size = 0
        for cid in self._order[start:]:
            member = self._members[cid]
            if out and (len(out) >= count or size + member.size > max_bytes):
                return out, True
            out.append(member)
            size += member.size
        return out, False

    def pages(self, count: int, max_bytes: int) -> Iterator[tuple[list[Member], bool]]:
        """The whole snapshot as pages; the flag marks the last page (there is always one)."""
        after: str | None = None
        while True:
            members, more = self.page(after, count, max_bytes)
            yield members, not more
            if not more:
                return
            after = members[-1].connection_id
