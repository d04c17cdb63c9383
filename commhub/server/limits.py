"""Per-connection rate limiting (token bucket) with flood detection."""

from __future__ import annotations

import time


class RateLimiter:
    def __init__(self, rate: float, burst: int, strikes: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.max_strikes = strikes
        self.strikes = 0  # refused messages in a row
        self.stamp = time.monotonic()

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            self.strikes = 0
            return True
        self.strikes += 1
        return False

    @property
    def flooding(self) -> bool:
        return self.strikes >= self.max_strikes
