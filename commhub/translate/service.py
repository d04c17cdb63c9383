"""TranslationService: one per process, shared by all rooms. Cache, routing, batching, metrics.

It never raises for engine trouble: callers always get a Translation whose status says what
happened, with the original text when nothing could be translated.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import CollectorRegistry

from .base import Translation, TranslationError, Translator
from .batching import BatchingRunner
from .cache import CacheKey, SharedCache, TranslationCache, normalise
from .languages import to_iso1
from .metrics import TranslationMetrics
from .routing import Route, Router


class TranslatorBusy(TranslationError):
    """More translations already wait for the engines than the queue allows."""


class TranslationService:
    def __init__(
        self,
        engines: Sequence[Translator],
        *,
        cache_size: int = 10000,
        max_chars: int = 2000,
        timeout: float = 10.0,
        workers: int = 2,
        registry: CollectorRegistry | None = None,
        preferences: dict[str, str] | None = None,
        max_batch: int | None = None,
        queue: int = 256,
        shared: SharedCache | None = None,
    ) -> None:
        """``preferences`` maps "en-es" -> engine name to override the automatic choice.
        ``max_batch`` caps texts per engine call for every engine (1 disables batching).
        ``queue``: engine calls waiting or running at once, all pairs together; a request
        beyond it fails at once (busy) instead of piling up behind a slow engine.
        ``shared``: the cluster's cache in Redis, asked after the local LRU and written
        after each engine call (also settable later: ``service.shared = SharedCache(...)``)."""
        self._engines = {engine.name: engine for engine in engines}
        self._preferences = {
            "-".join(to_iso1(c) for c in k.split("-", 1)): v for k, v in (preferences or {}).items()
        }
        self.max_chars = max_chars
        self.timeout = timeout
        self.queue = max(1, queue)
        self.metrics = TranslationMetrics(registry)
        self.cache = TranslationCache(cache_size)
        self.shared = shared
        self._lookups: dict[CacheKey, asyncio.Future[str | None]] = {}
        self._writes: set[asyncio.Task[None]] = set()
        # Bounded: engine calls never run on the event loop, and never more than `workers` at once.
        self._executor = ThreadPoolExecutor(max(1, workers), thread_name_prefix="translate")
        self._runner = BatchingRunner(self._executor, self.metrics, max_batch)
        self._inflight: dict[CacheKey, asyncio.Future[str]] = {}
        self._router = Router({})
        self.refresh()

    # -- routing ----------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read each engine's installed pairs (after an install). Cheap directory scans."""
        pairs = {name: engine.pairs() for name, engine in self._engines.items()}
        self._router = Router(pairs, self._preferences)

    def engine_for(self, source: str, target: str) -> str | None:
        route = self._router.route(to_iso1(source), to_iso1(target))
        return route.label if route is not None else None

    def matrix(self) -> dict[tuple[str, str], str]:
        return self._router.matrix()

    def describe(self) -> str:
        """The installed pairs for people: "en->es (apertium), es->en (apertium)"."""
        return ", ".join(f"{s}->{t} ({e})" for (s, t), e in sorted(self.matrix().items()))

    @property
    def engines(self) -> dict[str, Translator]:
        return dict(self._engines)

    # -- translating ------------------------------------------------------------------

    async def translate(self, text: str, source: str, target: str) -> Translation:
        started = time.perf_counter()
        src, tgt = to_iso1(source), to_iso1(target)
        result = await self._translate(text, src, tgt)
        label = result.engine or "none"
        self.metrics.requests.labels(label, result.status).inc()
        self.metrics.latency.labels(label).observe(time.perf_counter() - started)
        return result

    async def translate_many(
        self, text: str, source: str, targets: Iterable[str]
    ) -> dict[str, Translation]:
        """Once per distinct target language, however many listeners asked for it."""
        distinct = list(dict.fromkeys(to_iso1(t) for t in targets))
        results = await asyncio.gather(*(self.translate(text, source, t) for t in distinct))
        return dict(zip(distinct, results, strict=True))

    async def _translate(self, text: str, src: str, tgt: str) -> Translation:
        if src == tgt:
            return Translation(text, src, tgt, None, "same")
        if len(text) > self.max_chars:
            detail = f"{len(text)} characters, limit {self.max_chars}"
            return Translation(text, src, tgt, None, "too_long", detail=detail)
        route = self._router.route(src, tgt)
        if route is None:
            detail = f"no {src}->{tgt} translation installed"
            return Translation(text, src, tgt, None, "unavailable", detail=detail)
        clean = normalise(text)
        if not clean:
            return Translation("", src, tgt, route.label, "ok")
        try:
            out, cached = await asyncio.wait_for(self._run(route, clean), self.timeout)
        except TimeoutError:
            detail = f"timed out after {self.timeout:g} s"
            return Translation(text, src, tgt, route.label, "failed", detail=detail)
        except TranslatorBusy as exc:
            return Translation(text, src, tgt, route.label, "failed", detail=str(exc))
        except Exception as exc:
            detail = f"{type(exc).__name__}: {exc}"
            return Translation(text, src, tgt, route.label, "failed", detail=detail)
        return Translation(out, src, tgt, route.label, "ok", cached=cached)

    async def _run(self, route: Route, text: str) -> tuple[str, bool]:
        cached_all = True
        for engine, src, tgt in route.legs:
            text, cached = await self._leg(engine, src, tgt, text)
            cached_all = cached_all and cached
        return text, cached_all

    async def _leg(self, engine: str, src: str, tgt: str, text: str) -> tuple[str, bool]:
        key: CacheKey = (engine, src, tgt, text)
        hit = self.cache.get(key)
        if hit is not None:
            self.metrics.cache_hits.inc()
            return hit, True
        if self.shared is not None and key not in self._inflight:
            hit = await self._shared_get(self.shared, key)
            if hit is None:  # it may have been translated here while Redis answered
                hit = self.cache.peek(key)
            if hit is not None:
                self.cache.put(key, hit)
                self.metrics.cache_hits.inc()
                return hit, True
        self.metrics.cache_misses.inc()
        fut = self._inflight.get(key)
        if fut is None:
            # _inflight holds every text waiting for (or in) an engine, hub-wide. A request
            # joining one of them adds no work; a new one beyond the bound is refused now.
            if len(self._inflight) >= self.queue:
                raise TranslatorBusy(
                    f"translator busy: {len(self._inflight)} translations already waiting "
                    f"(translate_queue {self.queue}); try again later"
                )
            # Identical concurrent requests (the same caption for many rooms) share one call.
            fut = self._runner.submit(self._engines[engine], src, tgt, text)
            self._inflight[key] = fut
            fut.add_done_callback(functools.partial(self._settle, key))
        # shield: one waiter timing out must not cancel the call others are waiting on.
        return await asyncio.shield(fut), False

    async def _shared_get(self, shared: SharedCache, key: CacheKey) -> str | None:
        """One Redis lookup per key at a time, however many ask (SharedCache never raises)."""
        fut = self._lookups.get(key)
        if fut is None:
            fut = asyncio.ensure_future(shared.get(key))
            self._lookups[key] = fut
            fut.add_done_callback(lambda _: self._lookups.pop(key, None))
        return await asyncio.shield(fut)

    def _settle(self, key: CacheKey, fut: asyncio.Future[str]) -> None:
        self._inflight.pop(key, None)
        if not fut.cancelled() and fut.exception() is None:
            self.cache.put(key, fut.result())
            if self.shared is not None:  # for the other nodes; in the background, never awaited
                write = asyncio.ensure_future(self.shared.put(key, fut.result()))
                self._writes.add(write)
                write.add_done_callback(self._writes.discard)

    async def aclose(self) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)  # each bounded by its timeout
        await self._runner.aclose()
        loop = asyncio.get_running_loop()
        # Closing an engine may wait for its worker (an Apertium pipe), so off the loop.
        await loop.run_in_executor(None, self._close_blocking)

    def _close_blocking(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        for engine in self._engines.values():
            engine.close()  # also unblocks a worker stuck on a pipe
        self._executor.shutdown(wait=True)
