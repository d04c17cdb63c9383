"""Limits against hostile or broken clients: token buckets per connection (frames and bytes,
with flood detection) and admission per client address and identity (before the upgrade),
per node and, with Redis, across the nodes of a cluster (SharedAdmission)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from commhub.cluster.outage import Outage

if TYPE_CHECKING:  # one node never loads the Redis client
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

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
        # with Redis: the per-address limits across every node, asked (async) once a socket
        # is known to stay on this node; None: one node
        self.shared: SharedAdmission | None = None

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


# Atomic per address: forget expired sockets, check the count, then the join window, then
# count this socket in. KEYS: the address's sockets (sorted set, score = expiry in ms of
# Redis' clock), its join window counter. ARGV: per_ip, joins allowed per window, window
# ms, socket ttl ms, member. 0: admitted, 1: too many sockets, 2: too many joins.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 1 end
local joins = redis.call('INCR', KEYS[2])
if joins == 1 then redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3])) end
if joins > tonumber(ARGV[2]) then return 2 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[4]), ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 0
"""
# A node's sockets of one address, still open: their expiry pushed on (re-added after a
# Redis restart). KEYS: the sorted set. ARGV: ttl ms, members...
_REFRESH = """
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 0
"""


class SharedAdmission:
    """Admission's per-address limits across the nodes of a cluster, through Redis: open
    sockets per address (a sorted set per address, one member per socket, each expiring
    unless its node refreshes it every ttl/3, so a dead node's sockets stop counting
    within ttl) and joins per address (a fixed window counter, INCR + PEXPIRE).

    Asked after the node's own Admission (which alone limits sockets per identity: a
    room's participants are all on its owner node). When Redis fails or hangs longer than
    `timeout`, the node's own limits are all there is for `retry` seconds: logged once
    per outage, and nobody is refused for it. The sockets admitted meanwhile are counted
    in Redis by the next refresh."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        node_id: str,
        per_ip: int,
        join_rate: float,
        join_burst: int,
        *,
        ttl: float = 30.0,
        timeout: float = 0.5,
        retry: float = 5.0,
    ) -> None:
        self.redis, self.prefix, self.node_id = redis, prefix, node_id
        self.per_ip = per_ip
        self.join_rate = join_rate
        # the bucket's burst refills in burst/rate seconds: one window holds that many joins
        self.window = max(1.0, join_burst / join_rate) if join_rate > 0 else 1.0
        self.window_joins = max(join_burst, math.ceil(join_rate * self.window))
        self.ttl, self.timeout, self.retry = ttl, timeout, retry
        self.outage = Outage(
            log, "cluster-wide connection limits", "this node's own limits only", retry
        )
        self._seq = itertools.count()
        self._open: dict[str, list[str]] = {}  # address -> this node's sockets' members
        self._tasks: set[asyncio.Task[None]] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._admit = redis.register_script(_ADMIT)
        self._refresh = redis.register_script(_REFRESH)

    def _sockets_key(self, ip: str) -> str:
        return f"{self.prefix}:sock:{ip}"

    @property
    def available(self) -> bool:
        """False while Redis is left alone after a failure."""
        return self.outage.available

    @property
    def errors(self) -> int:
        return self.outage.errors

    async def admit(self, ip: str) -> tuple[str, str] | None:
        """Count one socket from `ip` in cluster-wide, or say why not: (code, message)."""
        member = f"{self.node_id}:{next(self._seq)}"
        if self.available:
            window = int(time.time() // self.window)
            keys = [self._sockets_key(ip), f"{self.prefix}:joins:{ip}:{window}"]
            args: list[int | str] = [self.per_ip, self.window_joins, int(self.window * 1000),
                                     int(self.ttl * 1000), member]  # fmt: skip
            try:
                verdict = await asyncio.wait_for(self._admit(keys, args), self.timeout)
            except Exception as exc:  # Redis away: this node's own limits decide
                self.outage.failed(exc)
            else:
                self.outage.answered()
                if verdict == 1:
                    return (
                        "too_many_connections",
                        f"over {self.per_ip} connections from this address (all nodes)",
                    )
                if verdict == 2:
                    return "rate_limited", f"over {self.join_rate:g} connections per second"
        self._open.setdefault(ip, []).append(member)
        return None

    def release(self, ip: str) -> None:
        """One socket from `ip` admitted here closed (Redis is told in the background)."""
        members = self._open.get(ip)
        if not members:
            return
        member = members.pop()
        if not members:
            del self._open[ip]
        if self.available:
            self._background(self._forget(ip, [member]))

    async def _forget(self, ip: str, members: list[str]) -> None:
        try:
            await asyncio.wait_for(self.redis.zrem(self._sockets_key(ip), *members), self.timeout)
        except Exception as exc:  # it expires within ttl anyway
            self.outage.failed(exc)

    def _background(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def start(self) -> None:
        """Keep this node's sockets alive in Redis (every ttl/3) until close()."""
        if self._refresher is None:
            self._refresher = asyncio.ensure_future(self._refresh_forever())

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            if self.available and self._open:
                await self.refresh()

    async def refresh(self) -> None:
        ttl_ms = int(self.ttl * 1000)
        try:
            async with asyncio.timeout(self.timeout * 4):
                pipe = self.redis.pipeline(transaction=False)
                for ip, members in list(self._open.items()):
                    await self._refresh([self._sockets_key(ip)], [ttl_ms, *members], client=pipe)
                await pipe.execute()
        except Exception as exc:
            self.outage.failed(exc)
        else:
            self.outage.answered()

    async def close(self) -> None:
        """Stop refreshing and take this node's sockets out of Redis (best effort)."""
        if self._refresher is not None:
            self._refresher.cancel()
            await asyncio.gather(self._refresher, return_exceptions=True)
            self._refresher = None
        await asyncio.gather(*self._tasks, return_exceptions=True)
        left, self._open = self._open, {}
        if left and self.available:
            await asyncio.gather(*(self._forget(ip, m) for ip, m in left.items()))
