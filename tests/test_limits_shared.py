"""Admission across nodes through a real redis-server: two nodes' limits (each an Admission
and its SharedAdmission on its own Redis client, asked in the order the signalling edge
asks them) hold per client address across both; a dead node's sockets stop
counting; Redis dying falls back to each node's own limits, never to refusing everyone."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from commhub.server.limits import Admission, SharedAdmission
from tests.helpers.services import RedisServer

TOO_MANY = "too_many_connections"


class Node:
    def __init__(self, url: str, name: str, per_ip: int, **kw: Any) -> None:
        join_rate, join_burst = kw.pop("join_rate", 1000.0), kw.pop("join_burst", 1000)
        self.redis = Redis.from_url(url, decode_responses=True)
        self.local = Admission(per_ip, 4, join_rate, join_burst)
        self.shared = SharedAdmission(self.redis, "test", name, per_ip, join_rate, join_burst, **kw)
        self.local.shared = self.shared
        self.shared.start()

    async def admit(self, ip: str, identity: str, room: str = "lobby") -> str | None:
        """As signal.py: the node's limits, then (the socket stays here) the cluster's."""
        refusal = self.local.admit(ip, room, identity)
        if refusal is None and self.local.shared is not None:
            refusal = await self.local.shared.admit(ip)
            if refusal is not None:
                self.local.release(ip, room, identity)
        return None if refusal is None else refusal[0]

    def release(self, ip: str, identity: str, room: str = "lobby") -> None:
        self.local.release(ip, room, identity)
        if self.local.shared is not None:
            self.local.shared.release(ip)

    async def close(self) -> None:
        await self.shared.close()
        await self.redis.aclose()


@pytest.fixture
async def make(redis_server: RedisServer) -> AsyncIterator[Callable[..., Node]]:
    made: list[Node] = []

    def node(name: str, per_ip: int = 3, **kw: Any) -> Node:
        made.append(Node(redis_server.url, name, per_ip, **kw))
        return made[-1]

    yield node
    for n in made:
        await n.close()


async def eventually(check: Callable[[], Any], timeout: float = 15.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_the_n_plus_first_socket_from_one_address_is_refused_across_nodes(
    make: Callable[..., Node],
) -> None:
    a, b = make("a"), make("b")
    assert await a.admit("10.0.0.1", "u1") is None
    assert await a.admit("10.0.0.1", "u2") is None
    assert await b.admit("10.0.0.1", "u3") is None
    # each node alone holds fewer than 3; together they hold 3
    assert await b.admit("10.0.0.1", "u4") == TOO_MANY
    assert await a.admit("10.0.0.1", "u5") == TOO_MANY
    assert await b.admit("10.0.0.2", "u6") is None  # another address is another count
    # the refusal left no trace in the node's own counts
    assert a.local.by_ip["10.0.0.1"] == 2 and b.local.by_ip["10.0.0.1"] == 1
    # a socket closes on a: b may open one
    a.release("10.0.0.1", "u1")
    await asyncio.gather(*a.shared._tasks)  # the release reached Redis
    assert await b.admit("10.0.0.1", "u7") is None
    assert await a.admit("10.0.0.1", "u8") == TOO_MANY


async def test_joins_per_address_are_counted_across_nodes(make: Callable[..., Node]) -> None:
    a, b = (
        make("a", per_ip=100, join_rate=1.0, join_burst=3),
        make("b", per_ip=100, join_rate=1.0, join_burst=3),
    )
    assert a.shared.window == 3.0 and a.shared.window_joins == 3
    await asyncio.sleep(3.0 - time.time() % 3.0 + 0.05)  # a fresh window: 3 s for 4 calls
    verdicts = []
    for i, n in enumerate((a, b, a, b)):
        verdicts.append(await n.admit("10.0.0.1", f"u{i}"))
        n.release("10.0.0.1", f"u{i}")  # sockets do not count here, joins do
    assert verdicts == [None, None, None, "rate_limited"], verdicts


async def test_a_dead_nodes_sockets_stop_counting(
    make: Callable[..., Node], redis_server: RedisServer
) -> None:
    a, b = make("a", ttl=1.5), make("b", ttl=1.5)
    for i in range(3):
        assert await a.admit("10.0.0.1", f"u{i}") is None
    # a keeps them alive past their ttl while it lives
    await asyncio.sleep(2.0)
    assert await b.admit("10.0.0.1", "late") == TOO_MANY
    # a dies (no release, no goodbye): its refresher stops with it
    assert a.shared._refresher is not None
    a.shared._refresher.cancel()
    a.shared._open.clear()

    async def b_admits() -> bool:
        return await b.admit("10.0.0.1", "after") is None

    await eventually(b_admits)


async def test_redis_down_falls_back_to_each_nodes_own_limits(
    make: Callable[..., Node], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make("a", ttl=1.5, retry=0.3), make("b", ttl=1.5, retry=0.3)
    assert await a.admit("10.0.0.1", "u1") is None
    assert await a.admit("10.0.0.1", "u2") is None
    await redis_server.stop()
    # nobody is refused for the outage: b's own limit (3) is what holds now
    assert [await b.admit("10.0.0.1", f"v{i}") for i in range(4)] == [None, None, None, TOO_MANY]
    assert a.shared.errors + b.shared.errors >= 1
    warnings = [r for r in caplog.records if "connection limits unreachable" in r.message]
    # once per node at most (b's first failure; a's refresher may have met it too)
    assert 1 <= len(warnings) <= 2

    # Redis is back, empty: the refreshes put every open socket in again (2 on a, 3 on b)
    await redis_server.start()
    probe = Redis.from_url(redis_server.url, decode_responses=True)
    try:

        async def counted() -> bool:
            return int(await probe.zcard("test:sock:10.0.0.1")) == 5

        await eventually(counted)
    finally:
        await probe.aclose()
    b.release("10.0.0.1", "v0")
    b.release("10.0.0.1", "v1")
    await asyncio.gather(*b.shared._tasks)
    assert await a.admit("10.0.0.1", "u3") == TOO_MANY  # 3 still open across the two
