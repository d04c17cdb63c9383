#!/usr/bin/env python3
"""Imagery benchmark: what sampling published video for nudenet costs the hub.

Two parts, in one run:
  decode   offline, one encoded VP8 stream (640x360, 15 fps, libvpx through PyAV): the CPU
           of decoding every frame (what continuous decoding would cost per track) against
           decoding one key frame per sampling interval with a fresh decoder (what the hub
           does), the classifier's CPU per sample, and how much bigger a key frame is than
           the average frame (the publisher's extra bytes for each key-frame request)
  hub      three real hubs (`commhub serve` processes): imagery off, on (default budget)
           and on with a tight budget; N = 1..K video publishers (RoomClient SDK peers in
           this process); the hub's process CPU over a window, and the imagery metrics
           (samples taken, skipped for budget)

The publishers send a moving natural picture (scikit-image's astronaut) that the default
labels do not block, so the classifier runs on every sample and nothing stops.

    .venv/bin/python scripts/bench_imagery.py            # ~3 min
    .venv/bin/python scripts/bench_imagery.py --quick    # ~1 min

On a loaded 2-core machine the figures are indicative: the off/on difference at the same
N, measured minutes apart, carries the noise of whatever else runs.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import av
import cv2
import numpy as np
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.video.frame import VideoFrame
from benchlib import ROOT, HubProcess, cpu_seconds, pct, scrape, start_hub, write_json
from skimage import data

from commhub.moderation.detector import NudeNetClassifier
from commhub.moderation.keyframes import decode_keyframe
from commhub.sdk import RoomClient

LOOP = ("127.0.0.1",)
W, H, FPS = 640, 360, 15


def base_picture() -> np.ndarray:
    canvas = np.zeros((H, W, 3), np.uint8)
    canvas[:] = np.linspace(40, 200, W, dtype=np.uint8)[None, :, None]
    face = cv2.resize(np.ascontiguousarray(data.astronaut()[:, :, ::-1]), (H, H))
    canvas[:, (W - H) // 2 : (W + H) // 2] = face
    return canvas


def moving(picture: np.ndarray, n: int) -> np.ndarray:
    return np.roll(picture, (n * 3) % W, axis=1)  # a slow pan: every frame differs


class PanTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, picture: np.ndarray) -> None:
        super().__init__()
        self.picture = picture
        self.n = 0
        self.t0: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        self.t0 = self.t0 if self.t0 is not None else loop.time()
        await asyncio.sleep(max(0.0, self.t0 + self.n / FPS - loop.time()))
        frame = VideoFrame.from_ndarray(moving(self.picture, self.n), format="bgr24")
        frame.pts = self.n
        frame.time_base = fractions.Fraction(1, FPS)
        self.n += 1
        return frame


# -- part 1: decoding every frame against one key frame per interval ---------------------


def encode(seconds: float) -> tuple[list[bytes], list[bool]]:
    enc = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.bit_rate = 1_000_000
    enc.time_base = fractions.Fraction(1, FPS)
    enc.options = {"deadline": "realtime", "cpu-used": "8", "g": "100000"}  # no periodic key
    picture = base_picture()
    packets: list[Any] = []
    for n in range(int(seconds * FPS)):
        frame = VideoFrame.from_ndarray(moving(picture, n), format="bgr24").reformat(
            format="yuv420p"
        )
        frame.pts = n
        if n and n % (3 * FPS) == 0:
            frame.pict_type = av.video.frame.PictureType.I  # as a PLI would make it
        packets += enc.encode(frame)
    packets += enc.encode(None)
    return [bytes(p) for p in packets], [p.is_keyframe for p in packets]


def decode_part(seconds: float, intervals: list[float]) -> dict[str, Any]:
    frames, keys = encode(seconds)
    dec = av.CodecContext.create("vp8", "r")
    t0 = time.thread_time()
    for f in frames:
        dec.decode(av.Packet(f))
    continuous = (time.thread_time() - t0) / seconds  # CPU-s per track-second
    keyframes = [f for f, k in zip(frames, keys, strict=True) if k]
    one: list[float] = []
    pictures = []
    for _ in range(5):
        for k in keyframes:
            t0 = time.thread_time()
            pictures.append(decode_keyframe(k))
            one.append(time.thread_time() - t0)
    classifier = NudeNetClassifier(threads=1)
    classifier.load()
    classify: list[float] = []
    for p in pictures[:20]:
        t0 = time.thread_time()
        classifier.detect(p)
        classify.append(time.thread_time() - t0)
    key_bytes = float(np.mean([len(k) for k in keyframes]))
    delta_bytes = float(np.mean([len(f) for f, k in zip(frames, keys, strict=True) if not k]))
    decode_key = float(np.median(one))
    per_sample = decode_key + float(np.median(classify))
    return {
        "resolution": f"{W}x{H}",
        "fps": FPS,
        "continuous_decode_cpu_per_s": continuous,
        "keyframe_decode_cpu_s": decode_key,
        "classify_cpu_s": float(np.median(classify)),
        "classify_cpu_p95_s": pct(classify, 95),
        "keyframe_bytes": key_bytes,
        "delta_frame_bytes": delta_bytes,
        "per_interval": [
            {
                "interval_s": i,
                "sampled_decode_cpu_per_s": decode_key / i,
                "decode_saving_x": continuous / (decode_key / i),
                "sampling_cpu_per_s": per_sample / i,
                "extra_bytes_per_s": (key_bytes - delta_bytes) / i,
            }
            for i in intervals
        ],
    }


# -- part 2: the hub, imagery off and on ------------------------------------------------


def hub_settings(on: bool, interval: float, budget: float = 0.25) -> dict[str, str]:
    return {
        "imagery_cpu_budget": str(budget),
        "ice_host_addresses": '["127.0.0.1"]',
        "captions": "false",
        "translation": "false",
        "media_stall_timeout": "60",
        "imagery": "true" if on else "false",
        "imagery_interval": str(interval),
    }


async def run_hub(hub: HubProcess, n: int, window: float, room: str) -> dict[str, Any]:
    picture = base_picture()
    clients = [RoomClient(hub.url, hub.token(room, f"pub{i}"), ice_hosts=LOOP) for i in range(n)]
    tracks = [PanTrack(picture) for _ in range(n)]
    async with aiohttp.ClientSession() as http:
        try:
            for c, track in zip(clients, tracks, strict=True):
                await c.connect()
                await c.publish(track)
            await asyncio.sleep(4.0)  # connect, first key frames, first samples
            before = await scrape(http, hub.url, "commhub_imagery")
            ps = hub.ps
            sent = sum(t.n for t in tracks)
            c0, t0 = cpu_seconds(ps), time.monotonic()
            await asyncio.sleep(window)
            elapsed = time.monotonic() - t0
            cpu = (cpu_seconds(ps) - c0) / elapsed
            fps = (sum(t.n for t in tracks) - sent) / elapsed / n
            after = await scrape(http, hub.url, "commhub_imagery")
        finally:
            for c in clients:
                await c.close()

    def delta(name: str) -> float:
        return after.get(name, 0.0) - before.get(name, 0.0)

    return {
        "n": n,
        "hub_cpu_cores": cpu,
        "publisher_fps": fps,  # below FPS: the load generator (this process) fell behind
        "samples": delta("commhub_imagery_frames_sampled_total{}"),
        "skipped_budget": delta("commhub_imagery_frames_skipped_total{reason=budget}"),
        "skipped_queue": delta("commhub_imagery_frames_skipped_total{reason=queue}"),
        "sample_cpu_s": after.get("commhub_imagery_sample_cpu_seconds{}"),
    }


async def hub_part(
    ns: list[int], window: float, interval: float, tight: float
) -> list[dict[str, Any]]:
    work = Path(tempfile.mkdtemp(prefix="commhub-bench-imagery-"))
    hubs = {
        "off": start_hub(work / "off", hub_settings(False, interval)),
        "on": start_hub(work / "on", hub_settings(True, interval)),
        "tight": start_hub(work / "tight", hub_settings(True, interval, tight)),
    }
    rows = []
    try:
        for n in ns:
            for mode in hubs:  # the same N back to back
                row = await run_hub(hubs[mode], n, window, f"bench-{mode}-{n}")
                rows.append({"imagery": mode, **row})
                print(
                    f"imagery {mode:3} x{n}: hub {row['hub_cpu_cores'] * 100:.1f}% CPU, "
                    f"{row['samples']:.0f} samples, {row['skipped_budget']:.0f} over budget, "
                    f"publishers at {row['publisher_fps']:.1f} fps",
                    flush=True,
                )
        for mode, hub in hubs.items():
            for line in hub.log_problems():
                print(f"hub {mode}: {line}")
    finally:
        for hub in hubs.values():
            hub.stop()
    return rows


def table(result: dict[str, Any]) -> str:
    d = result["decode"]
    lines = [
        f"decode ({d['resolution']} VP8, {d['fps']} fps, one thread):",
        f"  decode every frame      {d['continuous_decode_cpu_per_s'] * 1000:7.1f} ms CPU "
        "per track-second",
        f"  decode one key frame    {d['keyframe_decode_cpu_s'] * 1000:7.1f} ms CPU",
        f"  classify (nudenet)      {d['classify_cpu_s'] * 1000:7.1f} ms CPU "
        f"(p95 {d['classify_cpu_p95_s'] * 1000:.1f})",
        f"  key frame / avg frame   {d['keyframe_bytes'] / 1024:7.1f} / "
        f"{d['delta_frame_bytes'] / 1024:.1f} KiB",
        "",
        f"{'interval s':>10} {'decode ms/s':>12} {'vs continuous':>14} {'sample ms/s':>12} "
        f"{'extra KiB/s':>12}",
    ]
    for r in d["per_interval"]:
        lines.append(
            f"{r['interval_s']:>10.1f} {r['sampled_decode_cpu_per_s'] * 1000:>12.2f} "
            f"{r['decode_saving_x']:>13.0f}x {r['sampling_cpu_per_s'] * 1000:>12.1f} "
            f"{r['extra_bytes_per_s'] / 1024:>12.1f}"
        )
    lines += ["", f"hub (interval {result['interval_s']} s, window {result['window_s']} s):"]
    head = f"{'tracks':>6} {'fps':>4} {'off CPU%':>9} {'on CPU%':>8} {'+CPU%/track':>12} " \
        f"{'samples':>8} {'| tight CPU%':>11} {'samples':>8} {'budget skips':>12}"  # fmt: skip
    lines += [head, "-" * len(head)]
    by = {(r["imagery"], r["n"]): r for r in result["hub"]}
    for n in sorted({r["n"] for r in result["hub"]}):
        off, on, tight = by[("off", n)], by[("on", n)], by[("tight", n)]
        extra = (on["hub_cpu_cores"] - off["hub_cpu_cores"]) * 100 / n
        lines.append(
            f"{n:>6} {min(off['publisher_fps'], on['publisher_fps']):>4.0f} "
            f"{off['hub_cpu_cores'] * 100:>9.1f} {on['hub_cpu_cores'] * 100:>8.1f} "
            f"{extra:>12.2f} {on['samples']:>8.0f} {tight['hub_cpu_cores'] * 100:>11.1f} "
            f"{tight['samples']:>8.0f} {tight['skipped_budget']:>12.0f}"
        )
    lines.append(
        f"(on: imagery_cpu_budget 0.25; tight: {result['tight_budget']}; samples in the window;"
    )
    lines.append(" fps: the slower publishers' rate, of 15; CPU% of one core, indicative)")
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ns = [1, 2] if args.quick else [1, 2, 4]
    decode = await asyncio.to_thread(decode_part, 10.0 if args.quick else 30.0, [1.0, 3.0, 10.0])
    print("decode part done", flush=True)
    hub = await hub_part(ns, args.window, args.interval, args.tight)
    return {
        "tight_budget": args.tight,
        "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()},
        "window_s": args.window,
        "interval_s": args.interval,
        "decode": decode,
        "hub": hub,
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--window", type=float, default=20.0, help="seconds measured per point")
    ap.add_argument("--interval", type=float, default=1.0, help="imagery_interval of the hub")
    ap.add_argument("--tight", type=float, default=0.05, help="the third hub's CPU budget")
    ap.add_argument("--quick", action="store_true", help="fewer points (about a minute)")
    ap.add_argument("--json", type=Path, default=ROOT / "bench-results", help="file or directory")
    args = ap.parse_args()
    if args.quick:
        args.window = min(args.window, 10.0)
    result = asyncio.run(run(args))
    print()
    print(table(result))
    out = args.json
    if out.suffix != ".json":
        out.mkdir(parents=True, exist_ok=True)
        out = out / f"imagery-{time.strftime('%Y%m%d-%H%M%S')}.json"
    write_json(out, result)
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
