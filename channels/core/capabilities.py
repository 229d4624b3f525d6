"""Capabilities: which operations a token allows on which channels (most specific pattern wins)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

OPERATIONS = frozenset(
    {
        "subscribe",
        "publish",
        "presence",
        "history",
        "stream",
        "cancel",
        "moderate",
        "manage",
        "claim",
        "answer",
    }
)


class Capabilities:
    """Patterns are exact channel names or prefixes ending in `*`; the longest matching one decides."""

    __slots__ = ("_cache", "_exact", "_prefixes")

    def __init__(self, grants: Mapping[str, Sequence[str]]) -> None:
        self._exact: dict[str, frozenset[str]] = {}
        prefixes: list[tuple[str, frozenset[str]]] = []
        for pattern, ops in grants.items():
            allowed = OPERATIONS if "*" in ops else frozenset(op for op in ops if op in OPERATIONS)
            if pattern.endswith("*"):
                prefixes.append((pattern[:-1], allowed))
            else:
                self._exact[pattern] = allowed
        prefixes.sort(key=lambda item: len(item[0]), reverse=True)
        self._prefixes = prefixes
        self._cache: dict[str, frozenset[str]] = {}

    @staticmethod
    def validate(grants: object) -> dict[str, list[str]]:
        """Check a capability claim's shape; raises ValueError with a reason."""
        if not isinstance(grants, dict):
            raise ValueError("capabilities must be an object of pattern -> operations")
        for pattern, ops in grants.items():
            if not isinstance(pattern, str) or not pattern or len(pattern) > 200:
                raise ValueError("capability patterns are non-empty strings")
            if not isinstance(ops, list) or not all(isinstance(op, str) for op in ops):
                raise ValueError(f"operations for {pattern!r} must be a list of strings")
            unknown = set(ops) - OPERATIONS - {"*"}
            if unknown:
                raise ValueError(f"unknown operations {sorted(unknown)}")
        return grants

    def allowed(self, channel: str) -> frozenset[str]:
        """The operations allowed on `channel` (cached per channel name)."""
        found = self._cache.get(channel)
        if found is not None:
            return found
        found = self._exact.get(channel)
        if found is None:
            found = frozenset()
            for prefix, ops in self._prefixes:
                if channel.startswith(prefix):
                    found = ops
                    break
        if len(self._cache) < 1024:
            self._cache[channel] = found
        return found

    def can(self, channel: str, operation: str) -> bool:
        """True when `operation` is allowed on `channel`."""
        return operation in self.allowed(channel)

    def prefixes_with(self, operation: str) -> list[str]:
        """Name prefixes under which some channel may allow `operation`: every pattern granting it
        (an exact name is its own prefix). A superset: `can` still decides each channel."""
        found = [prefix for prefix, ops in self._prefixes if operation in ops]
        found.extend(name for name, ops in self._exact.items() if operation in ops)
        return found
