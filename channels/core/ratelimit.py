"""Token buckets for publish rates and bad-frame budgets; time is passed in."""

from __future__ import annotations


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take` answers whether a token was available."""

    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> bool:
        """Spend `cost` tokens if there are enough; True when spent."""
        elapsed = now - self.stamp
        if elapsed > 0:
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return True
        return False

    def retry_after(self, cost: float = 1.0) -> float:
        """Seconds until `cost` tokens are available again."""
        return max(0.0, (cost - self.tokens) / self.rate)


class KeyedBuckets:
    """Token buckets per key (a client id, an address), at most `max_keys` of them.

    Overflow policy: when full, the buckets that are full again (idle keys) are dropped first;
    if none is, the oldest key is. A dropped key starts over with a full bucket, which only
    ever errs towards allowing."""

    __slots__ = ("_buckets", "burst", "max_keys", "rate")

    def __init__(self, rate: float, burst: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: dict[str, TokenBucket] = {}

    def take(self, key: str, now: float, cost: float = 1.0) -> float:
        """Spend `cost` tokens of `key`: 0.0 when allowed, else the seconds to wait."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._evict(now)
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
        if bucket.take(now, cost):
            return 0.0
        return max(bucket.retry_after(cost), 0.001)

    def _evict(self, now: float) -> None:
        idle = [k for k, b in self._buckets.items() if b.tokens + (now - b.stamp) * b.rate >= b.burst]
        for key in idle or [next(iter(self._buckets))]:
            del self._buckets[key]


class FailureGuard:
    """Failed attempts per key (a source address): `burst` failures are free, refilled at `rate`
    per second; once spent, the key is blocked, and each further failure while blocked doubles
    the block, up to `max_block` seconds. At most `max_keys` keys are tracked (oldest dropped)."""

    __slots__ = ("_blocks", "_buckets", "max_block", "max_keys")

    def __init__(self, rate: float, burst: float, max_block: float = 300.0, max_keys: int = 10_000) -> None:
        self._buckets = KeyedBuckets(rate, burst, max_keys)
        self._blocks: dict[str, tuple[float, float]] = {}  # key -> (blocked until, last block length)
        self.max_block = max_block
        self.max_keys = max_keys

    def blocked(self, key: str, now: float) -> float:
        """Seconds `key` must still wait before its next attempt counts (0.0: it may try)."""
        found = self._blocks.get(key)
        if found is None:
            return 0.0
        until, _ = found
        return max(0.0, until - now)

    def failed(self, key: str, now: float) -> float:
        """Record a failed attempt; returns the block it starts or extends (0.0 when still free)."""
        found = self._blocks.get(key)
        if found is not None and found[0] > now:
            length = min(self.max_block, found[1] * 2)
        elif self._buckets.take(key, now):
            length = 1.0 if found is None else min(self.max_block, found[1] * 2)
        else:
            return 0.0
        if len(self._blocks) >= self.max_keys and key not in self._blocks:
            del self._blocks[next(iter(self._blocks))]
        self._blocks[key] = (now + length, length)
        return length
