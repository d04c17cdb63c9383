#!/usr/bin/env python3
"""Recognize workers: threads sharing one Vosk model, or forked processes sharing it
copy-on-write? The same work both ways, in the same run.

K streams of varied Korean speech (the hub's warm-up sentences, espeak-ng), each decoded in
0.2 s chunks by its own open-vocabulary recognizer, as fast as W workers go (a stream is
bound to one worker: a recognizer cannot move). Threads: one process, W threads (Vosk
releases the GIL while it decodes). Processes: the model loaded once, then W forked
children, each decoding its share. Reported: wall seconds, audio seconds decoded per wall
second, CPU seconds per audio second, and memory (PSS, which counts a shared page once).

    .venv/bin/python scripts/bench_workers.py            # K=8, W=2
    .venv/bin/python scripts/bench_workers.py --streams 4 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from benchlib import ROOT

from commhub.speech import SpeechModels
from commhub.speech.vosk import VoskModel
from commhub.speech.warmup import warmup_audio

CHUNK = 6400  # 0.2 s of s16 16 kHz


def decode(model: VoskModel, pcm: bytes, streams: list[int]) -> None:
    """Round-robin over this worker's streams, a chunk at a time, as live audio comes."""
    recs = {i: model.recognizer() for i in streams}
    for at in range(0, len(pcm), CHUNK):
        for rec in recs.values():
            rec.accept(pcm[at : at + CHUNK])
    for rec in recs.values():
        rec.finish()
        rec.close()


def shares(k: int, w: int) -> list[list[int]]:
    return [list(range(i, k, w)) for i in range(w)]


def pss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            total += psutil.Process(pid).memory_full_info().pss
    return total / 2**20


def with_threads(model: VoskModel, pcm: bytes, k: int, w: int) -> dict[str, Any]:
    cpu0, t0 = time.process_time(), time.monotonic()
    with ThreadPoolExecutor(w) as pool:
        jobs = [pool.submit(decode, model, pcm, s) for s in shares(k, w)]
        peak = 0.0
        while not all(j.done() for j in jobs):
            peak = max(peak, pss_mib([os.getpid()]))
            time.sleep(0.2)
        for j in jobs:
            j.result()
    return {"wall": time.monotonic() - t0, "cpu": time.process_time() - cpu0, "pss": peak}


def with_processes(model: VoskModel, pcm: bytes, k: int, w: int) -> dict[str, Any]:
    t0 = time.monotonic()
    children = []
    for share in shares(k, w):
        pid = os.fork()
        if pid == 0:  # the child decodes its share and leaves without cleanup
            try:
                decode(model, pcm, share)
            finally:
                os._exit(0)
        children.append(pid)
    peak, cpu = 0.0, 0.0
    alive = set(children)
    while alive:
        peak = max(peak, pss_mib([os.getpid(), *alive]))
        for pid in list(alive):
            done, _status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                alive.discard(pid)
                cpu += usage.ru_utime + usage.ru_stime
        time.sleep(0.2)
    return {"wall": time.monotonic() - t0, "cpu": cpu, "pss": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternating")
    parser.add_argument("--json", type=Path, default=ROOT / "bench-results" / "workers.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pcm = warmup_audio("ko", Path(tmp))
    if pcm is None:
        sys.exit("espeak-ng is needed for the speech")
    model = SpeechModels(ROOT / "models" / "installed").get("ko")
    assert isinstance(model, VoskModel)
    model.idle_max = 0  # every recognizer fresh: no pool between runs
    audio = args.streams * len(pcm) / 32000
    rows = []
    base = pss_mib([os.getpid()])
    for n in range(args.rounds):
        for name, run in (("threads", with_threads), ("processes", with_processes)):
            got = run(model, pcm, args.streams, args.workers)
            rows.append({"workers": name, "round": n + 1, **got, "audio": audio})
            print(f"{name} round {n + 1}: {got['wall']:.1f} s", file=sys.stderr)
    print(f"K={args.streams} streams x {len(pcm) / 32000:.1f} s, W={args.workers}, "
          f"{os.cpu_count()} CPUs; PSS with the model loaded {base:.0f} MiB")  # fmt: skip
    print(f"{'workers':10} {'round':>5} {'wall s':>7} {'audio s/wall s':>15} {'CPU s/audio s':>14} "
          f"{'peak PSS MiB':>13}")  # fmt: skip
    for r in rows:
        print(f"{r['workers']:10} {r['round']:>5} {r['wall']:7.1f} {r['audio'] / r['wall']:15.1f} "
              f"{r['cpu'] / r['audio']:14.3f} {r['pss']:13.0f}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"bench": "workers", "base_pss_mib": base, "rows": rows},
                                    indent=2))  # fmt: skip
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
