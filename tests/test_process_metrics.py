"""The hub's own process metrics on /metrics (what a soak test watches for leaks, and the
event loop's lag that the caption benchmark reads)."""

from __future__ import annotations

import asyncio
import time

from tests.conftest import Running
from tests.helpers.metrics import samples


async def tasks_gauge(url: str) -> float:
    values = await samples(url, "commhub_asyncio_")
    assert len(values) == 1, values
    return next(iter(values.values()))


async def test_asyncio_tasks_rise_with_connections_and_fall_back(hub: Running) -> None:
    # The hub runs in this test's loop, so the gauge counts the clients' tasks too: the
    # point is that every task a connection creates, on both sides, ends with it.
    before = await tasks_gauge(hub.url)
    assert before >= 1
    clients = [await hub.joined("tasks", f"u{i}") for i in range(5)]
    during = await tasks_gauge(hub.url)
    assert during >= before + 5, (before, during)
    for c in clients:
        await c.close()
    hub.clients.clear()
    after = during
    for _ in range(100):  # the hub's handlers end once it has read each close frame
        after = await tasks_gauge(hub.url)
        if after <= before:
            break
        await asyncio.sleep(0.05)
    assert after <= before, (before, during, after)


async def test_a_blocked_event_loop_shows_as_lag(hub: Running) -> None:
    lag = "commhub_event_loop_lag_seconds"

    async def over_25ms() -> tuple[float, float]:
        got = await samples(hub.url, lag)
        total = got[f"{lag}_count{{}}"]
        return total, total - got[f"{lag}_bucket{{le=0.025}}"]

    await asyncio.sleep(0.2)  # the watcher has run a few times
    count, late = await over_25ms()
    assert count >= 1
    time.sleep(0.2)  # noqa: ASYNC251 (the point: a blocking call on the loop)
    await asyncio.sleep(0.1)
    count_after, late_after = await over_25ms()
    assert count_after > count and late_after >= late + 1
