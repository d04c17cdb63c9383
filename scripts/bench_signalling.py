#!/usr/bin/env python3
"""Signalling benchmark: N WebSocket clients in M rooms join, then chat.

Measures join latency, chat delivery latency and fan-out throughput through a real
`commhub serve` process, and the same fan-out through a bare aiohttp WebSocket broadcast
server (the baseline) in the same run. Prints a table and writes JSON.

    .venv/bin/python scripts/bench_signalling.py --clients 500 --rooms 10
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from benchlib import UNLIMITED, pct, start_hub, write_json

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from commhub import auth  # noqa: E402

JOIN_WAVE = 10


# -- the baseline: a bare aiohttp broadcast server ---------------------------------------


def baseline_server(port: int) -> None:
    from aiohttp import web

    rooms: dict[str, set[web.WebSocketResponse]] = {}

    async def ws_handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        room = rooms.setdefault(request.query["room"], set())
        sender = "PA_" + secrets.token_urlsafe(9)
        room.add(ws)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    data = json.loads(msg.data)  # parse and re-encode, as any real server must
                    # the same shape and size as the hub's chat event: equal bytes on the wire
                    event = {
                        "type": "chat",
                        "id": "CH_" + secrets.token_urlsafe(9),
                        "from": {"id": sender, "identity": "u0000", "name": "u0000"},
                        "text": data["text"],
                        "lang": "en",
                        "ts": round(time.time(), 3),
                    }
                    out = json.dumps(event, separators=(",", ":"))
                    for peer in list(room):
                        await peer.send_str(out)
        finally:
            room.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/ws", ws_handler)
    web.run_app(app, host="127.0.0.1", port=port, print=lambda *_: print("ready", flush=True))


# -- clients -------------------------------------------------------------------------------


class Client:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: int) -> None:
        self.ws = ws
        self.room = room
        self.latencies: list[float] = []
        self.received = 0
        self.joined = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        async for msg in self.ws:
            data = msg.data
            if data.startswith('{"type":"chat"'):
                self.received += 1
                # text is "t=<perf_counter>|..." : no JSON parse on the hot path
                start = data.index("t=") + 2
                self.latencies.append(
                    time.perf_counter() - float(data[start : data.index("|", start)])
                )
            elif data.startswith('{"type":"joined"') and not self.joined.done():
                self.joined.set_result(time.perf_counter())


def pct_ms(values: list[float], p: float) -> float:
    return pct(values, p) * 1000


async def run_target(
    kind: str, url: str, n: int, m: int, msgs: int, proc: psutil.Process, secret: str = "unused"
) -> dict[str, Any]:
    connector = aiohttp.TCPConnector(limit=0)
    session = aiohttp.ClientSession(connector=connector)
    clients: list[Client] = []
    sem = asyncio.Semaphore(50)

    async def connect(i: int) -> Client:
        room = i % m
        async with sem:
            if kind == "hub":
                token = auth.issue(secret, room=f"room{room}", identity=f"u{i}")
                ws = await session.ws_connect(
                    f"{url}/v1/signal?access_token={token}", heartbeat=None
                )
            else:
                ws = await session.ws_connect(f"{url}/ws?room=room{room}")
            return Client(ws, room)

    clients = list(await asyncio.gather(*(connect(i) for i in range(n))))
    join_ms: list[float] = []
    if kind == "hub":
        for wave in range(0, n, JOIN_WAVE):  # joins arrive in waves, as users do
            batch = clients[wave : wave + JOIN_WAVE]
            sent = time.perf_counter()
            for c in batch:
                await c.ws.send_str('{"type":"join"}')
            done = await asyncio.gather(*(c.joined for c in batch))
            join_ms += [(t - sent) for t in done]
    await asyncio.sleep(0.5)
    for c in clients:
        c.latencies.clear()
        c.received = 0

    senders = {c.room: c for c in reversed(clients)}
    per_room = {r: sum(1 for c in clients if c.room == r) for r in range(m)}

    async def phase(paced: float | None) -> tuple[float, int, float, list[float]]:
        """Every room's sender sends msgs chats, paced (seconds apart) or as a burst;
        returns elapsed seconds, deliveries, server CPU seconds and latencies."""
        for c in clients:
            c.latencies.clear()
            c.received = 0
        expected = sum(per_room[r] for r in senders) * msgs
        cpu0 = proc.cpu_times()
        started = time.perf_counter()

        async def send_all(c: Client) -> None:
            for k in range(msgs):
                text = f"t={time.perf_counter()}|{k}"
                await c.ws.send_str(json.dumps({"type": "chat", "text": text}))
                await asyncio.sleep(paced or 0)

        await asyncio.gather(*(send_all(c) for c in senders.values()))
        deadline = time.perf_counter() + 60
        while sum(c.received for c in clients) < expected and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        cpu1 = proc.cpu_times()
        cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
        delivered = sum(c.received for c in clients)
        return elapsed, delivered, cpu, [x for c in clients for x in c.latencies]

    # Latency at a conversational pace (10 messages/s per room), then throughput (burst).
    _, _, _, lat = await phase(0.1)
    elapsed, delivered, server_cpu, burst_lat = await phase(None)
    expected = sum(per_room[r] for r in senders) * msgs
    rss = proc.memory_info().rss / 2**20
    for c in clients:
        await c.ws.close()
    await session.close()
    return {
        "target": kind,
        "clients": n,
        "rooms": m,
        "join_p50_ms": pct_ms(join_ms, 50),
        "join_p95_ms": pct_ms(join_ms, 95),
        "join_p99_ms": pct_ms(join_ms, 99),
        "chat_p50_ms": pct_ms(lat, 50),
        "chat_p95_ms": pct_ms(lat, 95),
        "burst_p50_ms": pct_ms(burst_lat, 50),
        "burst_p95_ms": pct_ms(burst_lat, 95),
        "delivered": delivered,
        "expected": expected,
        "deliveries_per_s": delivered / elapsed,
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_delivery": server_cpu / max(1, delivered) * 1e6,
        "server_rss_mib": rss,
    }


async def start(cmd: list[str], env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(*cmd, env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
    return proc, line


async def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--clients", type=int, default=500)
    ap.add_argument("--rooms", type=int, default=10)
    ap.add_argument("--messages", type=int, default=300, help="chat messages sent per room")
    ap.add_argument("--json", default=str(ROOT / "bench-results" / "signalling.json"))
    args = ap.parse_args()

    # signalling only: no speech models in the hub's RSS
    settings = {**UNLIMITED, "caption_preload": "[]"}
    results = []

    with tempfile.TemporaryDirectory() as data:
        hub = await asyncio.to_thread(start_hub, Path(data), settings)
        try:
            results.append(
                await run_target(
                    "hub", hub.url, args.clients, args.rooms, args.messages, hub.ps, hub.secret
                )
            )
        finally:
            await asyncio.to_thread(hub.stop)
    port = 18000 + os.getpid() % 1000
    base, _ = await start(
        [sys.executable, __file__, "--baseline-server", str(port)], dict(os.environ)
    )
    results.append(
        await run_target(
            "bare-aiohttp",
            f"http://127.0.0.1:{port}",
            args.clients,
            args.rooms,
            args.messages,
            psutil.Process(base.pid),
        )
    )
    base.terminate()
    await base.wait()

    hub_r, base_r = results
    ratio = hub_r["deliveries_per_s"] / base_r["deliveries_per_s"]
    cols = [
        "target",
        "join_p50_ms",
        "join_p95_ms",
        "join_p99_ms",
        "chat_p50_ms",
        "chat_p95_ms",
        "burst_p95_ms",
        "deliveries_per_s",
        "server_cpu_us_per_delivery",
        "server_rss_mib",
    ]
    print(
        f"signalling: {args.clients} clients in {args.rooms} rooms, "
        f"{args.messages} chat messages per room, {os.cpu_count()} cores"
    )
    print(" | ".join(f"{c:>14}" for c in cols))
    for r in results:
        print(
            " | ".join(f"{r[c]:>14.1f}" if isinstance(r[c], float) else f"{r[c]:>14}" for c in cols)
        )
    print(
        f"fan-out vs bare aiohttp: {ratio:.2f}x (goal >= 0.5); "
        f"join p95 {hub_r['join_p95_ms']:.1f} ms (goal <= 50)"
    )
    await asyncio.to_thread(
        write_json, Path(args.json), {"results": results, "fanout_ratio": ratio}
    )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--baseline-server":
        baseline_server(int(sys.argv[2]))
    else:
        asyncio.run(main())
