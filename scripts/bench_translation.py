#!/usr/bin/env python3
"""Translation throughput and latency: engines raw vs through TranslationService.

For each engine (Apertium eng-spa; a tiny random-weight Argos package built here, since no
registry ships a real one): a direct engine call as the baseline (raw CTranslate2
translate_batch / a raw Apertium pipe, and Apertium's one-process-per-call), then the
service sequential, concurrent with and without batching, and repeated (cache hits).
Prints a table and writes JSON (bench-results/bench_translation.json by default).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import pct  # noqa: E402
from prometheus_client import CollectorRegistry  # noqa: E402

from commhub.translate import (  # noqa: E402
    ApertiumTranslator,
    ArgosTranslator,
    TranslationService,
    Translator,
    argos_dir,
    install_argos_package,
)
from commhub.translate.apertium import default_modes_dir  # noqa: E402

SUBJECTS = ["The train", "My sister", "The city hall", "This room", "Our teacher", "The weather",
            "The old house", "Your friend"]  # fmt: skip
PREDICATES = ["is very nice today.", "opens at ten in the morning.", "was closed last week.",
              "looks bigger than before.", "will be ready tomorrow.", "needs a new door.",
              "is near the station.", "has many windows."]  # fmt: skip
SENTENCES = [f"{s} {p}" for s in SUBJECTS for p in PREDICATES]  # 64 distinct


def row(
    engine: str, mode: str, latencies: list[float], wall: float, n: int, **extra: Any
) -> dict[str, Any]:
    return {
        "engine": engine, "mode": mode, "n": n,
        "p50_ms": round(pct(latencies, 50) * 1000, 3) if latencies else None,
        "p95_ms": round(pct(latencies, 95) * 1000, 3) if latencies else None,
        "sentences_per_s": round(n / wall, 1) if wall > 0 else None, **extra,
    }  # fmt: skip


def timed_sequential(
    fn: Callable[[str], object], texts: Sequence[str]
) -> tuple[list[float], float]:
    lat: list[float] = []
    start = time.perf_counter()
    for text in texts:
        t = time.perf_counter()
        fn(text)
        lat.append(time.perf_counter() - t)
    return lat, time.perf_counter() - start


async def service_runs(
    name: str,
    make: Callable[[], Translator],
    source: str,
    target: str,
    texts: list[str],
    workers: int,
) -> list[dict[str, Any]]:
    rows = []

    async def one(svc: TranslationService, text: str) -> float:
        t = time.perf_counter()
        result = await svc.translate(text, source, target)
        assert result.status == "ok", result
        return time.perf_counter() - t

    async def run(mode: str, max_batch: int | None, concurrent: bool, repeat: bool) -> None:
        svc = TranslationService([make()], registry=CollectorRegistry(), max_batch=max_batch,
                                 workers=workers, timeout=120)  # fmt: skip
        await svc.translate("Warm up the engine.", source, target)  # model load / pipeline start
        if repeat:
            for text in texts:
                await svc.translate(text, source, target)
        reg = svc.metrics.registry
        calls_name = "commhub_translation_engine_calls_total"
        before = reg.get_sample_value(calls_name, {"engine": name}) or 0.0
        start = time.perf_counter()
        if concurrent:
            lat = list(await asyncio.gather(*(one(svc, t) for t in texts)))
        else:
            lat = [await one(svc, t) for t in texts]
        wall = time.perf_counter() - start
        calls = (reg.get_sample_value(calls_name, {"engine": name}) or 0.0) - before
        await svc.aclose()
        rows.append(row(name, mode, lat, wall, len(texts), engine_calls=int(calls)))

    await run("service sequential", None, False, False)
    await run(f"service {len(texts)} concurrent, unbatched", 1, True, False)
    await run(f"service {len(texts)} concurrent, batched", None, True, False)
    await run("service sequential, cache hits", None, False, True)
    return rows


def bench_apertium(texts: list[str], workers: int) -> list[dict[str, Any]]:
    rows = []
    # Baseline 1: what a naive integration does, one `apertium` process per sentence.
    few = texts[:8]
    lat, wall = timed_sequential(
        lambda t: subprocess.run(
            ["apertium", "-u", "eng-spa"], input=t.encode(), capture_output=True, check=True
        ),
        few,
    )
    rows.append(row("apertium", "raw: process per sentence", lat, wall, len(few)))
    # Baseline 2: the raw null-flush pipe, no service around it.
    eng = ApertiumTranslator()
    eng.translate_batch(["warm up"], "en", "es")
    lat, wall = timed_sequential(lambda t: eng.translate_batch([t], "en", "es"), texts)
    rows.append(row("apertium", "raw pipe, one per call", lat, wall, len(texts)))
    start = time.perf_counter()
    eng.translate_batch(texts, "en", "es")
    wall = time.perf_counter() - start
    rows.append(row("apertium", f"raw pipe, one call of {len(texts)}", [wall], wall, len(texts)))
    eng.close()
    rows += asyncio.run(service_runs("apertium", ApertiumTranslator, "en", "es", texts, workers))
    return rows


def bench_argos(texts: list[str], workers: int, max_len: int) -> list[dict[str, Any]]:
    from tests.helpers.translate import build_argos_package

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp)
        install_argos_package(build_argos_package(models, "en", "es"), models, progress=False)

        def make() -> Translator:
            return ArgosTranslator(argos_dir(models), max_decoding_length=max_len)

        eng = ArgosTranslator(argos_dir(models), max_decoding_length=max_len)
        model = eng.model("en", "es")
        tokens = [model.encode(t) for t in texts]
        opts = {"beam_size": 4, "max_decoding_length": max_len, "length_penalty": 0.2}
        model.translator.translate_batch(tokens[:1], **opts)
        lat, wall = timed_sequential(
            lambda t: model.translator.translate_batch([model.encode(t)], **opts), texts
        )
        rows.append(row("argos", "raw ctranslate2, one per call", lat, wall, len(texts)))
        start = time.perf_counter()
        model.translator.translate_batch(tokens, **opts)
        wall = time.perf_counter() - start
        rows.append(
            row("argos", f"raw ctranslate2, one call of {len(texts)}", [wall], wall, len(texts))
        )
        rows += asyncio.run(service_runs("argos", make, "en", "es", texts, workers))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench_translation.json")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--argos-max-len", type=int, default=64,
                    help="decoding cap: random weights never emit end-of-sentence")  # fmt: skip
    ap.add_argument("--skip", choices=["argos", "apertium"], action="append", default=[])
    args = ap.parse_args()
    texts = SENTENCES
    rows: list[dict[str, Any]] = []
    modes = default_modes_dir()
    if "apertium" not in args.skip:
        if modes is not None and (modes / "eng-spa.mode").is_file():
            rows += bench_apertium(texts, args.workers)
        else:
            print("apertium eng-spa not installed: skipped", file=sys.stderr)
    if "argos" not in args.skip:
        rows += bench_argos(texts, args.workers, args.argos_max_len)

    head = (
        f"{'engine':9} {'mode':40} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'sent/s':>9} {'calls':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['engine']:9} {r['mode']:40} {r['n']:>4} {r['p50_ms']!s:>9} {r['p95_ms']!s:>9} "
              f"{r['sentences_per_s']!s:>9} {r.get('engine_calls', '')!s:>6}")  # fmt: skip
    args.json.parent.mkdir(parents=True, exist_ok=True)
    doc = {
        "bench": "translation",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "workers": args.workers,
        "argos_model": "tiny random-weight Transformer (1+1 layers, d=16), decoding capped at "
        f"{args.argos_max_len} tokens",
        "rows": rows,
    }
    args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
