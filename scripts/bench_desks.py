#!/usr/bin/env python3
"""Desk benchmark: visitors arriving at a desk's queue, agents taking them (signalling only).

One `commhub serve` process, one desk (automatic assignment), A agents signed in. V visitors
arrive over T seconds (Poisson arrivals), join the queue and wait; each agent ends each
session after a handling time drawn from an exponential distribution (mean H seconds: a real
support call of minutes, compressed in time so that the queue builds up and drains as it would
over a morning), then takes the next. Measured:

- queue update latency: from an agent's `desk_end` to each waiting visitor's new position
  (`desk_waiting`), the live update every waiting visitor gets after every assignment;
- the reply to `desk_join` (a visitor entering the queue);
- baseline, the same run: a `ping` round trip through one idle connection during the load
  (what any reply costs on this hub at that moment), and before the load;
- hub CPU (its process, user + system) and the longest queue.

Visitor tokens are minted here with the hub's secret, as the public link mints them (the link
is rate-limited per client address; one load generator would hit that limit).

    .venv/bin/python scripts/bench_desks.py --visitors 1000 --agents 20 --over 180
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from benchlib import UNLIMITED, HubProcess, cpu_seconds, pct, start_hub, write_json

from commhub import auth
from commhub.desks.tokens import issue_agent

ROOT = Path(__file__).resolve().parent.parent
DESK = "bench-desk"
SETTINGS = {**UNLIMITED, "captions": "false", "translation": "false", "desk_max_queue": "10000"}
LANGS = ("ko", "en", "es", "vi", "zh")


class Run:
    def __init__(self) -> None:
        self.last_end = 0.0  # when an agent last sent desk_end (monotonic)
        self.update_ms: list[float] = []
        self.join_ms: list[float] = []
        self.waits: list[float] = []
        self.done = 0
        self.longest_queue = 0
        self.state_bytes = 0


async def agent(
    http: aiohttp.ClientSession, hub: HubProcess, i: int, run: Run, mean: float, stop: asyncio.Event
) -> None:
    token = issue_agent(hub.secret, desk=DESK, identity=f"agent-{i}", speak=LANGS[i % len(LANGS)])
    ws = await http.ws_connect(f"{hub.url}/v1/signal?access_token={token}", heartbeat=None)
    await ws.send_str('{"type":"desk_join","status":"available"}')

    async def end(session: str, after: float) -> None:
        await asyncio.sleep(after)
        run.last_end = time.monotonic()
        await ws.send_str(json.dumps({"type": "desk_end", "session": session,
                                      "outcome": "resolved"}))  # fmt: skip

    tasks = set()
    async for raw in ws:
        if raw.type != aiohttp.WSMsgType.TEXT:
            break
        msg = json.loads(raw.data)
        if msg["type"] == "desk_assigned":
            task = asyncio.create_task(end(msg["session"], random.expovariate(1 / mean)))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        elif msg["type"] == "desk_state":
            run.state_bytes += len(raw.data)
            if i == 0:
                run.longest_queue = max(run.longest_queue, len(msg["queue"]))
        if stop.is_set():
            break
    await ws.close()


async def visitor(http: aiohttp.ClientSession, hub: HubProcess, i: int, run: Run) -> None:
    speak = LANGS[i % len(LANGS)]
    token = auth.issue(
        hub.secret, room=f"desk.{DESK}", identity=f"visitor-{i}", name=f"Visitor {i}",
        grants=(), speak=speak, ttl=3600, desk=auth.DeskClaim(DESK, "visitor", None),
    )  # fmt: skip
    ws = await http.ws_connect(f"{hub.url}/v1/signal?access_token={token}", heartbeat=None)
    sent = time.monotonic()
    await ws.send_str('{"type":"desk_join","id":"j"}')
    position = None
    async for raw in ws:
        now = time.monotonic()
        msg = json.loads(raw.data)
        if msg["type"] == "desk_waiting":
            if msg.get("ref") == "j":
                run.join_ms.append((now - sent) * 1000)
            elif position is not None and msg["position"] < position and run.last_end:
                run.update_ms.append((now - run.last_end) * 1000)
            position = msg["position"]
        elif msg["type"] == "desk_assigned":
            run.waits.append(now - sent)
        elif msg["type"] == "desk_ended":
            run.done += 1
            break
    await ws.close()


async def pinger(
    http: aiohttp.ClientSession, hub: HubProcess, out: list[float], stop: asyncio.Event
) -> None:
    ws = await http.ws_connect(f"{hub.url}/v1/signal?access_token={hub.token('ping', 'pinger')}")
    await ws.send_str('{"type":"join"}')  # joined: no join timeout
    n = 0
    while not stop.is_set():
        n += 1
        sent = time.monotonic()
        await ws.send_str(json.dumps({"type": "ping", "id": f"p{n}"}))
        while True:
            msg = json.loads((await ws.receive()).data)
            if msg.get("ref") == f"p{n}":
                break
        out.append((time.monotonic() - sent) * 1000)
        await asyncio.sleep(0.1)
    await ws.close()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--visitors", type=int, default=1000)
    ap.add_argument("--agents", type=int, default=20)
    ap.add_argument("--over", type=float, default=180.0, help="seconds the arrivals span")
    ap.add_argument("--handle", type=float, default=3.0, help="mean handling time, seconds")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "desks.json"))
    args = ap.parse_args()
    random.seed(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        hub = start_hub(Path(tmp), SETTINGS)
        try:
            doc = await measure(hub, args)
        finally:
            problems = hub.log_problems()
            hub.stop()
    if problems:
        print("hub log problems:", *problems[:5], sep="\n  ", file=sys.stderr)
    rows = [
        ("queue update (desk_end -> new position)", doc["update_ms"]),
        ("desk_join reply", doc["join_ms"]),
        ("baseline: ping during the load", doc["ping_load_ms"]),
        ("baseline: ping before the load", doc["ping_idle_ms"]),
    ]
    print(f"{args.visitors} visitors over {args.over:g} s, {args.agents} agents, "
          f"mean handling {args.handle:g} s (indicative: shared, loaded machine)")  # fmt: skip
    print(f"{'':>42} | {'n':>6} | {'p50 ms':>8} | {'p95 ms':>8} | {'max ms':>8}")
    for name, stats in rows:
        print(f"{name:>42} | {stats['n']:>6} | {stats['p50']:>8.1f} | {stats['p95']:>8.1f} | "
              f"{stats['max']:>8.1f}")  # fmt: skip
    print(f"hub CPU {doc['hub_cpu_pct']:.1f} % of one core over {doc['wall_s']:.0f} s; "
          f"longest queue {doc['longest_queue']}; sessions ended {doc['sessions']}; "
          f"wait p95 {doc['wait_p95_s']:.1f} s; desk_state to agents "
          f"{doc['state_mib']:.1f} MiB")  # fmt: skip
    await asyncio.to_thread(write_json, Path(args.json), doc)
    print(f"wrote {args.json}")


def stats(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "max": max(values, default=float("nan"))}  # fmt: skip


async def measure(hub: HubProcess, args: argparse.Namespace) -> dict[str, Any]:
    admin = {"Authorization": f"Bearer {hub.token('*', 'bench', grants=['admin'])}"}
    run, stop = Run(), asyncio.Event()
    idle: list[float] = []
    loaded: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async with http.post(f"{hub.url}/v1/admin/desks", headers=admin,
                             json={"name": DESK, "languages": list(LANGS)}) as resp:  # fmt: skip
            assert resp.status == 201, await resp.text()
        quiet = asyncio.Event()
        ping = asyncio.create_task(pinger(http, hub, idle, quiet))
        await asyncio.sleep(3)
        quiet.set()
        await ping
        agents = [asyncio.create_task(agent(http, hub, i, run, args.handle, stop))
                  for i in range(args.agents)]  # fmt: skip
        await asyncio.sleep(1)
        ping = asyncio.create_task(pinger(http, hub, loaded, stop))
        cpu0, t0 = cpu_seconds(hub.ps), time.monotonic()
        visitors = []
        for i in range(args.visitors):
            visitors.append(asyncio.create_task(visitor(http, hub, i, run)))
            await asyncio.sleep(random.expovariate(args.visitors / args.over))
        await asyncio.gather(*visitors)
        wall, cpu = time.monotonic() - t0, cpu_seconds(hub.ps) - cpu0
        stop.set()
        await ping
        for t in agents:
            t.cancel()
        await asyncio.gather(*agents, return_exceptions=True)
    return {
        "visitors": args.visitors, "agents": args.agents, "over_s": args.over,
        "handle_mean_s": args.handle, "wall_s": wall, "hub_cpu_pct": 100 * cpu / wall,
        "update_ms": stats(run.update_ms), "join_ms": stats(run.join_ms),
        "ping_load_ms": stats(loaded), "ping_idle_ms": stats(idle),
        "longest_queue": run.longest_queue, "sessions": run.done,
        "wait_p95_s": pct(run.waits, 95), "state_mib": run.state_bytes / 2**20,
        "note": "indicative: a shared machine under other load",
    }  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main())
