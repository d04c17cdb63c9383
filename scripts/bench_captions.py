#!/usr/bin/env python3
"""Live captions over WebRTC: K real-time Korean speakers into one hub, beside bare Vosk.

Open vocabulary by default (no phrase list: what a meeting or a support call needs; the
espeak-ng Korean is not understood at open vocabulary, so "right" is not counted, only
timing, CPU and memory); ``--grammar`` restricts both the hub and bare Vosk to the
sentence's four words (labelled "grammar" in the output).

For each K (a fresh hub each time, run as a subprocess so that its CPU and RSS are its own):
K speakers (RoomClient, publish-only) each send the same WAV of espeak-ng Korean sentences
separated by 1.5 s pauses, paced in real time by aiortc's MediaPlayer, all starting at the
same instant (the worst case: every utterance ends together; --stagger spreads them); one
listener (signalling only, no media) stamps every caption event on arrival. Measured:

- end of utterance -> final caption at the listener (p50/p95/max). The utterance's end on
  the wall clock is the moment the speaker's first frame was handed to WebRTC plus the
  sentence's end offset in the WAV (the last loud 10 ms), or the moment the frame holding
  it was handed on, if the sending side ran late;
- partial cadence: gaps between successive partials of one segment at the listener, and
  the first partial's delay after the sentence starts;
- hub CPU seconds per audio second per stream, and the cores the hub used;
- hub RSS: idle, after the model is loaded (one warm-up utterance), peak with K streams;
- sentences recognised right (one final, the exact four words; with --grammar only);
- fairness: each speaker's worst final latency, and the spread of those worsts;
- warm-up: final p95 of each speaker's first sentence against the rest;
- speakers refused over the hub's stream limit (caption_unavailable busy): not in the figures;
- the lag bound (caption_max_lag, 2 s by default): per speaker its worst final latency, the
  sentences that got no final (their speech shed), the seconds of speech shed (the hub's
  log line for each degraded stream) and the caption_degraded notices it got (one per
  degradation episode). The hub runs with caption_fast_preload on (the fast preset's model
  copy loaded at start-up, as for a node expected to run past capacity; --set overrides);
- the hub's event loop: how often it woke more than 10 ms late (its lag histogram).

Warm spares: the hub's model is loaded by one utterance in other words than the measured
ones, then the bench waits until the hub has warmed its spares (caption_warm_recognizers)
before the speakers start, as on a node that has been up a minute; CPU the hub spends
warming spares during the run is reported apart (a cost per new speaker, not per audio
second). The measured sentences are in no warm-up sentence.

Bare Vosk on the same audio (16 kHz PCM, same vocabulary, one KaldiRecognizer per stream in a
thread, 200 ms real-time chunks, its own endpointing) is run in this process right after
each hub has stopped, by scripts/bench_captions_offline.py's code: its CPU seconds per
audio second is the baseline of the overhead ratio. Its recognizers are fed the hub's
warm-up speech first, untimed (--cold-baseline: they start cold, as before warm spares).

--varied speaks a different sentence each time (what people do); by default one sentence is
said again and again (the issue's audio), which after the first flatters every recognizer.

    .venv/bin/python scripts/bench_captions.py --quick    # K 1,4,8, 4 sentences: ~5 minutes
    .venv/bin/python scripts/bench_captions.py            # K 1,2,4,6,8,10: ~15 minutes
    .venv/bin/python scripts/bench_captions.py --grammar --speakers 1,8
    .venv/bin/python scripts/bench_captions.py --speakers 8 --no-baseline \
        --set caption_end_silence_ms=400                  # try a hub setting
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import re
import sys
import tempfile
import time
import wave
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import psutil
from aiortc import MediaStreamTrack
from aiortc.contrib.media import MediaPlayer
from aiortc.rtp import is_rtcp
from av import AudioFrame
from bench_captions_offline import (
    OTHER_SENTENCE,
    PAUSE_S,
    RATE,
    SENTENCE,
    VARIED,
    WORDS,
    Result,
    run_bare_vosk,
    speech,
    timeline,
)
from benchlib import (
    HubProcess,
    cpu_seconds,
    loop_lag,
    pct,
    sample_rss,
    scrape,
    start_hub,
    wait_for,
    write_wav,
)

from commhub.config import Settings
from commhub.sdk import RoomClient
from commhub.speech import SpeechModels
from commhub.speech.warmup import warmup_audio

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1",)
ROOM = "bench"
FRAME_S = 0.02  # MediaPlayer hands out 20 ms frames

# The goals on a 2-core machine (issue 14, open vocabulary).
GOAL_FINAL_P95_S = 1.0
GOAL_FINAL_P95_ONE_S = 0.5  # one speaker
GOAL_PARTIAL_GAP_S = 0.4
GOAL_SPEAKERS = 8
GOAL_CPU_RATIO = 1.1
GOAL_RSS_PER_STREAM_MIB = 50.0  # the model itself is ~500 MiB
GOAL_WORST_LAG_S = 2.0  # every speaker's worst final, past capacity too


# -- audio --------------------------------------------------------------------------------


def speech_spans(pcm: bytes, ends: list[float]) -> list[tuple[float, float]]:
    """(start, end) of each sentence in the WAV: ends by construction, starts by energy."""
    samples = np.frombuffer(pcm, "<i2").astype(np.float64)
    blocks = samples[: len(samples) // 160 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > 0.01 * 32768) * 0.01
    spans, previous = [], 0.0
    for end in ends:
        start = float(loud[(loud > previous) & (loud < end)][0])
        spans.append((start, end))
        previous = end + PAUSE_S / 2
    return spans


# -- the hub ------------------------------------------------------------------------------


def start_caption_hub(
    workdir: Path, speakers: int, phrases: list[str] | None, settings: dict[str, str] | None = None
) -> HubProcess:
    return start_hub(
        workdir,
        {
            "ice_host_addresses": json.dumps(list(LOOPBACK)),
            "caption_phrases": json.dumps({"ko": phrases} if phrases else {}, ensure_ascii=False),
            "room_capacity": str(max(50, speakers + 4)),
            # speakers stay silent from connecting until all of them start together
            "media_stall_timeout": "120",
            "log_level": "warning",
            "caption_fast_preload": "true",
            **(settings or {}),
        },
    )


WARM_CPU = "commhub_captions_warm_up_cpu_seconds{}"


def spares(settings: dict[str, str]) -> int:
    return int(settings.get("caption_warm_recognizers", Settings().caption_warm_recognizers))


def warm_speech(settings: dict[str, str], tmp: Path) -> bytes | None:
    """The speech the hub warms its spares with (none when it keeps none)."""
    return warmup_audio("ko", tmp / "warmup") if spares(settings) else None


def token(hub: HubProcess, identity: str, grants: tuple[str, ...] | None = None) -> str:
    extra: dict[str, Any] = {"grants": grants} if grants is not None else {}
    return hub.token(ROOM, identity, speak="ko", read="ko", **extra)


async def caption_metrics(url: str) -> dict[str, float]:
    """The hub's caption metrics and event-loop lag: sample name{labels} -> value."""
    async with aiohttp.ClientSession() as http:
        got = await scrape(http, url, "commhub_captions")
        return got | await scrape(http, url, LOOP_LAG, buckets=True)


LOOP_LAG = "commhub_event_loop_lag_seconds"


def hub_loop_lag(before: dict[str, float], after: dict[str, float]) -> tuple[int, int, float]:
    """The hub's loop wake-ups between two scrapes: how many, how many later than 10 ms, and
    the smallest bucket bound all of them were within."""
    prefix = f"{LOOP_LAG}_bucket{{le="
    cumulative = {
        float(key[len(prefix) : -1]): value - before.get(key, 0.0)
        for key, value in after.items()
        if key.startswith(prefix)
    }
    total = cumulative.get(math.inf, 0.0)
    over = total - cumulative.get(0.01, 0.0)
    within = min((b for b, n in cumulative.items() if n >= total), default=math.nan)
    return round(total), round(over), within


async def streams_closed(url: str, timeout: float = 30.0) -> None:
    for _ in range(int(timeout / 0.2)):
        got = await caption_metrics(url)
        if got.get("commhub_captions_active_streams{}", 0.0) == 0:
            return
        await asyncio.sleep(0.2)


# -- the speakers and the listener ---------------------------------------------------------


class PacedSource(MediaStreamTrack):
    """The player's track, held back until `start`; stamps when each frame is handed on."""

    kind = "audio"

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.source = source
        self.start_at = 0.0
        self._go = asyncio.Event()
        self.sent: list[tuple[float, float]] = []  # (frame time in the WAV, monotonic)

    def start(self, at: float) -> None:
        self.start_at = at
        self._go.set()

    @property
    def t0(self) -> float:
        """Wall (monotonic) time of the WAV's offset 0: the first frame was handed on."""
        return self.sent[0][1]

    def wall(self, offset: float) -> float:
        """When audio at `offset` in the WAV had been handed to WebRTC."""
        n = min(int(offset / FRAME_S), len(self.sent) - 1)
        return max(self.t0 + offset, self.sent[n][1])

    def lateness(self) -> list[float]:
        return [sent - (self.t0 + t) for t, sent in self.sent]

    async def recv(self) -> AudioFrame:
        if not self.sent:
            await self._go.wait()
            await asyncio.sleep(max(0.0, self.start_at - time.monotonic()))
        frame = await self.source.recv()  # MediaPlayer paces; MediaStreamError at the end
        assert isinstance(frame, AudioFrame)
        self.sent.append((float(frame.time or 0.0), time.monotonic()))
        return frame

    def stop(self) -> None:
        super().stop()
        self.source.stop()


class StampedInbox(list[dict[str, Any]]):
    """RoomClient.inbox that also notes when each message arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.at: list[float] = []

    def append(self, msg: dict[str, Any]) -> None:
        self.at.append(time.monotonic())
        super().append(msg)

    def captions(self, speaker: str) -> list[tuple[float, dict[str, Any]]]:
        return [
            (at, m)
            for at, m in zip(self.at, self, strict=True)
            if m["type"] == "caption" and m["speaker"] == speaker
        ]


# -- one K --------------------------------------------------------------------------------


@dataclass
class HubRun:
    system: str
    streams: int
    audio_s: float
    stagger_s: float
    final_latency_p50: float = float("nan")
    final_latency_p95: float = float("nan")
    final_latency_max: float = float("nan")
    first_partial_p50: float = float("nan")
    first_partial_p95: float = float("nan")
    partial_gap_p50: float = float("nan")
    partial_gap_p95: float = float("nan")
    partial_gap_max: float = float("nan")
    # arrival of a partial - when the audio it covers (up to its `end`) was sent: transport,
    # jitter buffer, queueing and decoding, without the voice gate's end-of-speech wait
    partial_lag_p50: float = float("nan")
    partial_lag_p95: float = float("nan")
    cpu_per_audio_s: float = float("nan")
    hub_cores: float = float("nan")  # hub CPU seconds / wall seconds while streaming
    hub_idle_cores: float = float("nan")  # the same, connected but silent, just before
    sentences_right: str = ""
    right: int = 0
    expected: int = 0
    finals: int = 0
    missed: int = 0
    dropped_partials: int = 0
    dropped_utterances: int = 0
    shed_seconds: float = 0.0  # speech not decoded (the backlog or lag bound)
    fast_utterances: int = 0  # decoded with the fast preset (the node strained)
    hub_finalize_mean_s: float = float("nan")  # hub: end of speech detected -> final sent
    hub_recognize_rtf: float = float("nan")  # hub: recognizer wall time / speech decoded
    rss_idle_mib: float = 0.0
    rss_model_mib: float = 0.0
    rss_peak_mib: float = 0.0
    rss_per_stream_mib: float = float("nan")
    warm_wait_s: float = 0.0  # from the model loaded to its warm spares ready
    warm_up_cpu_s: float = 0.0  # hub CPU refilling the spares during the run (not in cpu)
    hub_wakeups: int = 0  # the hub's event-loop lag samples (every 50 ms) during the run
    hub_wakeups_over_10ms: int = 0
    hub_lag_within_s: float = float("nan")  # every sample's lag was within this bucket bound
    client_cores: float = float("nan")  # this process (speakers + listener) meanwhile
    client_lag_p95: float = float("nan")
    client_lag_max: float = float("nan")
    send_late_max: float = float("nan")  # frames handed to WebRTC after their due time
    loadavg_before: float = float("nan")
    vocabulary: str = "open"
    busy: int = 0  # speakers refused over the stream limit (caption_unavailable busy)
    worst_lag_max: float = float("nan")  # the worst speaker's worst final latency
    worst_lag_min: float = float("nan")  # the best speaker's worst: fairness is their spread
    first_sentence_p95: float = float("nan")  # each speaker's first sentence (warm-up)
    rest_sentences_p95: float = float("nan")
    per_speaker_worst: list[float] = field(default_factory=list)
    # per speaker: identity, worst final latency, finals, sentences missed, seconds of speech
    # shed, caption_degraded notices
    per_speaker: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list, repr=False)
    first_partials: list[float] = field(default_factory=list, repr=False)
    partial_gaps: list[float] = field(default_factory=list, repr=False)
    partial_lags: list[float] = field(default_factory=list, repr=False)


def analyse(
    run: HubRun,
    spans: list[tuple[float, float]],
    speakers: list[tuple[str, PacedSource]],
    inbox: StampedInbox,
) -> None:
    refused = {
        m["participant"]
        for m in inbox
        if m["type"] == "caption_unavailable" and m["reason"] == "busy"
    }
    run.busy = len(refused & {pid for pid, _ in speakers})
    run.expected = (len(speakers) - run.busy) * len(spans)
    first: list[float] = []
    rest: list[float] = []
    for i, (pid, src) in enumerate(speakers):
        if pid in refused:
            continue
        mine: list[float] = []
        missed = run.missed
        captions = inbox.captions(pid)
        finals = [(at, m) for at, m in captions if m["final"]]
        run.finals += len(finals)
        # A final belongs to the sentence whose end is nearest its own (hub stream time
        # counts from the track's first frame, which is the WAV's offset 0).
        per_sentence: dict[int, list[tuple[float, dict[str, Any]]]] = defaultdict(list)
        for at, m in finals:
            j = min(range(len(spans)), key=lambda j: abs(spans[j][1] - m["end"]))
            if abs(spans[j][1] - m["end"]) < PAUSE_S:
                per_sentence[j].append((at, m))
        partials: dict[str, list[float]] = defaultdict(list)  # segment -> arrivals
        for at, m in captions:
            if not m["final"]:
                partials[m["segment"]].append(at)
                run.partial_lags.append(at - src.wall(m["end"]))
        for times in partials.values():
            run.partial_gaps += [b - a for a, b in itertools.pairwise(times)]
        for j, (start, end) in enumerate(spans):
            got = per_sentence.get(j, [])
            if not got:
                run.missed += 1
                continue
            at, m = min(got, key=lambda x: abs(x[1]["end"] - end))
            latency = float(at - src.wall(end))
            run.latencies.append(latency)
            mine.append(latency)
            (first if j == 0 else rest).append(latency)
            words = [x for _, x in got if x["text"]]
            run.right += len(words) == 1 and m["text"].split() == WORDS
            # the first partial of any segment of this sentence (a split one has several)
            opened = [
                at
                for at, x in captions
                if not x["final"] and start - PAUSE_S / 2 <= x["start"] <= end
            ]
            if opened:
                run.first_partials.append(min(opened) - src.wall(start))
        if mine:
            run.per_speaker_worst.append(max(mine))
        run.per_speaker.append(
            {
                "speaker": f"speaker-{i}",
                "worst_s": round(max(mine), 2) if mine else None,
                "finals": len(mine),
                "missed": run.missed - missed,
                "shed_s": 0.0,  # filled from the hub's log
                "notices": sum(
                    1 for m in inbox if m["type"] == "caption_degraded" and m["participant"] == pid
                ),
            }
        )
    run.worst_lag_max = max(run.per_speaker_worst, default=float("nan"))
    run.worst_lag_min = min(run.per_speaker_worst, default=float("nan"))
    run.first_sentence_p95, run.rest_sentences_p95 = pct(first, 95), pct(rest, 95)
    run.sentences_right = (
        f"{run.right}/{run.expected} ({run.finals} finals)"
        if run.vocabulary == "grammar"
        else f"n/a ({run.finals} finals)"
    )
    run.final_latency_p50 = pct(run.latencies, 50)
    run.final_latency_p95 = pct(run.latencies, 95)
    run.final_latency_max = max(run.latencies, default=float("nan"))
    run.first_partial_p50 = pct(run.first_partials, 50)
    run.first_partial_p95 = pct(run.first_partials, 95)
    run.partial_gap_p50 = pct(run.partial_gaps, 50)
    run.partial_gap_p95 = pct(run.partial_gaps, 95)
    run.partial_gap_max = max(run.partial_gaps, default=float("nan"))
    run.partial_lag_p50 = pct(run.partial_lags, 50)
    run.partial_lag_p95 = pct(run.partial_lags, 95)


def all_sentences_final(
    spans: list[tuple[float, float]], speakers: list[tuple[str, PacedSource]], inbox: StampedInbox
) -> bool:
    refused = {m["participant"] for m in inbox if m["type"] == "caption_unavailable"}
    for pid, _ in speakers:
        if pid in refused:
            continue
        ends = [m["end"] for _, m in inbox.captions(pid) if m["final"]]
        if not all(any(abs(e - end) < PAUSE_S for e in ends) for _, end in spans):
            return False
    return True


def lose_every(client: RoomClient, n: int) -> None:
    """The link from the client to the hub loses every nth RTP packet (RTCP gets through)."""
    assert client.pc is not None
    transport = client.pc.getSenders()[0].transport
    send, count = transport._send_rtp, itertools.count(1)

    async def lossy(data: bytes) -> None:
        if is_rtcp(data) or next(count) % n:
            await send(data)

    transport._send_rtp = lossy  # type: ignore[method-assign]


async def run_hub(
    hub: HubProcess, k: int, wav: Path, warm_wav: Path, spans: list[tuple[float, float]], args: Any
) -> HubRun:
    with wave.open(str(wav)) as w:
        audio_s = w.getnframes() / RATE
    run = HubRun(
        "commhub", k, audio_s, args.stagger, expected=k * len(spans),
        vocabulary="grammar" if args.grammar else "open",
    )  # fmt: skip
    run.loadavg_before = os.getloadavg()[0]
    ps, me = hub.ps, psutil.Process()
    clients: list[RoomClient] = []

    async def join(identity: str, grants: tuple[str, ...] | None = None) -> RoomClient:
        c = RoomClient(hub.url, token(hub, identity, grants), ice_hosts=LOOPBACK)
        clients.append(c)
        await c.connect()
        return c

    background: list[asyncio.Task[None]] = []
    players: list[MediaStreamTrack] = []
    try:
        inbox = StampedInbox()
        listener = RoomClient(hub.url, token(hub, "listener"), ice_hosts=LOOPBACK)
        listener.inbox = inbox
        clients.append(listener)
        await listener.connect()
        run.rss_idle_mib = ps.memory_info().rss / 2**20

        # Warm-up: the hub loads its model on the first stream; one utterance, then gone.
        warm = await join("warm-up", ("publish",))
        player = MediaPlayer(str(warm_wav))
        assert player.audio is not None
        players.append(player.audio)
        await warm.publish(player.audio)
        try:
            await wait_for(lambda: any(m["final"] for _, m in inbox.captions(warm.pid)), 60, "")
        except TimeoutError:
            state = warm.pc.connectionState if warm.pc else "no peer connection"
            got = [m for _, m in inbox.captions(warm.pid)]
            raise TimeoutError(
                f"no final caption for the warm-up utterance in 60 s (its peer connection: "
                f"{state}; captions: {got}; signalling errors: {warm.errors})"
            ) from None
        await warm.close()
        clients.remove(warm)

        async def warm_stream_closed() -> bool:  # its slot counts against the stream limit
            got = await caption_metrics(hub.url)
            return got.get("commhub_captions_active_streams{}", 0.0) == 0

        for _ in range(600):
            if await warm_stream_closed():
                break
            await asyncio.sleep(0.1)
        warming = time.monotonic()
        key = "commhub_captions_warm_recognizers{language=ko,preset=default}"
        wanted = spares(args.settings)
        while (await caption_metrics(hub.url)).get(key, 0.0) < wanted:
            if time.monotonic() - warming > 300:
                raise TimeoutError(f"the hub did not warm {wanted} recognizers in 300 s")
            await asyncio.sleep(0.5)
        run.warm_wait_s = time.monotonic() - warming
        await asyncio.sleep(1.0)
        run.rss_model_mib = ps.memory_info().rss / 2**20
        before = await caption_metrics(hub.url)

        speakers: list[tuple[str, PacedSource]] = []
        for i in range(k):
            c = await join(f"speaker-{i}", ("publish",))
            audio = MediaPlayer(str(wav)).audio
            assert audio is not None
            src = PacedSource(audio)
            players.append(src)
            await c.publish(src)
            if args.loss:
                lose_every(c, args.loss)
            speakers.append((c.pid, src))
        await wait_for(
            lambda: all(
                c.pc is not None and c.pc.connectionState == "connected" for c in clients[1:]
            ),
            30,
            f"{k} speakers to connect",
        )
        lags: list[float] = []
        rss: list[float] = []
        background += [
            asyncio.create_task(loop_lag(lags)),
            asyncio.create_task(sample_rss(ps, rss)),
        ]
        idle0, idle_t = cpu_seconds(ps), time.monotonic()
        await asyncio.sleep(1.0)  # everyone connected, nobody speaking yet
        run.hub_idle_cores = (cpu_seconds(ps) - idle0) / (time.monotonic() - idle_t)
        cpu0, me0 = cpu_seconds(ps), cpu_seconds(me)
        t_start = time.monotonic() + 0.3
        for i, (_, src) in enumerate(speakers):
            src.start(t_start + i * args.stagger)
        audio_end = t_start + (k - 1) * args.stagger + audio_s
        await asyncio.sleep(audio_end - time.monotonic())
        with contextlib.suppress(TimeoutError):
            await wait_for(
                lambda: all_sentences_final(spans, speakers, inbox),
                args.tail_timeout,
                "the last finals",
            )
        window = time.monotonic() - t_start
        cpu = cpu_seconds(ps) - cpu0
        after = await caption_metrics(hub.url)
        # refilling the spares the speakers took: a low-priority thread, reported apart
        run.warm_up_cpu_s = after.get(WARM_CPU, 0.0) - before.get(WARM_CPU, 0.0)
        cpu -= run.warm_up_cpu_s
        run.client_cores = (cpu_seconds(me) - me0) / window
        run.cpu_per_audio_s = cpu / (k * audio_s)
        run.hub_cores = cpu / window
        run.rss_peak_mib = max(rss, default=float("nan"))
        run.rss_per_stream_mib = (run.rss_peak_mib - run.rss_model_mib) / k
        run.client_lag_p95, run.client_lag_max = pct(lags, 95), max(lags, default=float("nan"))
        run.send_late_max = max(max(src.lateness()) for _, src in speakers)

        delta = {name: after[name] - before.get(name, 0.0) for name in after}
        run.dropped_partials = round(delta.get("commhub_captions_dropped_partials_total{}", 0))
        run.dropped_utterances = round(delta.get("commhub_captions_dropped_utterances_total{}", 0))
        run.shed_seconds = round(delta.get("commhub_captions_shed_seconds_total{}", 0.0), 1)
        run.fast_utterances = round(delta.get("commhub_captions_fast_utterances_total{}", 0))
        lag = hub_loop_lag(before, after)
        run.hub_wakeups, run.hub_wakeups_over_10ms, run.hub_lag_within_s = lag
        n = delta.get("commhub_captions_stage_seconds_count{stage=finalize}", 0.0)
        if n:
            run.hub_finalize_mean_s = (
                delta["commhub_captions_stage_seconds_sum{stage=finalize}"] / n
            )
        speech_s = delta.get("commhub_captions_recognized_audio_seconds_total{}", 0.0)
        if speech_s:
            run.hub_recognize_rtf = (
                delta.get("commhub_captions_stage_seconds_sum{stage=recognize}", 0.0) / speech_s
            )
        analyse(run, spans, speakers, inbox)
        return run
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        for track in players:
            track.stop()  # ends the players' decoding threads


# -- report -------------------------------------------------------------------------------


def measure_hub(
    workdir: Path,
    k: int,
    settings: dict[str, str],
    wav: Path,
    warm_wav: Path,
    spans: list[tuple[float, float]],
    args: Any,
) -> HubRun:
    """One hub, K speakers: its run, with what its log says about shed speech."""
    phrases = WORDS if args.grammar else None
    hub = start_caption_hub(workdir, k, phrases, settings)
    try:
        run = asyncio.run(run_hub(hub, k, wav, warm_wav, spans, args))
    except BaseException:
        hub.stop()
        tail = hub.log.read_text(errors="replace").splitlines()[-40:]
        print(f"K={k}: the hub's log ends with:\n  " + "\n  ".join(tail), file=sys.stderr)
        raise
    # the streams log their account as they end: let them end before the hub stops
    with contextlib.suppress(Exception):
        asyncio.run(streams_closed(hub.url))
    hub.stop()
    if hub.proc.returncode not in (0, None):
        print(f"hub exited {hub.proc.returncode}", file=sys.stderr)
    log = hub.log.read_text(errors="replace")
    shed_from_log(run, log)
    noteworthy = [
        line
        for line in log.splitlines()
        if ("WARNING" in line or "ERROR" in line) and "shed" not in line
    ]
    if noteworthy:
        print(f"K={k}: hub log:\n  " + "\n  ".join(noteworthy[:10]), file=sys.stderr)
    return run


def table(hub_runs: list[HubRun], bare: dict[int, Result]) -> str:
    head = (
        f"{'system':<9} {'vocab':<7} {'K':>2} {'busy':>4} {'final p50':>9} {'p95':>6} "
        f"{'max':>6} {'worst/speaker':>13} {'1st sent p95':>12} {'partial gap p50':>15} "
        f"{'p95':>6} {'CPU s/audio s':>13} {'overhead':>8} {'cores':>5} {'right':>16} "
        f"{'RSS MiB':>8} {'+MiB/stream':>11}"
    )
    lines = [head, "-" * len(head)]
    for r in hub_runs:
        b = bare.get(r.streams)
        ratio = r.cpu_per_audio_s / b.cpu_per_audio_s if b else float("nan")
        worst = f"{r.worst_lag_min:.1f}-{r.worst_lag_max:.1f}s"
        lines.append(
            f"{r.system:<9} {r.vocabulary:<7} {r.streams:>2} {r.busy:>4} "
            f"{r.final_latency_p50:>8.2f}s {r.final_latency_p95:>5.2f}s "
            f"{r.final_latency_max:>5.2f}s {worst:>13} {r.first_sentence_p95:>11.2f}s "
            f"{r.partial_gap_p50:>14.2f}s {r.partial_gap_p95:>5.2f}s "
            f"{r.cpu_per_audio_s:>13.3f} {ratio:>7.2f}x {r.hub_cores:>5.2f} "
            f"{r.sentences_right:>16} {r.rss_peak_mib:>8.0f} {r.rss_per_stream_mib:>11.1f}"
        )
        if b and r.system == "commhub":
            lines.append(
                f"{'bare vosk':<9} {r.vocabulary:<7} {b.streams:>2} {'':>4} "
                f"{b.final_latency_p50:>8.2f}s {b.final_latency_p95:>5.2f}s "
                f"{max(b.latencies, default=float('nan')):>5.2f}s {'':>13} {'':>12} "
                f"{b.partial_gap_p50:>14.2f}s {b.partial_gap_p95:>5.2f}s "
                f"{b.cpu_per_audio_s:>13.3f} {'1.00x':>8} {'':>5} {b.sentences_right:>16} "
                f"{b.rss_mib:>8.0f} {'':>11}"
            )
    lines.append(
        "commhub: CPU and RSS of the hub process only (peak RSS; +MiB/stream over the RSS "
        "with the model loaded); cores = its CPU s / wall s; busy = speakers refused over "
        "the stream limit (left out of every figure); worst/speaker = the best and the worst "
        "speaker's worst final latency (fairness); 1st sent = each speaker's first sentence "
        "(a fresh recognizer); bare vosk: this process, one model; overhead = CPU per "
        "audio s over bare Vosk's at the same K; aiortc jb (with --loss): the hub with "
        "aiortc's own audio jitter buffer (audio_loss_patience=0)"
    )
    return "\n".join(lines)


SHED_LINE = re.compile(r"captions for (\S+) ended degraded: ([0-9.]+) s of speech shed")


def shed_from_log(run: HubRun, log: str) -> None:
    """Each degraded stream's shed seconds, from the line the hub logs when it ends."""
    shed: dict[str, float] = defaultdict(float)
    for identity, seconds in SHED_LINE.findall(log):
        shed[identity] += float(seconds)
    for row in run.per_speaker:
        row["shed_s"] = round(shed.get(row["speaker"], 0.0), 1)


def lag_table(hub_runs: list[HubRun]) -> str:
    """The lag bound, speaker by speaker (indicative on a loaded machine)."""
    lines = [
        f"{'K':>2} {'speaker':<11} {'worst final':>11} {'finals':>6} {'missed':>6} "
        f"{'shed s':>6} {'notices':>7}"
    ]
    for r in hub_runs:
        for row in r.per_speaker:
            worst = "-" if row["worst_s"] is None else f"{row['worst_s']:.2f}s"
            lines.append(
                f"{r.streams:>2} {row['speaker']:<11} {worst:>11} {row['finals']:>6} "
                f"{row['missed']:>6} {row['shed_s']:>6.1f} {row['notices']:>7}"
            )
        lines.append(
            f"{r.streams:>2} {'all':<11} {r.worst_lag_max:>10.2f}s {r.finals:>6} {r.missed:>6} "
            f"{r.shed_seconds:>6.1f}   (utterances cut {r.dropped_utterances}, on the fast "
            f"preset {r.fast_utterances}, partials dropped {r.dropped_partials})"
        )
    lines.append(
        "worst final = the speaker's latest final after its sentence ended (goal <= "
        f"{GOAL_WORST_LAG_S} s); missed = sentences with no final (shed past the lag bound); "
        "notices = caption_degraded received (one per degradation episode)"
    )
    return "\n".join(lines)


def details(hub_runs: list[HubRun]) -> str:
    lines = []
    for r in hub_runs:
        lines.append(
            f"K={r.streams} {r.system}: final p50 {r.final_latency_p50 * 1000:.0f} ms ~ "
            f"voice gate's end-of-speech wait + pipeline lag (partials: p50 "
            f"{r.partial_lag_p50 * 1000:.0f} ms, p95 {r.partial_lag_p95 * 1000:.0f} ms) + "
            f"finalize (hub: speech end detected -> final sent, mean "
            f"{r.hub_finalize_mean_s * 1000:.0f} ms)\n"
            f"K={r.streams} {r.system}: hub RSS idle {r.rss_idle_mib:.0f} MiB, with model "
            f"{r.rss_model_mib:.0f}, peak {r.rss_peak_mib:.0f}; hub cores idle "
            f"{r.hub_idle_cores:.3f}; spares warm after {r.warm_wait_s:.0f} s, refilled "
            f"with {r.warm_up_cpu_s:.1f} CPU-s during the run (not in its CPU); recognizer RTF "
            f"{r.hub_recognize_rtf:.2f}; dropped partials {r.dropped_partials}, utterances "
            f"{r.dropped_utterances}; missed {r.missed}; per-speaker worst "
            f"{[round(x, 2) for x in r.per_speaker_worst]}; bench process {r.client_cores:.2f} "
            f"cores, loop lag p95 {r.client_lag_p95 * 1000:.0f} ms max "
            f"{r.client_lag_max * 1000:.0f} ms, frames sent up to {r.send_late_max * 1000:.0f} "
            f"ms late; load before {r.loadavg_before:.2f}; hub event loop woke later than 10 ms "
            f"{r.hub_wakeups_over_10ms} of {r.hub_wakeups} times, all within "
            f"{r.hub_lag_within_s * 1000:.0f} ms"
        )
    return "\n".join(lines)


def goals(hub_runs: list[HubRun], bare: dict[int, Result]) -> tuple[str, dict[str, Any]]:
    def mark(ok: bool) -> str:
        return "ok" if ok else "MISSED"

    lines: list[str] = []
    verdict: dict[str, Any] = {}
    held = 0
    for r in (r for r in hub_runs if r.system == "commhub"):  # not the --loss baseline
        b = bare.get(r.streams)
        ratio = r.cpu_per_audio_s / b.cpu_per_audio_s if b else float("nan")
        goal = GOAL_FINAL_P95_ONE_S if r.streams == 1 else GOAL_FINAL_P95_S
        final_ok = r.final_latency_p95 <= goal and r.missed == 0
        partial_ok = r.partial_gap_p95 <= GOAL_PARTIAL_GAP_S
        fair_ok = r.worst_lag_max <= GOAL_WORST_LAG_S
        warm_ok = r.first_sentence_p95 <= max(r.rest_sentences_p95, goal)
        cpu_ok = ratio <= GOAL_CPU_RATIO
        rss_ok = r.rss_per_stream_mib <= GOAL_RSS_PER_STREAM_MIB
        if final_ok and partial_ok and r.busy == 0:
            held = max(held, r.streams)
        verdict[str(r.streams)] = {
            "final_p95": bool(final_ok),
            "partial_gap_p95": bool(partial_ok),
            "worst_lag": bool(fair_ok),
            "first_sentence": bool(warm_ok),
            "cpu_ratio": bool(cpu_ok),
            "rss_per_stream": bool(rss_ok),
            "busy": r.busy,
        }
        lines.append(
            f"K={r.streams}: final p95 {r.final_latency_p95:.3f} s <= {goal} {mark(final_ok)}; "
            f"partial gap p95 {r.partial_gap_p95:.3f} s <= {GOAL_PARTIAL_GAP_S} "
            f"{mark(partial_ok)}; every speaker's worst {r.worst_lag_max:.2f} s <= "
            f"{GOAL_WORST_LAG_S} {mark(fair_ok)}; first sentence p95 "
            f"{r.first_sentence_p95:.2f} s vs rest {r.rest_sentences_p95:.2f} s {mark(warm_ok)}; "
            f"CPU {ratio:.2f}x bare <= {GOAL_CPU_RATIO} {mark(cpu_ok)}; "
            f"+{r.rss_per_stream_mib:.1f} MiB/stream <= {GOAL_RSS_PER_STREAM_MIB:.0f} "
            f"{mark(rss_ok)}; refused (busy) {r.busy}"
        )
    lines.append(
        f"largest K with the latency goals held (all captioned): {held} "
        f"(goal >= {GOAL_SPEAKERS}: {mark(held >= GOAL_SPEAKERS)})"
    )
    verdict["speakers_held"] = held
    return "\n".join(lines), verdict


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--speakers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=None,
        help="comma-separated K values, a fresh hub each (default 1,2,4,6,8,10)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="K 1,4,8 with 4 sentences each (unless --speakers/--sentences say otherwise)",
    )
    parser.add_argument(
        "--grammar",
        action="store_true",
        help="restrict the hub and bare Vosk to the sentence's four words (default: open)",
    )
    parser.add_argument("--sentences", type=int, default=None, help="sentences per speaker (7)")
    parser.add_argument(
        "--varied",
        action="store_true",
        help="a different sentence each time, as people talk (default: one sentence again and "
        "again, the issue's audio: after the first, a recognizer has seen it all)",
    )
    parser.add_argument(
        "--stagger",
        type=float,
        default=0.0,
        help="seconds between speakers' starts (default 0: all speak at once, worst case)",
    )
    parser.add_argument(
        "--tail-timeout", type=float, default=15.0, help="wait for late finals after the audio"
    )
    parser.add_argument("--no-baseline", action="store_true", help="skip bare Vosk")
    parser.add_argument(
        "--cold-baseline",
        action="store_true",
        help="bare Vosk's recognizers start cold (default: fed the hub's warm-up speech first, "
        "untimed, as the hub's spares are)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a hub setting (COMMHUB_NAME), e.g. caption_end_silence_ms=300; repeatable",
    )
    parser.add_argument(
        "--loss",
        type=int,
        default=0,
        metavar="N",
        help="each speaker's link loses every Nth RTP packet; each K also runs with aiortc's "
        "own audio jitter buffer (audio_loss_patience=0), the baseline (finals are timed on the "
        "WAV's clock; the partial-lag line is not: lost packets shorten the stream's time)",
    )
    parser.add_argument("--json", type=Path, default=Path("bench-results/captions.json"))
    args = parser.parse_args()
    if args.speakers is None:
        args.speakers = [1, 4, 8] if args.quick else [1, 2, 4, 6, 8, 10]
    if args.sentences is None:
        args.sentences = 4 if args.quick else 7

    started = time.monotonic()
    settings = args.settings = dict(item.split("=", 1) for item in args.set)
    if args.varied and args.grammar:
        parser.error("--varied speaks sentences the grammar does not have")
    pcm, ends = timeline(args.sentences, args.varied)
    spans = speech_spans(pcm, ends)
    # the hub's model is loaded by one utterance in other words: no recognizer may have
    # decoded the measured sentence before it is measured
    one = speech(OTHER_SENTENCE)
    models = SpeechModels(Path(os.environ.get("COMMHUB_MODELS_DIR", "models/installed")))
    if not args.no_baseline:
        # warm: the first decode pages the model in
        rec = models.get("ko").recognizer(WORDS if args.grammar else None)
        rec.accept(one)
        rec.finish()
        rec.close()
    hub_runs: list[HubRun] = []
    bare: dict[int, Result] = {}
    with tempfile.TemporaryDirectory(prefix="bench-captions-") as tmp:
        wav = write_wav(Path(tmp) / "speech.wav", pcm, RATE)
        # two utterances: with a small caption_max_backlog the first may be shed while the
        # model is still loading (audio queues meanwhile)
        warm = bytes(RATE) + (one + bytes(4 * RATE)) * 2
        warm_wav = write_wav(Path(tmp) / "warm.wav", warm, RATE)
        systems = [("commhub", settings)]
        if args.loss:
            systems.append(("aiortc jb", {**settings, "audio_loss_patience": "0"}))
        for k in args.speakers:
            for system, hub_settings in systems:
                print(f"K={k}: {system} over WebRTC ...", file=sys.stderr)
                run = measure_hub(Path(tmp) / f"hub-{k}-{len(hub_runs)}", k, hub_settings, wav,
                                  warm_wav, spans, args)  # fmt: skip
                run.system = system
                hub_runs.append(run)
            if not args.no_baseline:
                print(f"K={k}: bare vosk ...", file=sys.stderr)
                warm = None if args.cold_baseline else warm_speech(settings, Path(tmp))
                bare[k] = run_bare_vosk(models, k, pcm, ends, grammar=args.grammar, warm=warm)
    print(table(hub_runs, bare))
    print(lag_table(hub_runs))
    print(details(hub_runs))
    verdict_text, verdict = goals(hub_runs, bare)
    print(verdict_text)
    print(
        f"audio {hub_runs[0].audio_s if hub_runs else 0:.1f} s per speaker "
        f"({args.sentences} sentences, {'varied' if args.varied else 'the same one'}, "
        f"{PAUSE_S} s pauses), vocabulary "
        f"{'grammar (4 words)' if args.grammar else 'open'}, stagger {args.stagger} s, "
        f"{os.cpu_count()} CPUs, total {time.monotonic() - started:.0f} s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "captions",
        "sentence": SENTENCE,
        "varied": VARIED if args.varied else None,
        "sentences": args.sentences,
        "spans": spans,
        "pause_s": PAUSE_S,
        "stagger_s": args.stagger,
        "vocabulary": "grammar" if args.grammar else "open",
        "hub_settings": settings,
        "cpus": os.cpu_count(),
        "goals": {
            "final_p95_s": GOAL_FINAL_P95_S,
            "final_p95_one_speaker_s": GOAL_FINAL_P95_ONE_S,
            "worst_lag_s": GOAL_WORST_LAG_S,
            "partial_gap_s": GOAL_PARTIAL_GAP_S,
            "speakers": GOAL_SPEAKERS,
            "cpu_ratio": GOAL_CPU_RATIO,
            "rss_per_stream_mib": GOAL_RSS_PER_STREAM_MIB,
        },
        "verdict": verdict,
        "commhub": [asdict(r) for r in hub_runs],
        "bare_vosk": [asdict(b) for b in bare.values()],
    }
    args.json.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
