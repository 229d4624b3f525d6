"""Which ids each writer session holds on this node (its open streams, its runs)."""

from __future__ import annotations


class SessionIndex:
    """Ids by writer session: add, drop, move, count and list; a session holding nothing is not kept."""

    def __init__(self) -> None:
        self._ids: dict[str, set[str]] = {}

    def add(self, session: str, item: str) -> None:
        """`session` holds `item` now."""
        self._ids.setdefault(session, set()).add(item)

    def drop(self, session: str, item: str) -> None:
        """`session` no longer holds `item` (nothing happens if it did not)."""
        held = self._ids.get(session)
        if held is not None:
            held.discard(item)
            if not held:
                del self._ids[session]

    def move(self, item: str, old: str, new: str) -> None:
        """`item` passes from session `old` to session `new`."""
        self.drop(old, item)
        self.add(new, item)

    def count(self, session: str) -> int:
        """How many ids `session` holds."""
        return len(self._ids.get(session, ()))

    def of(self, session: str) -> list[str]:
        """The ids `session` holds (a copy: the caller may drop them while iterating)."""
        return list(self._ids.get(session, ()))

    def sessions(self) -> list[str]:
        """The sessions holding something."""
        return list(self._ids)
