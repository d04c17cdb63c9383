#!/usr/bin/env python3
"""Store benchmark: what committing every chat before anyone gets it costs.

The same `commhub serve` process setup twice in one run, store on (SQLite under the data
dir, WAL, synchronous=FULL, group commit) and store off (the in-memory path: the baseline),
alternating when --rounds > 1. N clients in M rooms; first one sender per room at a
conversational pace (delivery latency), then S senders per room as fast as they can
(throughput: concurrent writers share commits). Latency is send -> receipt by every reader,
the sender's own echo (its acknowledgement) included. Prints a table and writes JSON.

    .venv/bin/python scripts/bench_store.py --clients 100 --rooms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from bench_signalling import Client, pct_ms
from benchlib import UNLIMITED, HubProcess, scrape, start_hub, write_json

ROOT = Path(__file__).resolve().parent.parent

SETTINGS = {**UNLIMITED, "captions": "false", "translation": "false"}


async def run(hub: HubProcess, store: bool, args: argparse.Namespace) -> dict[str, Any]:
    n, m = args.clients, args.rooms
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    clients: list[Client] = []
    for i in range(n):
        token = hub.token(f"room{i % m}", f"u{i}")
        ws = await session.ws_connect(f"{hub.url}/v1/signal?access_token={token}", heartbeat=None)
        clients.append(Client(ws, i % m))
        await ws.send_str('{"type":"join"}')
    await asyncio.gather(*(c.joined for c in clients))
    per_room = {r: sum(1 for c in clients if c.room == r) for r in range(m)}

    async def phase(senders: list[Client], msgs: int, paced: float | None) -> dict[str, Any]:
        for c in clients:
            c.latencies.clear()
            c.received = 0
        expected = sum(per_room[s.room] for s in senders) * msgs
        before = await scrape(http, hub.url, "commhub_store")
        started = time.perf_counter()

        async def send_all(c: Client) -> None:
            for k in range(msgs):
                await c.ws.send_str(
                    json.dumps({"type": "chat", "text": f"t={time.perf_counter()}|{k}"})
                )
                await asyncio.sleep(paced or 0)

        await asyncio.gather(*(send_all(s) for s in senders))
        deadline = time.perf_counter() + 120
        while sum(c.received for c in clients) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        after = await scrape(http, hub.url, "commhub_store")
        lat = [x for c in clients for x in c.latencies]
        commits = after.get("commhub_store_batch_writes_count{}", 0) - before.get(
            "commhub_store_batch_writes_count{}", 0
        )
        writes = after.get("commhub_store_batch_writes_sum{}", 0) - before.get(
            "commhub_store_batch_writes_sum{}", 0
        )
        delivered = sum(c.received for c in clients)
        commit_s = after.get("commhub_store_commit_seconds_sum{}", 0) - before.get(
            "commhub_store_commit_seconds_sum{}", 0
        )
        return {
            "p50_ms": pct_ms(lat, 50),
            "p95_ms": pct_ms(lat, 95),
            "chats_per_s": len(senders) * msgs / elapsed,
            "deliveries_per_s": delivered / elapsed,
            "delivered": delivered,
            "expected": expected,
            "commits": commits,
            "writes_per_commit": writes / commits if commits else 0.0,
            "commit_ms": commit_s / commits * 1000 if commits else 0.0,
        }

    async with aiohttp.ClientSession() as http:
        await asyncio.sleep(0.3)
        first = [next(c for c in clients if c.room == r) for r in range(m)]
        paced = await phase(first, args.paced, 0.1)
        burst_senders = [
            c for r in range(m) for c in [x for x in clients if x.room == r][: args.senders]
        ]
        burst = await phase(burst_senders, args.burst, None)
    for c in clients:
        await c.ws.close()
    await session.close()
    return {"store": store, "paced": paced, "burst": burst}


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--senders", type=int, default=5, help="senders per room in the burst")
    ap.add_argument("--paced", type=int, default=50, help="messages per room at 10/s")
    ap.add_argument("--burst", type=int, default=100, help="messages per burst sender")
    ap.add_argument("--rounds", type=int, default=2, help="store on/off pairs, alternating")
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "store.json"))
    args = ap.parse_args()

    results: list[dict[str, Any]] = []
    for i in range(args.rounds):
        order = [True, False] if i % 2 == 0 else [False, True]
        for store in order:
            with tempfile.TemporaryDirectory() as data:
                settings = {**SETTINGS, "store": "true" if store else "false"}
                hub = await asyncio.to_thread(start_hub, Path(data), settings)
                try:
                    results.append(await run(hub, store, args))
                    problems = hub.log_problems()
                    if problems:
                        print("hub log problems:", *problems[:5], sep="\n  ", file=sys.stderr)
                finally:
                    await asyncio.to_thread(hub.stop)

    def summary(store: bool) -> dict[str, float]:
        runs = [r for r in results if r["store"] == store]
        med = statistics.median
        return {
            "paced_p50_ms": med(r["paced"]["p50_ms"] for r in runs),
            "paced_p95_ms": med(r["paced"]["p95_ms"] for r in runs),
            "burst_p50_ms": med(r["burst"]["p50_ms"] for r in runs),
            "burst_p95_ms": med(r["burst"]["p95_ms"] for r in runs),
            "burst_chats_per_s": med(r["burst"]["chats_per_s"] for r in runs),
            "burst_deliveries_per_s": med(r["burst"]["deliveries_per_s"] for r in runs),
            "writes_per_commit": med(r["burst"]["writes_per_commit"] for r in runs),
            "commit_ms": med(r["burst"]["commit_ms"] for r in runs),
        }

    rows = {"store on": summary(True), "memory (baseline)": summary(False)}
    print(
        f"store: {args.clients} clients in {args.rooms} rooms; paced 10 msg/s per room, then "
        f"{args.senders} senders per room x {args.burst} at once; median of {args.rounds} "
        f"run(s) each; {os.cpu_count()} cores (a shared machine: indicative)"
    )
    cols = list(rows["store on"])
    print(f"{'':>18} | " + " | ".join(f"{c:>22}" for c in cols))
    for name, row in rows.items():
        print(f"{name:>18} | " + " | ".join(f"{row[c]:>22.1f}" for c in cols))
    ratio = rows["store on"]["burst_chats_per_s"] / rows["memory (baseline)"]["burst_chats_per_s"]
    print(f"chat throughput with the store: {ratio:.2f}x the in-memory path")
    doc = {"args": vars(args), "runs": results, "summary": rows, "throughput_ratio": ratio}
    await asyncio.to_thread(write_json, Path(args.json), doc)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
