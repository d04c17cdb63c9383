"""The store's Prometheus metrics (registered in the hub's registry)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class StoreMetrics:
    def __init__(self, registry: CollectorRegistry | None) -> None:
        reg = registry if registry is not None else CollectorRegistry()
        self.queue = Gauge(
            "commhub_store_queue", "writes waiting for the store's writer", registry=reg
        )
        self.batch = Histogram(
            "commhub_store_batch_writes",
            "writes committed together in one transaction",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=reg,
        )
        self.commit_seconds = Histogram(
            "commhub_store_commit_seconds",
            "time to write and commit one batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=reg,
        )
        self.waits = Counter(
            "commhub_store_backpressure_waits", "awaited writes that waited for queue space",
            registry=reg,
        )  # fmt: skip
        self.dropped = Counter(
            "commhub_store_dropped_writes", "queued writes dropped (queue full or database fault)",
            ["kind"], registry=reg,
        )  # fmt: skip
        self.errors = Counter(
            "commhub_store_errors", "batches or probes the database refused", registry=reg
        )
        self.healthy = Gauge(
            "commhub_store_healthy", "1 when the database takes writes", registry=reg
        )
