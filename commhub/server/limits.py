"""Limits against hostile or broken clients: token buckets per connection (frames and bytes,
with flood detection) and admission per client address and identity (before the upgrade)."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TypeVar

K = TypeVar("K")


@dataclass
class TokenBucket:
    rate: float  # tokens per second, sustained
    burst: float
    tokens: float = -1.0  # starts full
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, cost: float = 1.0) -> bool:
        """Spend cost if the bucket holds it; a cost above the burst is taken from a full
        bucket (it then runs into debt), so one large item waits its turn, never forever."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= min(cost, self.burst):
            self.tokens -= cost
            return True
        return False

    @property
    def full(self) -> bool:
        return self.tokens + (time.monotonic() - self.stamp) * self.rate >= self.burst


class RateLimiter:
    """Every frame a connection sends, text or binary, counts once and by its size."""

    def __init__(
        self, rate: float, burst: int, strikes: int, byte_rate: float, byte_burst: int
    ) -> None:
        self.frames = TokenBucket(rate, burst)
        self.bytes = TokenBucket(byte_rate, byte_burst)
        self.max_strikes = strikes
        self.strikes = 0  # refused frames in a row

    def allow(self, size: int) -> bool:
        if self.frames.take() and self.bytes.take(size):
            self.strikes = 0
            return True
        self.strikes += 1
        return False

    @property
    def flooding(self) -> bool:
        return self.strikes >= self.max_strikes


class AddressBuckets:
    """A token bucket per client address; once `max_tracked` addresses are held, those whose
    bucket is full again (idle) are forgotten, so many addresses cannot grow it unbounded."""

    def __init__(self, rate: float, burst: int, max_tracked: int = 10_000) -> None:
        self.rate, self.burst, self.max_tracked = rate, burst, max_tracked
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, address: str) -> bool:
        bucket = self.buckets.get(address)
        if bucket is None:
            if len(self.buckets) >= self.max_tracked:
                self.buckets = {a: b for a, b in self.buckets.items() if not b.full}
            bucket = self.buckets[address] = TokenBucket(self.rate, self.burst)
        return bucket.take()

    def retry_after(self, address: str) -> int:
        """Whole seconds until `address` may try again."""
        bucket = self.buckets.get(address)
        missing = 1.0 - bucket.tokens if bucket is not None else 0.0
        return max(1, math.ceil(missing / self.rate))


class Admission:
    """Open signalling sockets per client address and per (room, identity), and upgrades per
    second per address. Checked before the upgrade, so a refusal costs one HTTP answer."""

    def __init__(self, per_ip: int, per_identity: int, join_rate: float, join_burst: int) -> None:
        self.per_ip, self.per_identity = per_ip, per_identity
        self.join_rate = join_rate
        self.by_ip: Counter[str] = Counter()
        self.by_identity: Counter[tuple[str, str]] = Counter()
        self.joins = AddressBuckets(join_rate, join_burst)

    def admit(self, ip: str, room: str, identity: str) -> tuple[str, str] | None:
        """Count the connection in, or say why not: (code, message)."""
        if self.by_ip[ip] >= self.per_ip:
            return "too_many_connections", f"over {self.per_ip} connections from this address"
        if self.by_identity[room, identity] >= self.per_identity:
            return (
                "too_many_connections",
                f"over {self.per_identity} connections for this identity in this room",
            )
        if not self.joins.take(ip):
            return "rate_limited", f"over {self.join_rate:g} connections per second"
        self.by_ip[ip] += 1
        self.by_identity[room, identity] += 1
        return None

    def release(self, ip: str, room: str, identity: str) -> None:
        _decrement(self.by_ip, ip)
        _decrement(self.by_identity, (room, identity))


def _decrement(counter: Counter[K], key: K) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
