"""The hub's /metrics read over HTTP, as any scraper would."""

from __future__ import annotations

import aiohttp
from prometheus_client.parser import text_string_to_metric_families


async def metrics_text(url: str) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


async def metric(url: str, name: str, **labels: str) -> float:
    """Sum of the samples called `name` (a full sample name, e.g. ..._total or ..._count)
    whose labels include `labels`; 0.0 when there are none."""
    text = await metrics_text(url)
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


async def samples(url: str, prefix: str) -> dict[str, float]:
    """{"name{k=v,...}": value} of every sample whose name starts with `prefix`."""
    text = await metrics_text(url)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith(prefix):
                labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}"] = float(s.value)
    return out
