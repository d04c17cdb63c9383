"""Caches of finished translations: an LRU shared by every room of the process, and
(with Redis) one shared by every node of a cluster."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import unicodedata
from collections import OrderedDict
from typing import TYPE_CHECKING

from commhub.cluster.outage import Outage

from .text import clean_text

if TYPE_CHECKING:  # one node never loads the Redis client
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

CacheKey = tuple[str, str, str, str]  # (engine, source, target, normalised text)


def normalise(text: str) -> str:
    """Same words, same key: safe code points only (clean_text), NFC, no edge blanks, inner
    runs of blanks collapsed per line. Used before the cache key, so before every engine."""
    text = unicodedata.normalize("NFC", clean_text(text))
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


class TranslationCache:
    """Plain LRU. Used only from the event loop thread, so it needs no lock."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[CacheKey, str] = OrderedDict()

    def get(self, key: CacheKey) -> str | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def peek(self, key: CacheKey) -> str | None:
        """The value if held, without counting or reordering."""
        return self._data.get(key)

    def put(self, key: CacheKey, value: str) -> None:
        if self.size == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()


class SharedCache:
    """Finished translations in Redis, for every node of a cluster: one engine call per
    text and pair however many nodes ask. Keys `{prefix}:tr:{engine}:{src}:{tgt}:{sha256 of
    the normalised text}`, values the translation, each with a TTL; values above
    `max_value` bytes are neither written nor believed.

    Redis trouble never fails a translation: a lookup or write that fails (or takes longer
    than `timeout`) is a miss, logged once per outage, and Redis is left alone for `retry`
    seconds (the local LRU and the engines carry on) before the next try."""

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        *,
        ttl: float = 7 * 86400.0,
        max_value: int = 64 * 1024,
        timeout: float = 0.5,
        retry: float = 5.0,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = max(1, int(ttl * 1000))
        self.max_value = max_value
        self.timeout = timeout
        self.retry = retry
        self.hits = 0
        self.misses = 0
        self.outage = Outage(
            log, "the shared translation cache", "translating with the local cache only", retry
        )

    def key(self, key: CacheKey) -> str:
        engine, src, tgt, text = key
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{self.prefix}:tr:{engine}:{src}:{tgt}:{digest}"

    @property
    def available(self) -> bool:
        """False while Redis is left alone after a failure."""
        return self.outage.available

    @property
    def errors(self) -> int:
        return self.outage.errors

    async def get(self, key: CacheKey) -> str | None:
        if not self.available:
            return None
        from redis.exceptions import ResponseError  # loaded with the client already

        try:
            value = await asyncio.wait_for(self.redis.get(self.key(key)), self.timeout)
        except ResponseError:  # Redis answered: that key holds something else (not ours)
            self.outage.answered()
            self.misses += 1
            return None
        except Exception as exc:  # any other Redis trouble is a miss, never a failure
            self.outage.failed(exc)
            return None
        self.outage.answered()
        if not isinstance(value, str) or len(value.encode("utf-8", "replace")) > self.max_value:
            self.misses += 1  # none, or not something this code wrote: translate again
            return None
        self.hits += 1
        return clean_text(value)  # another node wrote it; nothing unencodable gets out

    async def put(self, key: CacheKey, value: str) -> None:
        if not self.available or len(value.encode("utf-8", "replace")) > self.max_value:
            return
        try:
            await asyncio.wait_for(
                self.redis.set(self.key(key), value, px=self.ttl_ms), self.timeout
            )
        except Exception as exc:
            self.outage.failed(exc)
            return
        self.outage.answered()
