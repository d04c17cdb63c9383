#!/usr/bin/env python3
"""Soak test: a hub process under steady chat and captioned speech for a long while.

The hub runs as its own process (`commhub serve`). Load comes from worker processes (this
script with --worker), so that the load generator does not starve on one core:

- chat workers: N WebSocket clients in rooms of R (default 500 in rooms of 50, over two
  processes); every room chats at a conversational rate (Poisson, --chat-rate messages/s per
  room, from a random member). Each message carries its send time, so every delivery's
  latency is measured by the receiver (sender and room share a process).
- a media worker: K WebRTC speakers (the SDK's RoomClient over aiortc) in one room, each
  looping espeak-ng Korean speech (7 sentences with 1.5 s pauses, staggered so the
  utterances do not all end together), live captions on with the sentence's four words as
  the hub's phrase list (Vosk grammar mode: espeak's Korean is not understood at open
  vocabulary), and a listener that stamps every caption: end of a sentence (when the frame
  holding it was handed to WebRTC) -> its final at the listener.

Every client counts what it should never see: any `error` or `bye`, an unexpected close
(by code), a failed connect, a schema violation (one client per room checks every message
against signalling/schemas), a lost chat delivery, a failed peer connection.

Every --interval seconds the hub is sampled: RSS, CPU %, threads, open fds (psutil) and
asyncio tasks (`commhub_asyncio_tasks` on /metrics). The run passes when:
  1. nothing unexpected happened (the counts above, the hub's log has no ERROR or
     traceback, the hub exits 0 on SIGTERM);
  2. RSS grows by less than 5 % from the end of warm-up (the first --warmup fraction of
     the run) to the end: the median of the samples in the window just after warm-up
     against the median of the last window (each --window of the run, at least 3 samples);
  3. tasks, threads and fds do not grow: the last window's median stays within the range
     the window just after warm-up spanned (its max is the noise allowed). Worker pools
     start threads lazily: in a short run with one or two speakers the recognizer pool
     may get its second thread after warm-up (+1 thread, not a leak); at 8 speakers it
     is full within seconds;
  4. nothing stalls: after warm-up, no --stall seconds (default 15) without a chat
     delivery or without a final caption.

Output: a table (stdout), bench-results/soak.json, bench-results/soak.png (RSS, CPU,
latencies, tasks/threads/fds over time) and the logs in bench-results/soak-logs/. Exit
status 1 when a criterion fails, 2 when the run could not be carried out.

    .venv/bin/python scripts/soak.py --duration 60 --clients 100 --speakers 2   # a quick look
    .venv/bin/python scripts/soak.py                       # 10 minutes, 500 clients, 8 speakers
    .venv/bin/python scripts/soak.py --replot bench-results/soak.json   # table and PNG again
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
sys.path.insert(0, str(ROOT))  # the checkout's commhub, not the copy installed in the venv

import aiohttp  # noqa: E402
import psutil  # noqa: E402
from benchlib import (  # noqa: E402
    HubProcess,
    cpu_pct,
    loop_lag,
    pct,
    scrape,
    start_hub,
    write_json,
)

from commhub import auth  # noqa: E402

LOOPBACK = ("127.0.0.1",)
FRAME_S = 0.02  # the speakers' audio frames
TICK_S = 1.0  # workers report this often
MEDIA_ROOM = "soak-media"
PHRASES = (
    "where is the city hall?",
    "the bus to the market leaves at ten",
    "thanks, see you tomorrow",
    "could you send me the form again?",
    "the meeting moved to three o'clock",
    "is the library open on sunday?",
    "my parcel has not arrived yet",
    "ok, I will call the front desk",
)


# -- worker side: talking to the orchestrator ---------------------------------------------


def emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg, separators=(",", ":")) + "\n")
    sys.stdout.flush()


async def commands() -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def wait_command(reader: asyncio.StreamReader, want: str) -> None:
    """Until the orchestrator says `want`; its end (EOF) counts as `stop`."""
    while True:
        line = (await reader.readline()).decode().strip()
        if line == want or not line:
            return


# -- chat worker --------------------------------------------------------------------------


class Member:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse, room: int, check: bool) -> None:
        self.ws = ws
        self.room = room
        self.check = check  # validate every message against the schemas
        self.reader: asyncio.Task[None] | None = None


class ChatWorker:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.rng = random.Random(spec["seed"])
        self.rooms: dict[int, list[Member]] = {r: [] for r in spec["rooms"]}
        self.errors: Counter[str] = Counter()
        self.latencies: list[float] = []  # since the last tick, seconds
        self.sent = self.expected = self.received = 0
        self.stopping = False
        self.lags: list[float] = []

    async def connect(self, http: aiohttp.ClientSession, room: int, i: int) -> None:
        token = auth.issue(
            self.spec["secret"], room=f"soak-{room}", identity=f"r{room}-u{i}", speak="en"
        )
        url = f"{self.spec['url']}/v1/signal?access_token={token}"
        try:
            ws = await http.ws_connect(url, heartbeat=None, timeout=aiohttp.ClientWSTimeout(30))
        except aiohttp.WSServerHandshakeError as exc:
            self.errors[f"connect_http_{exc.status}"] += 1
            return
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            self.errors[f"connect_{type(exc).__name__}"] += 1
            return
        member = Member(ws, room, check=i == 0)
        await ws.send_str('{"type":"join"}')
        try:
            first = await ws.receive(timeout=30)
        except TimeoutError:
            self.errors["join_timeout"] += 1
            await ws.close()
            return
        msg = json.loads(first.data) if first.type == aiohttp.WSMsgType.TEXT else {}
        if msg.get("type") != "joined":
            self.errors[f"join_{msg.get('code') or msg.get('type') or first.type.name}"] += 1
            await ws.close()
            return
        self.rooms[room].append(member)
        member.reader = asyncio.create_task(self.read(member))

    async def read(self, m: Member) -> None:
        from commhub.protocol import schemas

        check = schemas().check_server
        try:
            async for raw in m.ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    continue
                at = time.monotonic()
                msg = json.loads(raw.data)
                kind = msg["type"]
                if m.check:
                    try:
                        check(msg)
                    except Exception:
                        self.errors[f"schema_{kind}"] += 1
                if kind == "chat":
                    self.received += 1
                    text = msg["text"]
                    if text.startswith("t="):
                        self.latencies.append(at - float(text[2 : text.index("|")]))
                elif kind == "error":
                    self.errors[f"error_{msg['code']}"] += 1
                elif kind == "bye":
                    self.errors[f"bye_{msg['reason']}"] += 1
                elif kind == "server_shutdown":
                    self.errors["server_shutdown"] += 1
        except Exception as exc:
            self.errors[f"reader_{type(exc).__name__}"] += 1
        if not self.stopping:
            self.errors[f"close_{m.ws.close_code}"] += 1

    async def talk(self, room: int) -> None:
        members = self.rooms[room]
        seq = 0
        while True:
            await asyncio.sleep(self.rng.expovariate(self.spec["chat_rate"]))
            live = [m for m in members if m.reader is not None and not m.reader.done()]
            if not live:
                continue
            sender = self.rng.choice(live)
            seq += 1
            text = f"t={time.monotonic():.6f}|{room}.{seq}| {self.rng.choice(PHRASES)}"
            try:
                await sender.ws.send_str(json.dumps({"type": "chat", "text": text}))
            except (aiohttp.ClientError, ConnectionError) as exc:
                self.errors[f"send_{type(exc).__name__}"] += 1
                continue
            self.sent += 1
            self.expected += len(live)

    async def report(self) -> None:
        errors_seen: Counter[str] = Counter()
        sent = received = 0
        while True:
            await asyncio.sleep(TICK_S)
            emit(
                {
                    "type": "tick",
                    "t": time.monotonic(),
                    "chat_ms": [round(x * 1000, 2) for x in self.latencies],
                    "sent": self.sent - sent,
                    "delivered": self.received - received,
                    "errors": dict(self.errors - errors_seen),
                    "lag_ms": round(max(self.lags, default=0.0) * 1000, 1),
                }
            )
            self.latencies.clear()
            self.lags.clear()
            errors_seen = self.errors.copy()
            sent, received = self.sent, self.received

    async def run(self) -> None:
        control = await commands()
        started = time.monotonic()
        http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        sem = asyncio.Semaphore(20)

        async def one(room: int, i: int) -> None:
            async with sem:
                await self.connect(http, room, i)

        await asyncio.gather(
            *(one(r, i) for i in range(self.spec["room_size"]) for r in self.spec["rooms"])
        )
        members = sum(len(v) for v in self.rooms.values())
        emit(
            {
                "type": "ready",
                "members": members,
                "setup_s": round(time.monotonic() - started, 2),
                "errors": dict(self.errors),
            }
        )
        self.errors.clear()  # the setup's errors went with "ready"
        await wait_command(control, "go")
        tasks = [asyncio.create_task(self.talk(r)) for r in self.rooms]
        tasks += [
            asyncio.create_task(self.report()),
            asyncio.create_task(loop_lag(self.lags, 0.05)),
        ]
        await wait_command(control, "stop")
        for t in tasks[:-2]:
            t.cancel()
        deadline = time.monotonic() + 15  # in-flight deliveries
        while self.received < self.expected and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for t in tasks[-2:]:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.stopping = True
        everyone = [m for ms in self.rooms.values() for m in ms]
        emit(
            {
                "type": "done",
                "sent": self.sent,
                "expected": self.expected,
                "delivered": self.received,
                "lost": max(0, self.expected - self.received),
                "chat_ms": [round(x * 1000, 2) for x in self.latencies],
                "errors": dict(self.errors),
            }
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await asyncio.gather(*(m.ws.close() for m in everyone), return_exceptions=True)
        for m in everyone:
            if m.reader is not None:
                m.reader.cancel()
        await http.close()


# -- media worker -------------------------------------------------------------------------


def make_loop_track(pcm: bytes) -> Any:
    """A live audio track looping `pcm` (16 kHz mono s16) once told to speak, else silence.

    Paced in real time in 20 ms frames; notes when each frame was handed to WebRTC, so a
    caption can be timed against the moment its audio left.
    """
    import numpy as np
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError
    from av import AudioFrame

    rate = 16000
    step = int(rate * FRAME_S)

    class LoopTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.pcm = np.frombuffer(pcm + bytes(-len(pcm) % (2 * step)), "<i2")
            self.silence = np.zeros(step, "<i2")
            self.n = 0  # frames handed on
            self.t0 = 0.0
            self.speech_from: int | None = None  # frame where the loop starts
            self.speech_until: int | None = None
            self.sent: list[float] = []
            # Held until the peer connection is up: the SDK's fan-out reads a track at once
            # and drops what its sender has not taken after 1 s, which would put the hub's
            # stream clock behind ours by an unknown amount.
            self.flowing = asyncio.Event()

        @property
        def loop_s(self) -> float:
            return len(self.pcm) / rate

        def start_speech(self, at: float) -> None:
            self.speech_from = max(self.n + 1, math.ceil((at - self.t0) / FRAME_S))

        def stop_speech(self) -> None:
            self.speech_until = self.n

        def frame_sent(self, stream_s: float) -> float:
            """When the frame holding `stream_s` (seconds of this track) was handed on."""
            idx = int(stream_s / FRAME_S)
            return self.sent[idx] if idx < len(self.sent) else self.t0 + stream_s

        async def recv(self) -> AudioFrame:
            if self.readyState != "live":
                raise MediaStreamError
            await self.flowing.wait()
            now = time.monotonic()
            if not self.sent:
                self.t0 = now
            due = self.t0 + self.n * FRAME_S
            if due > now:
                await asyncio.sleep(due - now)
            n = self.n
            speaking = (
                self.speech_from is not None
                and n >= self.speech_from
                and (self.speech_until is None or n < self.speech_until)
            )
            if speaking:
                assert self.speech_from is not None
                k = (n - self.speech_from) * step % len(self.pcm)
                block = self.pcm[k : k + step]
            else:
                block = self.silence
            frame = AudioFrame.from_ndarray(block.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = rate, n * step, Fraction(1, rate)
            self.sent.append(time.monotonic())
            self.n += 1
            return frame

    return LoopTrack()


class CaptionLedger:
    """Matches each final caption to the sentence of the loop it belongs to and times it."""

    def __init__(self, ends: list[float], words: list[str], pause: float) -> None:
        self.ends = ends  # sentence ends within one loop (seconds)
        self.words = words
        self.pause = pause
        self.tracks: dict[str, Any] = {}  # speaker's participant id -> LoopTrack
        self.offset: dict[str, float] = {}  # hub's stream time - ours (start, word timing)
        self.matched: dict[str, set[tuple[int, int]]] = {}
        self.latencies: list[float] = []  # since the last tick
        self.finals = self.right = self.split = self.unmatched = self.partials = 0
        self.captioned = 0  # sentences with a final

    def add(self, pid: str, track: Any) -> None:
        self.tracks[pid] = track
        self.offset[pid] = 0.0
        self.matched[pid] = set()

    def caption(self, msg: dict[str, Any], at: float) -> None:
        if not msg["final"]:
            self.partials += 1
            return
        self.finals += 1
        track = self.tracks.get(msg["speaker"])
        if track is None or track.speech_from is None or not msg["text"]:
            self.unmatched += 1
            return
        pid, loop, base = msg["speaker"], track.loop_s, track.speech_from * FRAME_S
        rel = msg["end"] - base - self.offset[pid]
        m0 = math.floor(rel / loop)
        m, j = min(
            ((m, j) for m in (m0 - 1, m0, m0 + 1) for j in range(len(self.ends))),
            key=lambda mj: abs(rel - (mj[0] * loop + self.ends[mj[1]])),
        )
        resid = rel - (m * loop + self.ends[j])
        if m < 0 or abs(resid) > self.pause / 2:
            self.unmatched += 1
            return
        self.offset[pid] += 0.1 * resid  # follow a slow drift of the hub's stream clock
        if (m, j) in self.matched[pid]:
            self.split += 1  # a second final for one sentence
            return
        self.matched[pid].add((m, j))
        self.captioned += 1
        self.latencies.append(at - track.frame_sent(base + m * loop + self.ends[j]))
        self.right += msg["text"].split() == self.words

    def expected(self) -> tuple[int, int]:
        """(sentences whose end was sent, of them captioned) over all speakers."""
        sent = got = 0
        for pid, track in self.tracks.items():
            if track.speech_from is None:
                continue
            stop = (track.speech_until or track.n) * FRAME_S
            base, loop = track.speech_from * FRAME_S, track.loop_s
            for m in range(int((stop - base) / loop) + 1):
                for j, end in enumerate(self.ends):
                    if base + m * loop + end + FRAME_S <= stop:
                        sent += 1
                        got += (m, j) in self.matched[pid]
        return sent, got


class Inbox(list[dict[str, Any]]):
    """A RoomClient inbox that keeps nothing: counts what must not happen, feeds captions."""

    def __init__(self, errors: Counter[str], captions: Callable[..., None] | None = None) -> None:
        super().__init__()
        self.errors = errors
        self.captions = captions
        self.notices: Counter[str] = Counter()

    def append(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "caption":
            if self.captions is not None:
                self.captions(msg, time.monotonic())
        elif kind == "error":
            self.errors[f"error_{msg['code']}"] += 1
        elif kind in ("bye", "media_closed"):
            self.errors[f"{kind}_{msg.get('reason', '')}".rstrip("_")] += 1
        elif kind == "server_shutdown":
            self.errors["server_shutdown"] += 1
        elif kind in ("caption_degraded", "caption_unavailable"):
            self.notices[kind] += 1


async def media_worker(spec: dict[str, Any]) -> None:
    from bench_captions_offline import PAUSE_S, WORDS, timeline

    from commhub.sdk import RoomClient

    control = await commands()
    started = time.monotonic()
    pcm, ends = await asyncio.to_thread(timeline, spec["sentences"])
    errors: Counter[str] = Counter()
    ledger = CaptionLedger(ends, WORDS, PAUSE_S)
    secret, url = spec["secret"], spec["url"]

    def token(identity: str, grants: tuple[str, ...]) -> str:
        claims = {"speak": "ko", "read": "ko", "grants": grants}
        return str(auth.issue(secret, room=MEDIA_ROOM, identity=identity, **claims))

    listener = RoomClient(url, token("listener", ("subscribe", "chat")), ice_hosts=LOOPBACK)
    inboxes = [Inbox(errors, ledger.caption)]
    listener.inbox = inboxes[0]
    clients = [listener]
    speakers: list[tuple[Any, Any]] = []
    lags: list[float] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await listener.connect()
        for i in range(spec["speakers"]):
            c = RoomClient(url, token(f"speaker-{i}", ("publish",)), ice_hosts=LOOPBACK)
            inboxes.append(Inbox(errors))
            c.inbox = inboxes[-1]
            clients.append(c)
            await c.connect()
            track = make_loop_track(pcm)
            await c.publish(track)
            speakers.append((c, track))
            ledger.add(c.pid, track)
            deadline = time.monotonic() + 60
            while c.pc is None or c.pc.connectionState != "connected":
                if time.monotonic() > deadline:
                    raise TimeoutError(f"speaker {i}'s peer connection did not connect in 60 s")
                await asyncio.sleep(0.02)
            track.flowing.set()
        emit(
            {
                "type": "ready",
                "members": len(clients),
                "setup_s": round(time.monotonic() - started, 2),
                "loop_s": speakers[0][1].loop_s if speakers else 0.0,
                "errors": dict(errors),
            }
        )
        errors.clear()
        await wait_command(control, "go")
        go = time.monotonic() + 0.2
        for i, (_, track) in enumerate(speakers):
            track.start_speech(go + i * track.loop_s / len(speakers))

        closed: set[int] = set()

        def check_clients() -> None:
            for i, c in enumerate(clients):
                if i in closed:
                    continue
                reader, ws = c._reader, c._ws  # the SDK keeps them private; a soak peeks
                if reader is not None and reader.done():
                    closed.add(i)
                    errors[f"close_{ws.close_code if ws is not None else None}"] += 1
                elif c is not listener and (c.pc is None or c.pc.connectionState != "connected"):
                    closed.add(i)
                    errors[f"pc_{c.pc.connectionState if c.pc else 'gone'}"] += 1

        async def report() -> None:
            errors_seen: Counter[str] = Counter()
            finals = partials = 0
            while True:
                await asyncio.sleep(TICK_S)
                check_clients()
                emit(
                    {
                        "type": "tick",
                        "t": time.monotonic(),
                        "caption_ms": [round(x * 1000, 1) for x in ledger.latencies],
                        "finals": ledger.finals - finals,
                        "partials": ledger.partials - partials,
                        "errors": dict(errors - errors_seen),
                        "lag_ms": round(max(lags, default=0.0) * 1000, 1),
                    }
                )
                ledger.latencies.clear()
                lags.clear()
                errors_seen = errors.copy()
                finals, partials = ledger.finals, ledger.partials

        tasks += [asyncio.create_task(report()), asyncio.create_task(loop_lag(lags, 0.05))]
        await wait_command(control, "stop")
        for _, track in speakers:
            track.stop_speech()
        # the last sentences' finals: the hub needs end-of-speech silence, then decodes
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline:
            sent, got = ledger.expected()
            if got >= sent:
                break
            await asyncio.sleep(0.1)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        check_clients()
        sent, got = ledger.expected()
        notices: Counter[str] = Counter()
        for inbox in inboxes:
            notices += inbox.notices
        emit(
            {
                "type": "done",
                "caption_ms": [round(x * 1000, 1) for x in ledger.latencies],
                "sentences": sent,
                "captioned": got,
                "finals": ledger.finals,
                "right": ledger.right,
                "matched": ledger.captioned,
                "split": ledger.split,
                "unmatched": ledger.unmatched,
                "notices": dict(notices),
                "errors": dict(errors),
            }
        )
    finally:
        for t in tasks:
            t.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(20):
                await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for _, track in speakers:
            track.stop()


def worker_main(kind: str, spec: dict[str, Any]) -> None:
    if kind == "chat":
        asyncio.run(ChatWorker(spec).run())
    else:
        asyncio.run(media_worker(spec))


# -- orchestrator -------------------------------------------------------------------------


class Worker:
    def __init__(self, name: str, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.ready: dict[str, Any] | None = None
        self.done: dict[str, Any] | None = None
        self.ticks: list[dict[str, Any]] = []
        self.got_ready = asyncio.Event()
        self.got_done = asyncio.Event()
        self.reader = asyncio.create_task(self.read())

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            msg = json.loads(line)
            if msg["type"] == "tick":
                self.ticks.append(msg)
            elif msg["type"] == "ready":
                self.ready = msg
                self.got_ready.set()
            elif msg["type"] == "done":
                self.done = msg
                self.got_done.set()
        self.got_ready.set()  # the worker ended: nobody waits forever
        self.got_done.set()

    async def say(self, command: str) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(ConnectionError):
            self.proc.stdin.write(f"{command}\n".encode())
            await self.proc.stdin.drain()

    def tail(self, n: int = 25) -> str:
        lines = self.log.read_text(errors="replace").splitlines()[-n:]
        return "\n  ".join(lines)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def spawn(name: str, kind: str, spec: dict[str, Any], logdir: Path) -> Worker:
    log = logdir / f"{name}.log"
    with log.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SELF),
            "--worker",
            kind,
            json.dumps(spec),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            cwd=ROOT,
            limit=2**24,  # a tick carries a second's latencies
        )
    return Worker(name, proc, log)


def hub_sample(ps: psutil.Process) -> dict[str, float]:
    with ps.oneshot():
        return {
            "rss_mib": ps.memory_info().rss / 2**20,
            "cpu_pct": ps.cpu_percent(None),
            "threads": float(ps.num_threads()),
            "fds": float(ps.num_fds()),
        }


async def run(args: argparse.Namespace) -> int:
    from bench_captions_offline import WORDS

    out_dir = Path(args.out)
    rooms = math.ceil(args.clients / args.room_size) if args.clients else 0
    settings = {
        "log_level": "warning",
        # every client comes from 127.0.0.1: lift the per-address limits above the load
        "max_connections_per_ip": str(args.clients + args.speakers + 100),
        "join_rate": "1000",
        "join_burst": str(args.clients + args.speakers + 100),
        "room_capacity": str(max(50, args.room_size, args.speakers + 1)),
        "ice_host_addresses": json.dumps(list(LOOPBACK)),
        "caption_phrases": json.dumps({"ko": WORDS}, ensure_ascii=False),
        "caption_preload": json.dumps(["ko"] if args.speakers else []),
        **dict(item.split("=", 1) for item in args.set),
    }
    tmp = Path(tempfile.mkdtemp(prefix="commhub-soak-"))
    logdir = out_dir / "soak-logs"  # made afresh by main()
    workers: list[Worker] = []
    hub: HubProcess | None = None
    problems: list[str] = []  # the run's own failures (not the hub's behaviour)
    samples: list[dict[str, Any]] = []
    http = aiohttp.ClientSession()
    setup: dict[str, Any] = {}
    t_go = 0.0
    hub_exit: int | None = None
    hub_log: list[str] = []
    try:
        started = time.monotonic()
        hub = await asyncio.to_thread(start_hub, tmp / "hub", settings)
        setup["hub_start_s"] = round(time.monotonic() - started, 2)
        base = {"url": hub.url, "secret": hub.secret}
        if args.speakers:
            spec = {**base, "speakers": args.speakers, "sentences": args.sentences}
            workers.append(await spawn("media", "media", spec, logdir))
        for k in range(min(args.workers, rooms)):
            spec = {
                **base,
                "rooms": list(range(k, rooms, args.workers)),
                "room_size": args.room_size,
                "chat_rate": args.chat_rate,
                "seed": args.seed + k,
            }
            workers.append(await spawn(f"chat-{k}", "chat", spec, logdir))
        try:
            async with asyncio.timeout(args.setup_timeout):
                await asyncio.gather(*(w.got_ready.wait() for w in workers))
        except TimeoutError:
            problems.append(f"setup took longer than {args.setup_timeout} s")
        for w in workers:
            if w.ready is None:
                problems.append(f"worker {w.name} never got ready; its log:\n  {w.tail()}")
        setup["ready_s"] = round(time.monotonic() - started, 2)
        setup["workers"] = {w.name: w.ready for w in workers}
        setup["members"] = sum((w.ready or {}).get("members", 0) for w in workers)
        print(
            f"soak: hub {hub.url}, {setup['members']} clients connected in "
            f"{setup['ready_s']:.0f} s; running {args.duration:.0f} s",
            file=sys.stderr,
        )
        if not problems:
            samples, t_go = await sample_run(args, hub, workers, http)
            for w in workers:
                await w.say("stop")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(60):
                    await asyncio.gather(*(w.got_done.wait() for w in workers))
            for w in workers:
                if w.done is None:
                    problems.append(f"worker {w.name} did not finish; its log:\n  {w.tail()}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(w.proc.wait(), 30)
    finally:
        await http.close()
        for w in workers:
            await w.stop()
        if hub is not None:
            hub_exit = await asyncio.to_thread(hub.stop)
            hub_log = hub.log_problems()
            shutil.copy(hub.log, logdir / "hub.log")
        shutil.rmtree(tmp, ignore_errors=True)
    if problems:
        print("soak: the run could not be carried out:\n" + "\n".join(problems), file=sys.stderr)
        return 2
    report = analyse(args, samples, workers, t_go, hub_exit, hub_log, settings, setup)
    write_json(out_dir / "soak.json", report)
    plot(report, out_dir / "soak.png")
    print(render(report))
    print(f"wrote {out_dir / 'soak.json'}, {out_dir / 'soak.png'}, logs in {logdir}")
    return 0 if report["passed"] else 1


async def sample_run(
    args: argparse.Namespace, hub: HubProcess, workers: list[Worker], http: aiohttp.ClientSession
) -> tuple[list[dict[str, Any]], float]:
    ps = hub.ps
    loads = [psutil.Process(w.proc.pid) for w in workers]
    for p in [ps, *loads]:
        cpu_pct(p)  # starts the CPU % clocks
    for w in workers:
        await w.say("go")
    t_go = time.monotonic()
    samples: list[dict[str, Any]] = []
    n = 0
    while True:
        s: dict[str, Any] = {"t": round(time.monotonic() - t_go, 2)}
        if hub.proc.poll() is not None:
            print(f"soak: the hub exited ({hub.proc.returncode}) at {s['t']} s", file=sys.stderr)
            break  # its exit code fails the run
        try:
            s.update(hub_sample(ps))
        except psutil.Error:
            break
        s["load_cpu_pct"] = sum(cpu_pct(p) for p in loads)
        if n == 0:  # the CPU % clocks started just now: no figure yet
            s["cpu_pct"] = s["load_cpu_pct"] = math.nan
        s["loadavg"] = os.getloadavg()[0]
        try:
            metrics = await scrape(http, hub.url, "commhub_")
            s["tasks"] = metrics.get("commhub_asyncio_tasks{}", math.nan)
            s["connections"] = metrics.get("commhub_connections{}", math.nan)
            s["hub_errors"] = sum(
                v for k, v in metrics.items() if k.startswith("commhub_errors_total")
            )
            s["dropped_utterances"] = metrics.get(
                "commhub_captions_dropped_utterances_total{}", 0.0
            )
            s["dropped_partials"] = metrics.get("commhub_captions_dropped_partials_total{}", 0.0)
        except (aiohttp.ClientError, TimeoutError) as exc:
            s["scrape_error"] = type(exc).__name__
        samples.append(s)
        if n % max(1, round(60 / args.interval)) == 0:
            print(
                f"  t={s['t']:5.0f} s  rss {s.get('rss_mib', math.nan):6.1f} MiB  "
                f"cpu {s.get('cpu_pct', math.nan):5.1f} %  tasks {s.get('tasks', math.nan):5.0f}  "
                f"fds {s.get('fds', math.nan):4.0f}  load {s['loadavg']:.1f}",
                file=sys.stderr,
            )
        if s["t"] >= args.duration - 0.01 or any(w.proc.returncode is not None for w in workers):
            break
        n += 1
        await asyncio.sleep(max(0.0, t_go + n * args.interval - time.monotonic()))
    return samples, t_go


# -- analysis -----------------------------------------------------------------------------


def analyse(
    args: argparse.Namespace,
    samples: list[dict[str, Any]],
    workers: list[Worker],
    t_go: float,
    hub_exit: int | None,
    hub_log: list[str],
    settings: dict[str, str],
    setup: dict[str, Any],
) -> dict[str, Any]:
    ticks = sorted(
        ({**t, "rel": t["t"] - t_go} for w in workers for t in w.ticks), key=lambda t: t["rel"]
    )
    # window k holds the ticks that ended in (t[k-1], t[k]]
    prev = -math.inf
    for s in samples:
        inside = [t for t in ticks if prev < t["rel"] <= s["t"]]
        prev = s["t"]
        chat = [x for t in inside for x in t.get("chat_ms", [])]
        cap = [x for t in inside for x in t.get("caption_ms", [])]
        seen: Counter[str] = Counter()
        for t in inside:
            seen.update(t["errors"])
        s.update(
            chat_n=len(chat),
            chat_p50_ms=pct(chat, 50),
            chat_p95_ms=pct(chat, 95),
            delivered=sum(t.get("delivered", 0) for t in inside),
            sent=sum(t.get("sent", 0) for t in inside),
            caption_n=len(cap),
            caption_p50_ms=pct(cap, 50),
            caption_p95_ms=pct(cap, 95),
            finals=sum(t.get("finals", 0) for t in inside),
            errors=dict(seen),
            load_lag_ms=max((t["lag_ms"] for t in inside), default=math.nan),
        )

    errors: Counter[str] = Counter()
    for w in workers:
        for code, n in (w.ready or {}).get("errors", {}).items():
            errors[f"setup_{code}"] += n
        if w.done is not None:
            errors.update(w.done["errors"])  # every error since ready, the last tick's too
        else:
            for t in w.ticks:
                errors.update(t["errors"])
    chat_done = [w.done for w in workers if w.name.startswith("chat") and w.done]
    media_done = next((w.done for w in workers if w.name == "media" and w.done), None)
    lost = sum(d["lost"] for d in chat_done)
    if lost:
        errors["lost_delivery"] += lost
    if any(s.get("scrape_error") for s in samples):
        errors["metrics_scrape_failed"] += sum(1 for s in samples if s.get("scrape_error"))
    if hub_log:
        errors["hub_log_error"] += len(hub_log)
    if hub_exit != 0:
        errors[f"hub_exit_{hub_exit}"] += 1
    for w in workers:
        if w.proc.returncode not in (0, None):
            errors[f"worker_{w.name}_exit_{w.proc.returncode}"] += 1

    warm = args.warmup * args.duration
    span = max(3 * args.interval, args.window * args.duration)
    ref = [s for s in samples if warm <= s["t"] <= warm + span]
    end = [s for s in samples if s["t"] >= samples[-1]["t"] - span] if samples else []
    after = [s for s in samples if s["t"] > warm]
    criteria: dict[str, dict[str, Any]] = {}

    criteria["no unexpected errors"] = {
        "ok": sum(errors.values()) == 0,
        "detail": ", ".join(f"{k} {v}" for k, v in errors.most_common()) or "none",
    }

    def med(rows: list[dict[str, Any]], key: str) -> float:
        vals = [r[key] for r in rows if isinstance(r.get(key), float) and not math.isnan(r[key])]
        return statistics.median(vals) if vals else math.nan

    rss0, rss1 = med(ref, "rss_mib"), med(end, "rss_mib")
    growth = (rss1 - rss0) / rss0 * 100
    criteria["RSS growth < 5 %"] = {
        "ok": growth < args.rss_limit,
        "detail": f"{rss0:.1f} -> {rss1:.1f} MiB ({growth:+.2f} %), "
        f"slope {slope(after, 'rss_mib') * 60:+.2f} MiB/min after warm-up",
        "from": rss0,
        "to": rss1,
        "growth_pct": growth,
    }
    for key in ("tasks", "threads", "fds"):
        vals = [r[key] for r in ref if not math.isnan(r.get(key, math.nan))]
        lo, hi = (min(vals), max(vals)) if vals else (math.nan, math.nan)
        a, b = med(ref, key), med(end, key)
        criteria[f"no growth in {key}"] = {
            "ok": b <= hi,
            "detail": f"{a:.0f} (noise {lo:.0f}..{hi:.0f}) -> {b:.0f}, "
            f"slope {slope(after, key) * 60:+.2f}/min",
            "from": a,
            "to": b,
            "noise": [lo, hi],
        }
    stop = samples[-1]["t"] if samples else 0.0
    gaps = {}
    for what, key, wanted in (
        ("chat", "delivered", args.clients),
        ("captions", "finals", args.speakers),
    ):
        if wanted:
            times = [warm] + [t["rel"] for t in ticks if t.get(key) and t["rel"] > warm] + [stop]
            gaps[what] = max(b - a for a, b in itertools.pairwise(times))
    criteria[f"chat and captions never stall for {args.stall:.0f} s"] = {
        "ok": all(g <= args.stall for g in gaps.values()),
        "detail": "longest gap after warm-up: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in gaps.items()),
        "gaps_s": gaps,
    }

    chat_all = [x for t in ticks if t["rel"] > warm for x in t.get("chat_ms", [])]
    cap_all = [x for t in ticks if t["rel"] > warm for x in t.get("caption_ms", [])]
    totals = {
        "chat_sent": sum(d["sent"] for d in chat_done),
        "chat_deliveries": sum(d["delivered"] for d in chat_done),
        "chat_expected": sum(d["expected"] for d in chat_done),
        "chat_lost": lost,
        "chat_p50_ms": pct(chat_all, 50),
        "chat_p95_ms": pct(chat_all, 95),
        "chat_p99_ms": pct(chat_all, 99),
        "chat_max_ms": max(chat_all, default=math.nan),
        "caption_p50_ms": pct(cap_all, 50),
        "caption_p95_ms": pct(cap_all, 95),
        "caption_max_ms": max(cap_all, default=math.nan),
        "captions": media_done or {},
        "hub_cpu_pct_mean": med(after, "cpu_pct"),
        "load_cpu_pct_mean": med(after, "load_cpu_pct"),
        "load_lag_ms_max": max((s["load_lag_ms"] for s in after), default=math.nan),
        "hub_errors_total": samples[-1].get("hub_errors") if samples else None,
        "dropped_utterances": samples[-1].get("dropped_utterances") if samples else None,
        "dropped_partials": samples[-1].get("dropped_partials") if samples else None,
        "loadavg_max": max((s["loadavg"] for s in samples), default=math.nan),
    }
    for d in (totals["captions"], *(w.ready or {} for w in workers)):
        d.pop("caption_ms", None)
    return {
        "bench": "soak",
        "args": {k: v for k, v in vars(args).items() if k != "replot"},
        "hub_settings": settings,
        "cpus": os.cpu_count(),
        "setup": setup,
        "warmup_end_s": warm,
        "window_s": span,
        "hub_exit": hub_exit,
        "hub_log_problems": hub_log[:20],
        "errors": dict(errors),
        "totals": totals,
        "criteria": criteria,
        "passed": all(c["ok"] for c in criteria.values()),
        "samples": samples,
    }


def slope(rows: list[dict[str, Any]], key: str) -> float:
    """Least-squares slope of `key` over time (per second)."""
    pts = [(r["t"], r[key]) for r in rows if not math.isnan(r.get(key, math.nan))]
    if len(pts) < 2:
        return math.nan
    mt = statistics.fmean(t for t, _ in pts)
    mv = statistics.fmean(v for _, v in pts)
    den = sum((t - mt) ** 2 for t, _ in pts)
    return sum((t - mt) * (v - mv) for t, v in pts) / den if den else math.nan


def render(report: dict[str, Any]) -> str:
    args = report["args"]
    samples = report["samples"]
    every = args["table_every"] or max(args["interval"], args["duration"] / 10)
    head = (
        f"{'t (s)':>6} {'RSS MiB':>8} {'CPU %':>6} {'thr':>4} {'fds':>5} {'tasks':>6} "
        f"{'chat/s':>7} {'chat p50':>8} {'p95 ms':>7} {'finals':>6} {'cap p50':>8} "
        f"{'p95 ms':>7} {'errors':>6} {'load':>5}"
    )
    lines = [
        f"soak: {args['clients']} chat clients in rooms of {args['room_size']} "
        f"({args['chat_rate']} msg/s per room) + {args['speakers']} WebRTC speakers with live "
        f"captions, {args['duration']:.0f} s, {report['cpus']} CPUs (shared machine), warm-up "
        f"{report['warmup_end_s']:.0f} s",
        head,
        "-" * len(head),
    ]
    row: list[dict[str, Any]] = []
    start = 0.0
    for i, s in enumerate(samples):
        row.append(s)
        if s["t"] - start + 1e-6 < every and i < len(samples) - 1:
            continue
        span = max(1e-9, s["t"] - start) if start or s["t"] else 1.0
        chat = sum(r["delivered"] for r in row)
        # a row's percentiles: the windows' own, weighted by count (close enough for a table)
        lines.append(
            f"{s['t']:>6.0f} {s.get('rss_mib', math.nan):>8.1f} "
            f"{nanmean([r.get('cpu_pct', math.nan) for r in row]):>6.1f} "
            f"{s.get('threads', math.nan):>4.0f} {s.get('fds', math.nan):>5.0f} "
            f"{s.get('tasks', math.nan):>6.0f} {chat / span:>7.0f} "
            f"{weighted(row, 'chat_p50_ms', 'chat_n'):>8.1f} "
            f"{weighted(row, 'chat_p95_ms', 'chat_n'):>7.1f} "
            f"{sum(r['finals'] for r in row):>6} "
            f"{weighted(row, 'caption_p50_ms', 'caption_n'):>8.0f} "
            f"{weighted(row, 'caption_p95_ms', 'caption_n'):>7.0f} "
            f"{sum(sum(r['errors'].values()) for r in row):>6} {s['loadavg']:>5.1f}"
        )
        start, row = s["t"], []
    t = report["totals"]
    cap = t["captions"]
    lines += [
        "CPU %: hub process, % of one core; chat/s: deliveries per second; cap: end of a "
        "spoken sentence -> its final caption at the listener; load: 1-min load average",
        f"after warm-up: chat delivery p50 {t['chat_p50_ms']:.1f} ms, p95 {t['chat_p95_ms']:.1f}"
        f", p99 {t['chat_p99_ms']:.1f}, max {t['chat_max_ms']:.0f} ms; "
        f"{t['chat_deliveries']}/{t['chat_expected']} deliveries of {t['chat_sent']} messages",
        f"after warm-up: caption final p50 {t['caption_p50_ms']:.0f} ms, p95 "
        f"{t['caption_p95_ms']:.0f} ms, max {t['caption_max_ms']:.0f} ms; sentences captioned "
        f"{cap.get('captioned', 0)}/{cap.get('sentences', 0)}, exact words "
        f"{cap.get('right', 0)}/{cap.get('matched', 0)}, finals {cap.get('finals', 0)} "
        f"(split {cap.get('split', 0)}, "
        f"unmatched {cap.get('unmatched', 0)}), hub dropped utterances "
        f"{t['dropped_utterances']}, notices {cap.get('notices', {})}",
        f"hub CPU median {t['hub_cpu_pct_mean']:.0f} % of a core; load generator "
        f"{t['load_cpu_pct_mean']:.0f} %, its loop lag max {t['load_lag_ms_max']:.0f} ms; "
        f"load average max {t['loadavg_max']:.1f}; setup {report['setup'].get('ready_s')} s",
        "verdict:",
    ]
    for name, c in report["criteria"].items():
        lines.append(f"  {'ok  ' if c['ok'] else 'FAIL'} {name}: {c['detail']}")
    lines.append("PASS" if report["passed"] else "FAIL")
    return "\n".join(lines)


def nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.fmean(kept) if kept else math.nan


def weighted(rows: list[dict[str, Any]], key: str, count: str) -> float:
    pairs = [(r[key], r[count]) for r in rows if r[count] and not math.isnan(r[key])]
    total = sum(n for _, n in pairs)
    return sum(v * n for v, n in pairs) / total if total else math.nan


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = report["samples"]
    t = [s["t"] / 60 for s in samples]

    def col(key: str) -> list[float]:
        return [float(s.get(key, math.nan)) for s in samples]

    fig, axes = plt.subplots(5, 1, figsize=(10, 13), sharex=True)
    warm = report["warmup_end_s"] / 60
    rss = report["criteria"]["RSS growth < 5 %"]
    ax = axes[0]
    ax.plot(t, col("rss_mib"), color="tab:blue", label="hub RSS")
    if not math.isnan(rss["from"]):
        ax.axhline(rss["from"], color="grey", lw=0.8, ls=":", label="after warm-up")
        ax.axhline(rss["from"] * 1.05, color="tab:red", lw=0.8, ls="--", label="+5 %")
    ax.set_ylabel("MiB")
    ax.set_title("hub RSS")
    ax = axes[1]
    ax.plot(t, col("cpu_pct"), color="tab:orange", label="hub")
    ax.plot(t, col("load_cpu_pct"), color="tab:grey", lw=0.8, label="load generator")
    ax.set_ylabel("% of one core")
    ax.set_title("CPU (and the machine's 1-minute load average: it is shared)")
    load = ax.twinx()
    load.plot(t, col("loadavg"), color="tab:red", lw=0.8, ls=":", label="load average")
    load.set_ylabel("load average", color="tab:red")
    load.set_ylim(0, max([2.0, *col("loadavg")]) * 1.1)
    load.legend(loc="lower left", fontsize=8)
    ax = axes[2]
    ax.plot(t, col("chat_p50_ms"), color="tab:green", marker=".", ms=3, label="p50")
    ax.plot(t, col("chat_p95_ms"), color="tab:green", ls="--", marker=".", ms=3, label="p95")
    ax.set_ylabel("ms")
    ax.set_title("chat delivery latency (per sample window)")
    ax = axes[3]
    ax.plot(t, col("caption_p50_ms"), color="tab:purple", marker=".", ms=3, label="p50")
    ax.plot(t, col("caption_p95_ms"), color="tab:purple", ls="--", marker=".", ms=3, label="p95")
    ax.set_ylabel("ms")
    ax.set_title("end of sentence -> final caption at the listener")
    ax = axes[4]
    for key, color in (("tasks", "tab:brown"), ("threads", "tab:cyan"), ("fds", "tab:olive")):
        c = report["criteria"][f"no growth in {key}"]
        ax.plot(t, [v - c["from"] for v in col(key)], color=color, label=f"{key} ({c['from']:.0f})")
    ax.set_ylabel("change")
    ax.set_title("asyncio tasks, threads, open fds: change from just after warm-up")
    ax.set_xlabel("minutes")
    for ax in axes:
        ax.axvspan(0, warm, color="grey", alpha=0.12, lw=0)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=8)
    for ax in axes[1:4]:
        ax.set_ylim(0, ax.get_ylim()[1] * 1.1)
    verdict = "PASS" if report["passed"] else "FAIL"
    a = report["args"]
    fig.suptitle(
        f"commhub soak: {a['clients']} chat clients + {a['speakers']} captioned speakers, "
        f"{a['duration'] / 60:.3g} min: {verdict} (shaded: warm-up)"
    )
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--clients", type=int, default=500, help="chat clients (default 500)")
    parser.add_argument("--room-size", type=int, default=50, help="chat clients per room")
    parser.add_argument(
        "--chat-rate",
        type=float,
        default=1.0,
        help="chat messages per second per room (Poisson; default 1: each of 50 members "
        "speaks about once in 50 s)",
    )
    parser.add_argument("--speakers", type=int, default=8, help="WebRTC speakers (default 8)")
    parser.add_argument("--sentences", type=int, default=7, help="sentences in a speaker's loop")
    parser.add_argument("--workers", type=int, default=2, help="chat worker processes")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between samples")
    parser.add_argument(
        "--warmup", type=float, default=0.2, help="fraction of the run that is warm-up"
    )
    parser.add_argument(
        "--window",
        type=float,
        default=0.1,
        help="fraction of the run compared: just after warm-up against the end",
    )
    parser.add_argument(
        "--stall", type=float, default=15.0, help="longest gap without chat or finals, s"
    )
    parser.add_argument("--rss-limit", type=float, default=5.0, help="allowed RSS growth, %%")
    parser.add_argument("--setup-timeout", type=float, default=300.0)
    parser.add_argument(
        "--table-every", type=float, default=0.0, help="seconds per table row (0: a tenth)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--replot", type=Path, metavar="JSON", help="print the table and redraw the PNG of a run"
    )
    parser.add_argument("--out", default=str(ROOT / "bench-results"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hub setting (COMMHUB_NAME), repeatable",
    )
    args = parser.parse_args()
    if args.replot:
        report = json.loads(args.replot.read_text())
        plot(report, args.replot.with_suffix(".png"))
        print(render(report))
        return 0 if report["passed"] else 1
    if args.duration <= 0 or args.interval <= 0 or not 0 <= args.warmup < 0.9:
        parser.error("need --duration > 0, --interval > 0 and 0 <= --warmup < 0.9")
    if args.clients == 0 and args.speakers == 0:
        parser.error("nothing to run: no clients and no speakers")
    logdir = Path(args.out) / "soak-logs"
    shutil.rmtree(logdir, ignore_errors=True)
    logdir.mkdir(parents=True)
    return asyncio.run(run(args))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        worker_main(sys.argv[2], json.loads(sys.argv[3]))
    else:
        sys.exit(main())
