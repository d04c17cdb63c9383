"""Prometheus metrics of the signalling layer, on a registry owned by one hub."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class HubMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.connections = Gauge(
            "commhub_connections", "Open signalling WebSocket connections", registry=registry
        )
        self.rooms = Gauge("commhub_rooms", "Rooms on this node", registry=registry)
        self.participants = Gauge(
            "commhub_participants", "Joined participants on this node", registry=registry
        )
        self.messages_in = Counter(
            "commhub_messages_in", "Client messages received, by type", ["type"], registry=registry
        )
        self.messages_out = Counter(
            "commhub_messages_out",
            "Server messages delivered to connections, by type",
            ["type"],
            registry=registry,
        )
        self.errors = Counter(
            "commhub_errors", "Error replies and refusals, by code", ["code"], registry=registry
        )
        self.handle_seconds = Histogram(
            "commhub_message_handle_seconds",
            "Time to handle one client message, by type",
            ["type"],
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5),
            registry=registry,
        )
        # Set when /metrics is scraped: a leak of tasks shows only from inside the process
        # (threads, fds and RSS are visible from outside).
        self.asyncio_tasks = Gauge(
            "commhub_asyncio_tasks", "Tasks alive in the hub's event loop", registry=registry
        )
