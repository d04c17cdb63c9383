"""How late the hub's event loop wakes up: a histogram on the hub's registry.

A task asks to wake every ``INTERVAL`` and records how much later it woke. Anything that
holds the loop (a blocking call, a long callback) shows as lag, and so does starvation for
CPU or the GIL: it is an upper bound on the longest callback, read from outside (/metrics)
without the cost of asyncio's debug mode.
"""

from __future__ import annotations

import asyncio
import contextlib

from prometheus_client import CollectorRegistry, Histogram

INTERVAL = 0.05  # seconds; 20 samples a second cost nothing measurable
BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class LoopLag:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            "commhub_event_loop_lag_seconds",
            f"How much later than asked the event loop woke a task sleeping {INTERVAL} s",
            buckets=BUCKETS,
            registry=registry,
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="commhub-loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time()
            await asyncio.sleep(INTERVAL)
            self.lag.observe(max(0.0, loop.time() - asked - INTERVAL))
