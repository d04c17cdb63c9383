#!/usr/bin/env python3
"""Cluster benchmark: the signalling benchmark on 1, 2 and 3 hub nodes sharing a real
redis-server, against one node without Redis (the baseline) in the same run.

N WebSocket clients in M rooms (client i in room i mod M); each round of M clients enters
through the next node (a load balancer's round robin, so every room's clients arrive at every
node) and follows `redirect` to the room's owner. Each node keeps its own SQLite store, as
the baseline does (`--postgres`: all on one throwaway PostgreSQL, the baseline too).
Measured per configuration:
- join latency from the first connect to `joined` (so the routing look-up at the upgrade and
  a redirect's second connection count), p50/p95, split into direct joins and redirected
  ones: in waves of 10 (as bench_signalling), and one at a time (`--probes`: the hop alone);
- chat delivery latency at a conversational pace, and fan-out throughput (burst, the median
  of `--repeats` runs), as scripts/bench_signalling.py does; server CPU is summed over the
  nodes, Redis's CPU is reported apart;
- rooms placed per node, and rooms whose clients ended on more than one node (must be 0);
- failover (k >= 2): SIGKILL the node owning most rooms; time from the kill until each of its
  clients has joined again through its entry (backoff 0.2 s doubling to 2 s, with jitter).

Everything (nodes, Redis, the one load-generator process) shares this machine's cores, so
more nodes add routing work, not capacity: the figures are indicative of the routing cost,
not of what several machines hold.

    .venv/bin/python scripts/bench_cluster.py --quick      # 200 clients, 20 rooms: ~2 min
    .venv/bin/python scripts/bench_cluster.py              # 500 clients, 50 rooms: ~4 min
    .venv/bin/python scripts/bench_cluster.py --quick --lease-ttl 3   # failover vs the TTL
    .venv/bin/python scripts/bench_cluster.py --postgres   # every node on one PostgreSQL
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from benchlib import UNLIMITED, cpu_seconds, pct, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers.cluster import Cluster  # noqa: E402
from tests.helpers.services import PostgresServer  # noqa: E402

JOIN_WAVE = 10
MAX_REDIRECTS = 3


@dataclass
class Config:
    name: str
    nodes: int
    redis: bool


CONFIGS = [
    Config("1 node, no Redis (baseline)", 1, False),
    Config("1 node + Redis", 1, True),
    Config("2 nodes + Redis", 2, True),
    Config("3 nodes + Redis", 3, True),
]


@dataclass
class Client:
    """One participant: joins through its entry, follows redirects, counts chat deliveries,
    and (once `reconnect` is on) joins again through its entries after a drop."""

    session: aiohttp.ClientSession
    entries: list[str]  # its entry first, then the other nodes (what a load balancer tries)
    token: str
    room: int
    ws: aiohttp.ClientWebSocketResponse | None = None
    node: str = ""
    redirects: int = 0  # in the latest join
    latencies: list[float] = field(default_factory=list)
    received: int = 0
    reconnect: bool = False
    dropped_at: float | None = None
    rejoined_at: float | None = None
    reader: asyncio.Task[None] | None = None

    async def join(self, deadline: float = 60.0) -> float:
        """Connect through the entries and join; seconds from the first connect to `joined`."""
        started = time.perf_counter()
        attempt, backoff, target, in_a_row = 0, 0.2, "", 0
        async with asyncio.timeout(deadline):
            while True:
                url = target or self.entries[attempt % len(self.entries)]
                target = ""
                try:
                    got = await self._try(url)
                except (aiohttp.ClientError, OSError, ConnectionError):
                    got = None
                if isinstance(got, float):
                    self.redirects = in_a_row
                    return got - started
                if got is not None and in_a_row < MAX_REDIRECTS:  # a redirect: go at once
                    target, in_a_row = got, in_a_row + 1
                    continue
                attempt, in_a_row = attempt + 1, 0
                await asyncio.sleep(backoff * (0.5 + random.random()))
                backoff = min(2.0, backoff * 2)

    async def _try(self, url: str) -> float | str | None:
        """joined: its time; redirect: the URL; anything else: None."""
        ws = await self.session.ws_connect(
            f"{url}/v1/signal", params={"access_token": self.token}, heartbeat=None
        )
        with contextlib.suppress(Exception):
            await ws.send_str('{"type":"join"}')
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            if data["type"] == "joined":
                self.ws, self.node = ws, url
                self.reader = asyncio.create_task(self._read(ws))
                return time.perf_counter()
            if data["type"] == "redirect":
                await ws.close()
                return str(data["url"])
            if data["type"] in ("error", "bye"):
                break
        await ws.close()
        return None

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.data
            if data.startswith('{"type":"chat"'):
                self.received += 1
                start = data.find("t=") + 2  # text is "t=<perf_counter>|..."
                if start > 1:
                    self.latencies.append(
                        time.perf_counter() - float(data[start : data.index("|", start)])
                    )
        if self.reconnect and self.ws is ws:
            self.dropped_at = time.perf_counter()
            with contextlib.suppress(Exception):
                await self.join(deadline=120.0)
                self.rejoined_at = time.perf_counter()

    async def close(self) -> None:
        self.reconnect = False
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            self.reader.cancel()
            with contextlib.suppress(BaseException):
                await self.reader


class Nodes:
    """One configuration's nodes and redis-server (tests/helpers/cluster.py), with the product's
    defaults where the test harness turns things off (moderation, translation, captions), and
    no outgoing schema check: what bench_signalling.py runs against."""

    def __init__(self, folder: Path, cfg: Config, settings: dict[str, str], lease_ttl: float):
        self.lease_ttl = lease_ttl
        env = {
            "COMMHUB_MODERATION": "true",
            "COMMHUB_TRANSLATION": "true",
            "COMMHUB_CAPTIONS": "true",
            "COMMHUB_CHECK_OUTGOING": "false",
        }
        env |= {f"COMMHUB_{k.upper()}": v for k, v in settings.items()}
        # each node keeps its own SQLite store, as the baseline does: one store shared by
        # several writers would measure the database, not the routing (`--set database_url=`
        # gives them one, e.g. PostgreSQL)
        self.cluster = Cluster(
            folder,
            cfg.nodes,
            redis=cfg.redis,
            database_url=settings.get("database_url", ""),
            lease_ttl=lease_ttl,
            env=env,
        )

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.cluster.nodes]

    def token(self, room: str, identity: str) -> str:
        return self.cluster.token(room, identity)

    async def start(self) -> None:
        await self.cluster.start()

    def _processes(self) -> list[psutil.Process]:
        out = []
        for n in self.cluster.nodes:
            with contextlib.suppress(psutil.Error):
                if n.alive and n.proc.proc is not None:
                    out.append(psutil.Process(n.proc.proc.pid))
        return out

    def cpu(self) -> float:
        total = 0.0
        for ps in self._processes():
            with contextlib.suppress(psutil.Error):
                total += cpu_seconds(ps)
        return total

    def redis_cpu(self) -> float:
        redis = self.cluster.redis
        if redis is None or redis.proc is None:
            return 0.0
        with contextlib.suppress(psutil.Error):
            return cpu_seconds(psutil.Process(redis.proc.pid))
        return 0.0

    def rss(self) -> list[float]:
        out = []
        for ps in self._processes():
            with contextlib.suppress(psutil.Error):
                out.append(ps.memory_info().rss / 2**20)
        return out

    async def kill(self, url: str) -> None:
        await self.cluster.stop_node(self.cluster.node_at(url), signal.SIGKILL)

    async def stop(self) -> None:
        for n in self.cluster.nodes:
            if n.alive:
                with contextlib.suppress(Exception):
                    await self.cluster.stop_node(n, signal.SIGTERM, timeout=30)
        await self.cluster.close()


def ms(values: list[float], p: float) -> float:
    return pct(values, p) * 1000


async def chat_phase(
    clients: list[Client], m: int, msgs: int, paced: float | None, nodes: Nodes
) -> dict[str, Any]:
    for c in clients:
        c.latencies.clear()
        c.received = 0
    senders = {c.room: c for c in reversed(clients)}
    per_room = Counter(c.room for c in clients)
    expected = sum(per_room[r] for r in senders) * msgs
    cpu0, rcpu0 = nodes.cpu(), nodes.redis_cpu()
    started = time.perf_counter()

    async def send_all(c: Client) -> None:
        assert c.ws is not None
        for k in range(msgs):
            await c.ws.send_str(
                json.dumps({"type": "chat", "text": f"t={time.perf_counter()}|{k}"})
            )
            await asyncio.sleep(paced or 0)

    await asyncio.gather(*(send_all(c) for c in senders.values()))
    deadline = time.perf_counter() + 60
    while sum(c.received for c in clients) < expected and time.perf_counter() < deadline:
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - started
    delivered = sum(c.received for c in clients)
    return {
        "elapsed": elapsed,
        "delivered": delivered,
        "expected": expected,
        "server_cpu_s": nodes.cpu() - cpu0,
        "redis_cpu_s": nodes.redis_cpu() - rcpu0,
        "latencies": [x for c in clients for x in c.latencies],
    }


async def probe_joins(
    session: aiohttp.ClientSession, nodes: Nodes, urls: list[str], args: argparse.Namespace
) -> tuple[list[float], list[float]]:
    """One join at a time into the running rooms (nothing else in flight), entering through
    each node in turn, then leaving: the routing hop's own cost, direct and redirected."""
    direct: list[float] = []
    redirected: list[float] = []
    for k in range(args.probes):
        entry = k % len(urls)
        token = nodes.token(f"room{k % args.rooms}", f"probe{k}")
        c = Client(session, urls[entry:] + urls[:entry], token, k % args.rooms)
        took = await c.join()
        (redirected if c.redirects else direct).append(took)
        await c.close()
    return direct, redirected


async def run_config(
    cfg: Config, args: argparse.Namespace, settings: dict[str, str], folder: Path
) -> dict[str, Any]:
    nodes = Nodes(folder, cfg, settings, args.lease_ttl)
    await nodes.start()
    urls = nodes.urls
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    clients: list[Client] = []
    try:
        for i in range(args.clients):
            # client i is in room i mod M; its entry turns with each round of M clients, so
            # every room's clients come in through every node
            entry = (i // args.rooms) % len(urls)
            clients.append(
                Client(
                    session,
                    urls[entry:] + urls[:entry],
                    nodes.token(f"room{i % args.rooms}", f"u{i}"),
                    i % args.rooms,
                )
            )
        direct: list[float] = []
        redirected: list[float] = []
        for wave in range(0, len(clients), JOIN_WAVE):  # joins arrive in waves, as users do
            batch = clients[wave : wave + JOIN_WAVE]
            took = await asyncio.gather(*(c.join() for c in batch))
            for c, t in zip(batch, took, strict=True):
                (redirected if c.redirects else direct).append(t)
        await asyncio.sleep(0.5)
        owners = {r: {c.node for c in clients if c.room == r} for r in range(args.rooms)}
        placed = Counter(next(iter(o)) for o in owners.values() if len(o) == 1)
        split = sum(1 for o in owners.values() if len(o) > 1)

        probe_direct, probe_redirected = await probe_joins(session, nodes, urls, args)
        paced = await chat_phase(clients, args.rooms, args.paced_messages, 0.1, nodes)
        bursts = [
            await chat_phase(clients, args.rooms, args.messages, None, nodes)
            for _ in range(args.repeats)
        ]
        rates = [b["delivered"] / b["elapsed"] for b in bursts]
        costs = [b["server_cpu_s"] / max(1, b["delivered"]) * 1e6 for b in bursts]
        burst = bursts[rates.index(pct(rates, 50))]  # the median run's latencies and counts
        joins = direct + redirected
        result: dict[str, Any] = {
            "config": cfg.name,
            "nodes": cfg.nodes,
            "redis": cfg.redis,
            "clients": args.clients,
            "rooms": args.rooms,
            "join_p50_ms": ms(joins, 50),
            "join_p95_ms": ms(joins, 95),
            "join_direct_n": len(direct),
            "join_direct_p50_ms": ms(direct, 50),
            "join_direct_p95_ms": ms(direct, 95),
            "join_redirected_n": len(redirected),
            "join_redirected_p50_ms": ms(redirected, 50),
            "join_redirected_p95_ms": ms(redirected, 95),
            "chat_p50_ms": ms(paced["latencies"], 50),
            "chat_p95_ms": ms(paced["latencies"], 95),
            "burst_p95_ms": ms(burst["latencies"], 95),
            "delivered": burst["delivered"],
            "expected": burst["expected"],
            "probe_direct_n": len(probe_direct),
            "probe_direct_p50_ms": ms(probe_direct, 50),
            "probe_direct_p95_ms": ms(probe_direct, 95),
            "probe_redirected_n": len(probe_redirected),
            "probe_redirected_p50_ms": ms(probe_redirected, 50),
            "probe_redirected_p95_ms": ms(probe_redirected, 95),
            "deliveries_per_s": pct(rates, 50),
            "deliveries_per_s_runs": rates,
            "server_cpu_us_per_delivery": pct(costs, 50),
            "server_cpu_us_per_delivery_runs": costs,
            "redis_cpu_s": sum(b["redis_cpu_s"] for b in bursts) + paced["redis_cpu_s"],
            "server_rss_mib": nodes.rss(),
            "rooms_per_node": {f"node{urls.index(u)}": n for u, n in sorted(placed.items())},
            "rooms_split": split,
        }
        if cfg.nodes >= 2 and not args.no_failover:
            result |= await failover(clients, nodes, urls, placed)
        return result
    finally:
        for c in clients:
            await c.close()
        await session.close()
        await nodes.stop()


async def failover(
    clients: list[Client], nodes: Nodes, urls: list[str], placed: Counter[str]
) -> dict[str, Any]:
    """SIGKILL the node owning most rooms; its clients join again through their entries."""
    victim = (placed or Counter(c.node for c in clients)).most_common(1)[0][0]
    hit = [c for c in clients if c.node == victim]
    for c in clients:
        c.reconnect = True
    killed = time.perf_counter()
    await nodes.kill(victim)
    deadline = time.perf_counter() + 120
    while any(c.rejoined_at is None for c in hit) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    back = [c.rejoined_at - killed for c in hit if c.rejoined_at is not None]
    moved = {r: {c.node for c in hit if c.room == r} for r in {c.room for c in hit}}
    return {
        "failover_killed": f"node{urls.index(victim)}",
        "failover_clients": len(hit),
        "failover_rejoined": len(back),
        "failover_p50_s": pct(back, 50),
        "failover_all_s": max(back) if back else float("nan"),
        "failover_rooms_split": sum(1 for o in moved.values() if len(o) > 1),
        "lease_ttl_s": nodes.lease_ttl,
    }


def table(results: list[dict[str, Any]], base: dict[str, Any]) -> None:
    print(
        f"{'configuration':<28} | {'join p50/p95':>13} | {'direct p50/p95':>14} | "
        f"{'redirected p50/p95 (n)':>22} | {'chat p50/p95':>12} | {'deliv/s':>8} | "
        f"{'ratio':>5} | {'µs/deliv':>8} | rooms per node"
    )
    for r in results:
        red = (
            f"{r['join_redirected_p50_ms']:.1f}/{r['join_redirected_p95_ms']:.1f} "
            f"({r['join_redirected_n']})"
            if r["join_redirected_n"]
            else "-"
        )
        print(
            f"{r['config']:<28} | {r['join_p50_ms']:>6.1f}/{r['join_p95_ms']:<6.1f} | "
            f"{r['join_direct_p50_ms']:>6.1f}/{r['join_direct_p95_ms']:<7.1f} | {red:>22} | "
            f"{r['chat_p50_ms']:>5.1f}/{r['chat_p95_ms']:<6.1f} | {r['deliveries_per_s']:>8.0f} | "
            f"{r['deliveries_per_s'] / base['deliveries_per_s']:>5.2f} | "
            f"{r['server_cpu_us_per_delivery']:>8.1f} | "
            f"{' '.join(f'{k}:{v}' for k, v in r['rooms_per_node'].items())}"
            + (f" (split {r['rooms_split']})" if r["rooms_split"] else "")
        )
    redis = [f"{r['config']} {r['redis_cpu_s']:.2f} s" for r in results if r["redis"]]
    print(f"Redis CPU during the chat phases: {', '.join(redis)} (chat does not go through it)")
    print("one join at a time (the routing hop alone): direct p50/p95, redirected p50/p95")
    for r in results:
        red = (
            f"{r['probe_redirected_p50_ms']:.1f}/{r['probe_redirected_p95_ms']:.1f} ms"
            f" ({r['probe_redirected_n']})"
            if r["probe_redirected_n"]
            else "-"
        )
        print(
            f"  {r['config']:<28} direct {r['probe_direct_p50_ms']:.1f}/"
            f"{r['probe_direct_p95_ms']:.1f} ms ({r['probe_direct_n']}), redirected {red}"
        )
    for r in results:
        if "failover_clients" in r:
            print(
                f"failover, {r['config']}: SIGKILL {r['failover_killed']} "
                f"({r['failover_clients']} clients): {r['failover_rejoined']} rejoined, "
                f"p50 {r['failover_p50_s']:.2f} s, all {r['failover_all_s']:.2f} s "
                f"(lease TTL {r['lease_ttl_s']:g} s)"
            )


async def fresh_database(pg: PostgresServer, name: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(
        host="127.0.0.1", port=pg.port, user=PostgresServer.USER, database="postgres"
    )
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return pg.url_of(name)


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--rooms", type=int, default=50)
    ap.add_argument("--messages", type=int, default=300, help="burst chat messages per room")
    ap.add_argument("--paced-messages", type=int, default=30, help="paced (10/s) per room")
    ap.add_argument("--lease-ttl", type=float, default=10.0, help="COMMHUB_LEASE_TTL (default)")
    ap.add_argument("--probes", type=int, default=100, help="one-at-a-time joins")
    ap.add_argument("--repeats", type=int, default=3, help="burst runs (the median counts)")
    ap.add_argument("--no-failover", action="store_true")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting (COMMHUB_NAME) for every node, e.g. database_url=postgresql+asyncpg://..",
    )
    ap.add_argument("--quick", action="store_true", help="200 clients, 20 rooms, 100 messages")
    ap.add_argument(
        "--postgres",
        action="store_true",
        help="every node of every configuration (the baseline too) on one PostgreSQL "
        "(a throwaway server, Debian's postgresql), instead of a SQLite file per node",
    )
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "cluster.json"))
    args = ap.parse_args()
    os.chdir(ROOT)  # the nodes run `python -m commhub.cli`: this checkout's code, not the venv's
    if args.quick:
        args.clients, args.rooms, args.messages, args.paced_messages = 200, 20, 100, 20
        args.probes = 60

    # signalling only: no models, no captions, no imagery in any node
    settings = {**UNLIMITED, "caption_preload": "[]", "imagery": "false"}
    settings |= dict(item.split("=", 1) for item in args.set)
    results = []
    load_before = os.getloadavg()
    pg = PostgresServer() if args.postgres else None
    if pg is not None:
        await asyncio.to_thread(pg.setup)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for n, cfg in enumerate(CONFIGS):
                print(f"running: {cfg.name}", flush=True)
                if pg is not None:  # a fresh database per configuration, every node on it
                    settings["database_url"] = await fresh_database(pg, f"bench{n}")
                results.append(await run_config(cfg, args, settings, Path(tmp) / f"c{n}"))
    finally:
        if pg is not None:
            await asyncio.to_thread(pg.teardown)
    base = results[0]
    print(
        f"\ncluster: {args.clients} clients in {args.rooms} rooms, {args.messages} burst chat "
        f"messages per room, {os.cpu_count()} cores, load average before "
        f"{load_before[0]:.1f}, after {os.getloadavg()[0]:.1f}; store: "
        f"{'one PostgreSQL' if args.postgres else 'SQLite per node'} (every node, Redis and "
        "the load generator on this machine: indicative figures)"
    )
    table(results, base)
    doc = {
        "results": results,
        "throughput_ratio": {
            r["config"]: r["deliveries_per_s"] / base["deliveries_per_s"] for r in results
        },
        "store": "postgresql (one for all nodes)" if args.postgres else "sqlite (one per node)",
        "load_average": [load_before, os.getloadavg()],
        "cores": os.cpu_count(),
    }
    await asyncio.to_thread(write_json, Path(args.json), doc)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    asyncio.run(main())
