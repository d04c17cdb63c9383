"""Prometheus metrics of the translation layer, on a registry owned by the caller."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram


class TranslationMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # A private registry by default: two services in one process (tests, bench)
        # must not collide on the global one.
        self.registry = registry if registry is not None else CollectorRegistry()
        self.requests = Counter(
            "commhub_translation_requests",
            "Translation requests, by engine route and status",
            ["engine", "status"],
            registry=self.registry,
        )
        self.cache_hits = Counter(
            "commhub_translation_cache_hits",
            "Translations served from cache",
            registry=self.registry,
        )
        self.cache_misses = Counter(
            "commhub_translation_cache_misses",
            "Translations not in cache (an engine ran or joined a running call)",
            registry=self.registry,
        )
        self.engine_calls = Counter(
            "commhub_translation_engine_calls",
            "translate_batch calls made on an engine",
            ["engine"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "commhub_translation_seconds",
            "Time from request to result, by engine route",
            ["engine"],
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "commhub_translation_batch_size",
            "Texts per engine call, by engine",
            ["engine"],
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )
