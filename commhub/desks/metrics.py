"""Prometheus metrics of the desks, on the hub's registry."""

from __future__ import annotations

import contextlib

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class DeskMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.queue_length = Gauge(
            "commhub_desk_queue_length", "Visitors waiting, by desk", ["desk"], registry=registry
        )
        self.wait = Histogram(
            "commhub_desk_wait_seconds",
            "Time from joining a desk's queue to being taken by an agent",
            ["desk"],
            buckets=(5, 15, 30, 60, 120, 300, 600, 900, 1800, 3600),
            registry=registry,
        )
        self.sessions = Counter(
            "commhub_desk_sessions",
            "Desk sessions ended, by outcome",
            ["desk", "outcome"],
            registry=registry,
        )
        self.agents = Gauge(
            "commhub_desk_agents",
            "Agents signed in, by desk and status",
            ["desk", "status"],
            registry=registry,
        )
        self.occupancy = Gauge(
            "commhub_desk_agent_occupancy",
            "Share of a desk's agents (signed in, not away) that are in a session",
            ["desk"],
            registry=registry,
        )

    def forget(self, desk: str) -> None:
        """A deleted desk's series go too."""
        for gauge in (self.queue_length, self.occupancy):
            with contextlib.suppress(KeyError):
                gauge.remove(desk)
        for status in ("available", "busy", "away"):
            with contextlib.suppress(KeyError):
                self.agents.remove(desk, status)
