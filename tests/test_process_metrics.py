"""The hub's own process gauge on /metrics (what a soak test watches for leaks)."""

from __future__ import annotations

import asyncio

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
