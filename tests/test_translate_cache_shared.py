"""The translation cache shared through a real redis-server: a translation one node made is
a cache hit on another (counted engine calls, real Apertium), and Redis dying, hanging or
holding rubbish never fails a translation."""

from __future__ import annotations

import asyncio
import hashlib
import signal
from collections.abc import AsyncIterator

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from commhub.translate import ApertiumTranslator, TranslationService
from commhub.translate.cache import SharedCache
from tests.helpers import translate as translate_helpers
from tests.helpers.services import RedisServer

pytestmark = translate_helpers.needs_apertium


def calls(svc: TranslationService) -> float:
    name = "commhub_translation_engine_calls_total"
    return svc.metrics.registry.get_sample_value(name, {"engine": "apertium"}) or 0.0


class Node:
    """What one hub process has: its own Redis client, service and engine."""

    def __init__(self, url: str, **shared: float) -> None:
        self.redis = Redis.from_url(url, decode_responses=True)
        self.shared = SharedCache(self.redis, "test", **shared)  # type: ignore[arg-type]
        self.svc = TranslationService(
            [ApertiumTranslator()], registry=CollectorRegistry(), shared=self.shared
        )

    async def written(self) -> None:
        """The background writes to Redis are done."""
        await asyncio.gather(*self.svc._writes)

    async def close(self) -> None:
        await self.svc.aclose()
        await self.redis.aclose()


@pytest.fixture
async def nodes(redis_server: RedisServer) -> AsyncIterator[list[Node]]:
    made = [Node(redis_server.url, retry=0.2), Node(redis_server.url, retry=0.2)]
    yield made
    for node in made:
        await node.close()


async def test_a_translation_made_on_one_node_is_a_hit_on_another(
    nodes: list[Node], redis_server: RedisServer
) -> None:
    a, b = nodes
    first = await a.svc.translate("Good morning.", "en", "es")
    assert (first.status, first.cached) == ("ok", False) and first.text.startswith("Buenos")
    assert calls(a.svc) == 1
    await a.written()

    key = f"test:tr:apertium:en:es:{hashlib.sha256(b'Good morning.').hexdigest()}"
    assert await a.redis.get(key) == first.text
    assert 0 < await a.redis.pttl(key) <= 7 * 86400 * 1000

    # the other node: from Redis, no engine call; then from its own LRU
    again = await b.svc.translate("  Good   morning. ", "en", "es")  # the same normalised text
    assert (again.status, again.cached, again.text) == ("ok", True, first.text)
    assert calls(b.svc) == 0 and (b.shared.hits, b.shared.misses) == (1, 0)
    await b.svc.translate("Good morning.", "en", "es")
    assert b.shared.hits == 1 and calls(b.svc) == 0  # the local LRU answered first

    # many asking at once on a fresh node: one Redis lookup, no engine call
    c = Node(redis_server.url)
    try:
        results = await asyncio.gather(
            *(c.svc.translate("Good morning.", "en", "es") for _ in range(5))
        )
        assert {r.text for r in results} == {first.text} and calls(c.svc) == 0
        assert c.shared.hits == 1
    finally:
        await c.close()


async def test_redis_killed_mid_test_does_not_break_translating(
    nodes: list[Node], redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = nodes
    assert (await a.svc.translate("Good morning.", "en", "es")).status == "ok"
    await a.written()
    await redis_server.stop()

    # b misses Redis: it translates itself; the outage is logged once, not per request
    for text in ("Good morning.", "Where is the city hall?", "Thank you very much."):
        got = await b.svc.translate(text, "en", "es")
        assert got.status == "ok" and got.text and not got.cached, got
    assert calls(b.svc) == 3 and b.shared.errors >= 1
    await b.written()
    warnings = [r for r in caplog.records if "shared translation cache unreachable" in r.message]
    assert len(warnings) == 1

    # back: after the retry pause, writes reach the new (empty) Redis and a reads them
    await redis_server.start()
    await asyncio.sleep(0.3)
    await b.svc.translate("The train leaves at ten.", "en", "es")
    await b.written()
    got = await a.svc.translate("The train leaves at ten.", "en", "es")
    assert got.cached and calls(a.svc) == 1, (got, a.shared.errors)


async def test_a_hanging_redis_costs_its_timeout_and_no_translation(
    redis_server: RedisServer,
) -> None:
    node = Node(redis_server.url, timeout=0.3, retry=60.0)
    try:
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)  # accepts nothing, answers nothing
        try:
            got = await node.svc.translate("Good morning.", "en", "es")
            assert got.status == "ok" and got.text.startswith("Buenos"), got
            assert node.shared.errors == 1 and not node.shared.available
            # left alone now: the next translation does not ask it (no second timeout)
            assert (await node.svc.translate("Good night.", "en", "es")).status == "ok"
            await node.written()
            assert node.shared.errors == 1
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
    finally:
        await node.close()


async def test_values_are_bounded_both_ways(redis_server: RedisServer) -> None:
    node = Node(redis_server.url, max_value=8)  # "Buenos días." is more than 8 bytes
    try:
        got = await node.svc.translate("Good morning.", "en", "es")
        assert got.status == "ok"
        await node.written()
        assert await node.redis.keys("test:tr:*") == []  # too long to share: not written
    finally:
        await node.close()

    # what another writer left there: too big, or not a string, is not believed
    node = Node(redis_server.url)
    try:
        digest = hashlib.sha256(b"Good morning.").hexdigest()
        await node.redis.set(f"test:tr:apertium:en:es:{digest}", "x" * (64 * 1024 + 1))
        digest = hashlib.sha256(b"Good night.").hexdigest()
        await node.redis.rpush(f"test:tr:apertium:en:es:{digest}", "not a string")
        for text in ("Good morning.", "Good night."):
            got = await node.svc.translate(text, "en", "es")
            assert got.status == "ok" and "buen" in got.text.lower() and not got.cached, got
        assert calls(node.svc) == 2
    finally:
        await node.close()
