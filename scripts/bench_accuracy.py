#!/usr/bin/env python3
"""Decoder presets: word error rate vs CPU on real English recordings, in both caption paths.

The recordings are Debian pocketsphinx-testdata's: LibriVox (five read sentences, 71
words) and "cards" (another speaker, 21 words, decoded at open vocabulary). Each preset
goes through `commhub transcribe`'s path (transcribe_file, one call per file) and the live
path (a CaptionStream with the hub's live settings, fed 48 kHz 20 ms WebRTC-like frames in
real time, one stream at a time: K=1). The default preset is measured in the same run, as
the baseline; rounds interleave the presets so that a change in the machine's load hits
them alike. CPU is this process's (every thread) per second of recorded audio; wall RTF is
wall time per audio second (live: real time plus the trailing silence, so about 1.2-1.5).

Vosk is listed but measured only where an English Vosk model is installed.

    .venv/bin/python scripts/bench_accuracy.py
    .venv/bin/python scripts/bench_accuracy.py --try hmm2000:maxhmmpf=2000,fwdflat=no
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import pct, write_json  # noqa: E402

from commhub.speech import pocketsphinx as ps_engine  # noqa: E402
from tests.helpers.accuracy import (  # noqa: E402
    SETS,
    Run,
    fresh_models,
    live_run,
    transcribe_run,
)

PATHS = ("transcribe", "live")
ENGINES = ("pocketsphinx", "vosk")


@dataclass
class Row:
    recordings: str
    engine: str
    preset: str
    path: str
    errors: int = 0
    words: int = 0
    audio_s: float = 0.0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    shed_s: float = 0.0
    final_lag_s: list[float] = field(default_factory=list)
    note: str = ""

    def add(self, run: Run) -> None:
        self.errors += run.errors
        self.words += run.words
        self.audio_s += run.audio_s
        self.cpu_s += run.cpu_s
        self.wall_s += run.wall_s
        self.shed_s += run.shed_s
        self.final_lag_s += run.final_lag_s

    @property
    def wer(self) -> float:
        return self.errors / self.words if self.words else float("nan")

    @property
    def cpu(self) -> float:
        return self.cpu_s / self.audio_s if self.audio_s else float("nan")


def candidate(spec: str) -> tuple[str, dict[str, Any]]:
    """ "name:opt=value,..." -> a pocketsphinx preset (values: int, float, yes/no)."""
    name, _, options = spec.partition(":")
    settings: dict[str, Any] = {}
    for item in filter(None, options.split(",")):
        key, _, raw = item.partition("=")
        value: Any
        if raw.lower() in {"yes", "true", "no", "false"}:
            value = raw.lower() in {"yes", "true"}
        else:
            try:
                value = int(raw)
            except ValueError:
                value = float(raw)
        settings[key.strip()] = value
    return name, settings


def measure(args: argparse.Namespace, engine: str) -> list[Row]:
    """Every run on new decoders (tests/helpers/accuracy.py fresh_models says why)."""
    rows = {
        (s, p, path): Row(s, engine, p, path)
        for s in args.sets
        for p in args.presets
        for path in args.paths
    }
    for n in range(args.rounds):
        for p in args.presets:
            for s in args.sets:
                recordings = SETS[s]()
                for path in args.paths:
                    print(f"round {n + 1}: {engine}/{p} {s} {path} ...", file=sys.stderr)
                    models = fresh_models(args.models_dir, engine)
                    run = (
                        transcribe_run(models, recordings, p)
                        if path == "transcribe"
                        else asyncio.run(live_run(models, recordings, p, args.speed))
                    )
                    rows[s, p, path].add(run)
    return list(rows.values())


def table(rows: list[Row]) -> str:
    head = (
        f"{'recordings':<10} {'engine/preset':<22} {'path':<10} {'WER':>14} {'vs default':>10} "
        f"{'CPU s/audio s':>13} {'vs default':>10} {'wall RTF':>8} {'final lag p50':>13} "
        f"{'shed s':>6}"
    )
    lines = [head, "-" * len(head)]
    base = {(r.recordings, r.engine, r.path): r for r in rows if r.preset == "default"}
    for r in rows:
        name = f"{r.engine}/{r.preset}"
        if r.note:
            lines.append(f"{r.recordings:<10} {name:<22} {r.path:<10} {r.note}")
            continue
        b = base.get((r.recordings, r.engine, r.path))
        dwer = f"{100 * (r.wer - b.wer):+.1f} pt" if b else ""
        dcpu = f"{100 * (r.cpu / b.cpu - 1):+.0f} %" if b else ""
        lag = pct(r.final_lag_s, 50)
        lag_text = f"{lag:.2f} s" if r.final_lag_s else "-"
        lines.append(
            f"{r.recordings:<10} {name:<22} {r.path:<10} "
            f"{f'{r.wer:.3f} ({r.errors}/{r.words})':>14} {dwer:>10} {r.cpu:>13.3f} "
            f"{dcpu:>10} {r.wall_s / r.audio_s:>8.2f} {lag_text:>13} {r.shed_s:>6.1f}"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--presets", nargs="+", default=["default", "fast"])
    ap.add_argument(
        "--try",
        dest="candidates",
        action="append",
        default=[],
        metavar="NAME:OPT=VALUE,...",
        help="also measure a candidate pocketsphinx preset (pocketsphinx Config options)",
    )
    ap.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    ap.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    ap.add_argument("--rounds", type=int, default=1, help="interleaved runs of every preset")
    ap.add_argument("--speed", type=float, default=1.0, help="live feed: 1 real time, 0 at once")
    ap.add_argument(
        "--models-dir",
        type=Path,
        default=Path(os.environ.get("COMMHUB_MODELS_DIR", "models/installed")),
    )
    ap.add_argument("--json", type=Path, default=ROOT / "bench-results" / "bench_accuracy.json")
    args = ap.parse_args()
    for spec in args.candidates:
        name, settings = candidate(spec)
        ps_engine.PRESETS[name] = settings  # this run only
        args.presets.append(name)
    if "default" not in args.presets:
        args.presets.insert(0, "default")  # the baseline is always measured

    rows: list[Row] = []
    for engine in ENGINES:
        if fresh_models(args.models_dir, engine).languages().get("en") != engine:
            why = f"not measurable here: no English {engine} model installed"
            rows += [Row("all", engine, p, "both", note=why) for p in ("default", "fast")]
            continue
        presets = args.presets if engine == "pocketsphinx" else ["default", "fast"]
        rows += measure(argparse.Namespace(**{**vars(args), "presets": presets}), engine)

    print(table(rows))
    print(f"{os.cpu_count()} CPUs; {args.rounds} round(s); live fed at speed {args.speed}")
    write_json(
        args.json,
        {
            "bench": "accuracy",
            "machine": platform.platform(),
            "cpus": os.cpu_count(),
            "rounds": args.rounds,
            "speed": args.speed,
            "presets": {p: ps_engine.PRESETS.get(p) for p in args.presets},
            "rows": [{**vars(r), "wer": r.wer, "cpu_per_audio_s": r.cpu} for r in rows],
        },
    )
    print(f"wrote {args.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
