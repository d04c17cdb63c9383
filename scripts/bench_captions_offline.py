#!/usr/bin/env python3
"""Captions pipeline vs bare Vosk, offline: K concurrent real-time streams of Korean speech.

Each stream plays the same espeak-ng Korean sentences with pauses, paced in real time
(20 ms frames; commhub gets them as WebRTC-like 48 kHz stereo frames, so resampling is
included). Measured for both, in the same run on the same shared model:
end of sentence -> final latency, partial cadence, CPU seconds per audio second per
stream, sentence accuracy and RSS. Bare Vosk = one KaldiRecognizer per stream in a
thread, 200 ms chunks, its own endpointing (what vosk-server does).

    .venv/bin/python scripts/bench_captions_offline.py --streams 1 4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import psutil
from benchlib import pct

from commhub.captions import CaptionEvent, CaptionStream, RecognitionBudget
from commhub.speech import SpeechModels

RATE = 16000
SENTENCE = "안녕하세요. 서울, 시청 입니다"
WORDS = ["안녕하세요", "서울", "시청", "입니다"]
OTHER_SENTENCE = "신발을 벗고 들어오세요"  # in none of SENTENCE's words
# --varied: a different sentence each time, as people talk (none is a warm-up sentence)
VARIED = [
    "외국인 등록증은 언제 받을 수 있나요",
    "지난달 전기 요금이 너무 많이 나왔어요",
    "회의실 예약은 삼층 안내 데스크에서 하시면 됩니다",
    "제 아이가 다음 학기에 학교에 들어가요",
    "병원 진료 예약을 바꾸고 싶습니다",
    "택배가 아직 도착하지 않았습니다",
    "계약서 두 부에 서명해 주시면 됩니다",
    "주차장은 지하 이층에 있습니다",
    "통역 서비스는 무료로 이용하실 수 있어요",
    "다음 주 금요일까지 답변을 드리겠습니다",
]
PAUSE_S = 1.5
FRAME_S = 0.02


def speech(text: str = SENTENCE) -> bytes:
    wav = subprocess.run(
        ["espeak-ng", "-v", "ko", "--stdout", text], capture_output=True, check=True
    ).stdout
    return subprocess.run(
        [
            "sox",
            "-t",
            "wav",
            "-",
            "-r",
            str(RATE),
            "-c",
            "1",
            "-b",
            "16",
            "-e",
            "signed",
            "-t",
            "raw",
            "-",
        ],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout


def timeline(sentences: int, varied: bool = False) -> tuple[bytes, list[float]]:
    """The audio and the time each sentence's speech ends: SENTENCE again and again, or
    (``varied``) each of VARIED in turn."""
    texts = VARIED if varied else [SENTENCE]
    pause = bytes(2 * int(PAUSE_S * RATE))
    pcm, ends = bytearray(pause), []
    for n in range(sentences):
        one = speech(texts[n % len(texts)])
        pcm += one
        ends.append(len(pcm) / (2 * RATE) - _tail(one))
        pcm += pause
    return bytes(pcm), ends


def _tail(one: bytes) -> float:
    """espeak pads its output with silence: the seconds after the last loud 10 ms."""
    blocks = np.frombuffer(one, "<i2").astype(np.float64)[: len(one) // 320 * 160].reshape(-1, 160)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > 0.01 * 32768)
    return len(one) / (2 * RATE) - (loud[-1] + 1) * 0.01


def frames48(pcm: bytes) -> list[av.AudioFrame]:
    up = np.repeat(np.frombuffer(pcm, "<i2"), 3)
    out = []
    for i in range(0, len(up), 960):
        block = up[i : i + 960]
        frame = av.AudioFrame.from_ndarray(
            np.stack([block, block], 1).reshape(1, -1), format="s16", layout="stereo"
        )
        frame.sample_rate, frame.pts, frame.time_base = 48000, i, Fraction(1, 48000)
        out.append(frame)
    return out


@dataclass
class Result:
    system: str
    streams: int
    audio_s: float
    final_latency_p50: float = float("nan")
    final_latency_p95: float = float("nan")
    partial_gap_p50: float = float("nan")
    partial_gap_p95: float = float("nan")
    cpu_per_audio_s: float = float("nan")
    sentences_right: str = ""
    dropped_partials: int = 0
    rss_mib: float = 0.0
    latencies: list[float] = field(default_factory=list, repr=False)


Finals = list[list[tuple[float, str]]]


def summarise(
    res: Result, finals: Finals, gaps: list[float], ends: list[float], t0: float, cpu: float
) -> Result:
    right = total = 0
    for stream_finals in finals:
        for wall, text in stream_finals:
            total += 1
            right += text.split() == WORDS
            # the final belongs to the last sentence that had ended when it arrived
            done = [e for e in ends if t0 + e <= wall]
            if done:
                res.latencies.append(wall - (t0 + done[-1]))
    res.sentences_right = f"{right}/{len(ends) * res.streams} ({total} finals)"
    res.final_latency_p50, res.final_latency_p95 = pct(res.latencies, 50), pct(res.latencies, 95)
    res.partial_gap_p50, res.partial_gap_p95 = pct(gaps, 50), pct(gaps, 95)
    res.cpu_per_audio_s = cpu / (res.audio_s * res.streams)
    res.rss_mib = psutil.Process().memory_info().rss / 2**20
    return res


async def run_commhub(models: SpeechModels, k: int, pcm: bytes, ends: list[float]) -> Result:
    model = await models.load("ko")
    frames = frames48(pcm)
    budget = RecognitionBudget()
    finals: list[list[tuple[float, str]]] = [[] for _ in range(k)]
    gaps: list[float] = []
    last_partial: dict[str, float] = {}

    def sink(i: int) -> Any:
        async def on(event: CaptionEvent) -> None:
            now = time.monotonic()
            if event.final:
                finals[i].append((now, event.text))
            else:
                if event.segment_id in last_partial:
                    gaps.append(now - last_partial[event.segment_id])
                last_partial[event.segment_id] = now

        return on

    streams = [
        CaptionStream(model, sink(i), speaker=f"s{i}", phrases=WORDS, budget=budget)
        for i in range(k)
    ]
    cpu0 = time.process_time()
    t0 = time.monotonic() + 0.1

    async def play(stream: CaptionStream) -> None:
        for n, frame in enumerate(frames):
            await asyncio.sleep(max(0.0, t0 + (n + 1) * FRAME_S - time.monotonic()))
            await stream.push(frame)
        await stream.close()

    await asyncio.gather(*(play(s) for s in streams))
    cpu = time.process_time() - cpu0
    budget.shutdown()
    res = Result("commhub", k, len(pcm) / (2 * RATE))
    res.dropped_partials = sum(s.stats.dropped_partials for s in streams)
    return summarise(res, finals, gaps, ends, t0, cpu)


def run_bare_vosk(
    models: SpeechModels,
    k: int,
    pcm: bytes,
    ends: list[float],
    grammar: bool = True,
    warm: bytes | None = None,
) -> Result:
    """K real-time threads, one KaldiRecognizer each (``grammar``: the sentence's four words,
    else open vocabulary), Vosk's own endpointing. ``warm``: speech each recognizer is fed
    first, untimed (as the hub warms its spares), else they start cold."""
    import vosk

    model = models.get("ko")
    finals: list[list[tuple[float, str]]] = [[] for _ in range(k)]
    gaps: list[float] = []
    lock = threading.Lock()
    chunk = int(0.2 * RATE) * 2
    recs = [
        vosk.KaldiRecognizer(model._model, RATE, json.dumps(WORDS, ensure_ascii=False))  # type: ignore[attr-defined]
        if grammar
        else vosk.KaldiRecognizer(model._model, RATE)  # type: ignore[attr-defined]
        for _ in range(k)
    ]
    for rec in recs if warm else ():
        rec.AcceptWaveform(warm)
        rec.FinalResult()
    t0 = time.monotonic() + 0.1

    def play(i: int) -> None:
        rec = recs[i]
        last, last_text = None, ""
        for n in range(0, len(pcm), chunk):
            time.sleep(max(0.0, t0 + (n + chunk) / (2 * RATE) - time.monotonic()))
            if rec.AcceptWaveform(pcm[n : n + chunk]):
                text = json.loads(rec.Result())["text"]
                if text:
                    finals[i].append((time.monotonic(), text))
                last, last_text = None, ""
            else:
                text = json.loads(rec.PartialResult())["partial"]
                now = time.monotonic()
                if text:
                    if last is not None:
                        with lock:
                            gaps.append(now - last)
                    last, last_text = now, text
        text = json.loads(rec.FinalResult())["text"]
        if text:
            finals[i].append((time.monotonic(), text))
        del last_text

    cpu0 = time.process_time()
    threads = [threading.Thread(target=play, args=(i,)) for i in range(k)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    cpu = time.process_time() - cpu0
    return summarise(Result("bare-vosk", k, len(pcm) / (2 * RATE)), finals, gaps, ends, t0, cpu)


def table(results: list[Result]) -> str:
    head = (
        f"{'system':<10} {'K':>2} {'final p50':>9} {'p95':>6} {'partial gap p50':>15} "
        f"{'p95':>6} {'CPU s/audio s':>13} {'overhead':>8} {'right':>16} {'dropped':>7} "
        f"{'RSS MiB':>8}"
    )
    lines = [head, "-" * len(head)]
    bare = {r.streams: r for r in results if r.system == "bare-vosk"}
    for r in results:
        ratio = (
            r.cpu_per_audio_s / bare[r.streams].cpu_per_audio_s
            if r.streams in bare
            else float("nan")
        )
        lines.append(
            f"{r.system:<10} {r.streams:>2} {r.final_latency_p50:>8.2f}s "
            f"{r.final_latency_p95:>5.2f}s {r.partial_gap_p50:>14.2f}s "
            f"{r.partial_gap_p95:>5.2f}s {r.cpu_per_audio_s:>13.3f} "
            f"{ratio:>7.2f}x {r.sentences_right:>16} {r.dropped_partials:>7} {r.rss_mib:>8.0f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--sentences", type=int, default=7)
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="default: bench-results/captions-offline-<time>.json",
    )
    args = parser.parse_args()
    pcm, ends = timeline(args.sentences)
    models = SpeechModels(Path(os.environ.get("COMMHUB_MODELS_DIR", "models/installed")))
    models.get("ko")
    results: list[Result] = []
    for k in args.streams:
        print(f"K={k}: commhub ...", file=sys.stderr)
        results.append(asyncio.run(run_commhub(models, k, pcm, ends)))
        print(f"K={k}: bare vosk ...", file=sys.stderr)
        results.append(run_bare_vosk(models, k, pcm, ends))
    print(table(results))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS {peak:.0f} MiB; audio {len(pcm) / (2 * RATE):.1f} s per stream, "
        f"{os.cpu_count()} CPUs"
    )
    out = (
        args.json
        or Path("bench-results") / f"captions-offline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "captions_offline",
        "sentence": SENTENCE,
        "sentences": args.sentences,
        "pause_s": PAUSE_S,
        "cpus": os.cpu_count(),
        "peak_rss_mib": peak,
        "results": [asdict(r) for r in results],
    }
    out.write_text(json.dumps(doc, ensure_ascii=False, indent=2))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
