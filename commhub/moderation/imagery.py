"""Imagery moderation: sample published video, classify it off the loop, block what is
flagged.

Per published video track, every `imagery_interval` seconds the hub asks the publisher
for a key frame (PLI), keeps the next one (`keyframes.KeyframeGrab`, one byte test per
frame on the loop) and hands it to one worker thread that decodes that frame alone and
runs the classifier (nudenet). The relay itself never decodes. The worker has a CPU
budget (`imagery_cpu_budget`, in cores): a token bucket filled at that rate pays each
sample's measured CPU time, so with many tracks each is sampled less often than the
interval says, and every sample given up is counted (`commhub_imagery_frames_skipped
{reason="budget"}`); at most `imagery_queue` samples are on or queued for the worker; a
key frame that finds it full waits (one per track) and is dropped after an interval
(`reason="queue"`). The loop never waits for the worker.

A frame with a blocked label (`imagery_labels`) at or above `imagery_threshold` stops
its track at once (`Media.suppress(..., reason="imagery")`: the room sees the track
muted), the publisher and the room's moderators get `track_blocked`, and the frame is
kept blurred as evidence (`evidence_frames(room, identity)`). The block holds until it is
released (`Media.release(..., reason="imagery")`) or the publisher leaves the room.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from commhub import protocol
from commhub.config import Settings
from commhub.media import Media
from commhub.media.forward import Publication
from commhub.media.manager import Outbox
from commhub.moderation.detector import ImageClassifier, NudeNetClassifier
from commhub.moderation.evidence_frames import EvidenceFrames
from commhub.moderation.keyframes import KeyframeGrab, UndecodableFrame, decode_keyframe
from commhub.rooms import Participant, Rooms

log = logging.getLogger("commhub.moderation.imagery")

REASON = "imagery"  # the Media.suppress reason of a flagged track
TICK = 0.25  # seconds between scheduling passes
KEYFRAME_WAIT = 2.0  # seconds to wait for a requested key frame before asking again
FIRST_COST = 0.1  # CPU seconds a sample is assumed to cost until one was measured


class ImageryMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.sampled = Counter(
            "commhub_imagery_frames_sampled",
            "Video key frames decoded and classified",
            registry=registry,
        )
        self.flagged = Counter(
            "commhub_imagery_frames_flagged",
            "Sampled frames that blocked their track, by label",
            ["label"],
            registry=registry,
        )
        self.skipped = Counter(
            "commhub_imagery_frames_skipped",
            "Samples given up: budget (over imagery_cpu_budget), queue (worker backlog), "
            "undecodable",
            ["reason"],
            registry=registry,
        )
        self.classify_seconds = Histogram(
            "commhub_imagery_classify_seconds",
            "Wall time to decode and classify one sampled frame on the worker",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0, 5.0),
            registry=registry,
        )
        self.sample_cpu = Gauge(
            "commhub_imagery_sample_cpu_seconds",
            "CPU seconds one sample costs (moving average): the budget divides by it",
            registry=registry,
        )
        self.tracks = Gauge(
            "commhub_imagery_tracks", "Video tracks being sampled", registry=registry
        )


@dataclass(eq=False)
class Sampled:
    """One published video track under watch."""

    room: str
    owner: Participant
    pub: Publication
    grab: KeyframeGrab = field(default_factory=KeyframeGrab)
    due: float = 0.0  # when the next sample is wanted
    last: float = 0.0  # when the last sample was taken (fairness under the budget)
    busy: bool = False  # a sample of it is on the worker


@dataclass
class Verdict:
    sampled: Sampled
    cpu: float
    wall: float
    label: str | None = None
    score: float = 0.0
    evidence: dict[str, Any] | None = None
    error: str | None = None


class CpuBudget:
    """A token bucket of CPU seconds, filled at `cores` per second; a sample may start when
    the bucket holds what a sample costs (a moving average of measured costs)."""

    def __init__(self, cores: float, interval: float) -> None:
        self.cores = cores
        self.cap = cores * max(interval, 1.0)
        self.tokens = self.cap
        self.cost = FIRST_COST
        self._at = time.monotonic()

    def _fill(self, now: float) -> None:
        self.tokens = min(self.cap + self.cost, self.tokens + (now - self._at) * self.cores)
        self._at = now

    def allows(self, now: float) -> bool:
        self._fill(now)
        return self.tokens >= self.cost

    def spend(self, cpu: float) -> None:
        self._fill(time.monotonic())
        self.tokens -= cpu
        self.cost = 0.8 * self.cost + 0.2 * cpu


class ImageryModerator:
    def __init__(
        self,
        settings: Settings,
        media: Media,
        rooms: Rooms,
        outbox: Outbox,
        registry: CollectorRegistry,
        classifier: ImageClassifier | None = None,
    ) -> None:
        self.settings = s = settings
        self.media = media
        self.rooms = rooms
        self.outbox = outbox
        self.metrics = ImageryMetrics(registry)
        self.classifier = classifier or NudeNetClassifier(threads=1)
        self.labels = frozenset(s.imagery_labels)
        self.evidence = EvidenceFrames(s.data_dir)
        self.budget = CpuBudget(s.imagery_cpu_budget, s.imagery_interval)
        self.tracks: dict[str, Sampled] = {}  # by publication key
        self.in_flight = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="imagery")
        self._remove: Callable[[], None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public API ---------------------------------------------------------------------

    def evidence_frames(self, room: str, identity: str) -> list[dict[str, Any]]:
        """Blurred frames that blocked identity's video in room, oldest first:
        {path, label, score, ts, track, participant, room, identity}."""
        return self.evidence.frames(room, identity)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._prepare)
        self._remove = self.media.on_video_track(self._watch)
        self._ticker = asyncio.create_task(self._run(), name="commhub-imagery")

    async def close(self) -> None:
        if self._remove is not None:
            self._remove()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, True)

    # -- scheduling (event loop) ----------------------------------------------------------

    def _prepare(self) -> None:
        if isinstance(self.classifier, NudeNetClassifier):
            self.classifier.load()
        count = self.evidence.load()
        log.info("imagery moderation on: labels %s, %d evidence frames", sorted(self.labels), count)

    def _watch(self, room: str, owner: Participant, pub: Publication) -> None:
        sampled = Sampled(room, owner, pub, due=time.monotonic() + 0.5)
        pub.observers.append(sampled.grab)
        self.tracks[pub.key] = sampled
        self.metrics.tracks.set(len(self.tracks))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(TICK)
            try:
                self._pass(time.monotonic())
            except Exception:
                log.exception("imagery scheduling pass failed")

    def _pass(self, now: float) -> None:
        interval = self.settings.imagery_interval
        for key, t in list(self.tracks.items()):
            if t.pub.ended:
                del self.tracks[key]
                self.metrics.tracks.set(len(self.tracks))
        # The track sampled longest ago goes first, so that under the budget all share.
        for t in sorted(self.tracks.values(), key=lambda t: t.last):
            if t.busy or t.pub.muted or t.pub.suppressed:
                t.grab.armed = False  # nothing of it is forwarded: nothing to look at
                continue
            frame = t.grab.frame
            if frame is not None:
                if self.in_flight < self.settings.imagery_queue:
                    t.grab.frame = None
                    self._submit(t, frame, now)
                elif now - t.grab.armed_at > interval:
                    # it waited a whole interval for the worker: give this one up
                    t.grab.frame = None
                    t.due = now + interval
                    self.metrics.skipped.labels("queue").inc()
            elif t.grab.armed:
                if now - t.grab.armed_at > KEYFRAME_WAIT:
                    t.grab.arm(now)
                    t.pub.request_keyframe()
            elif now >= t.due:
                if not self.budget.allows(now):
                    self.metrics.skipped.labels("budget").inc()
                    t.due = now + interval
                    continue
                t.grab.arm(now)
                t.pub.request_keyframe()

    def _submit(self, t: Sampled, frame: bytes, now: float) -> None:
        # counted from the request, so the key frame's delay does not stretch the cadence
        t.due = t.grab.armed_at + self.settings.imagery_interval
        t.last = now
        self.in_flight += 1
        t.busy = True
        # Paid now at the expected cost, corrected when the real cost is known.
        self.budget.tokens -= self.budget.cost
        task = asyncio.ensure_future(self._classify(t, frame))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _classify(self, t: Sampled, frame: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            verdict = await loop.run_in_executor(self._executor, self._work, t, frame)
        finally:
            self.in_flight -= 1
            t.busy = False
        self.budget.tokens += self.budget.cost  # undo the advance, pay the measured cost
        self.budget.spend(verdict.cpu)
        self.metrics.sample_cpu.set(round(self.budget.cost, 4))
        if verdict.error is not None:
            self.metrics.skipped.labels("undecodable").inc()
            log.info("sample of %s not decodable: %s", t.pub.key, verdict.error)
            return
        self.metrics.sampled.inc()
        self.metrics.classify_seconds.observe(verdict.wall)
        if verdict.label is not None:
            await self._block(t, verdict)

    # -- the worker -----------------------------------------------------------------------

    def _work(self, t: Sampled, frame: bytes) -> Verdict:
        cpu0, wall0 = time.thread_time(), time.perf_counter()
        verdict = Verdict(t, 0.0, 0.0)
        try:
            picture = decode_keyframe(frame)
            found = self.classifier.detect(picture)
        except UndecodableFrame as exc:
            verdict.error = str(exc)
            found = []
        verdict.wall = time.perf_counter() - wall0
        hits = [(s, label) for label, s in found if label in self.labels]
        hits = [h for h in hits if h[0] >= self.settings.imagery_threshold]
        if hits:
            verdict.score, verdict.label = max(hits)
            try:
                verdict.evidence = self.evidence.save(
                    picture,
                    room=t.room,
                    identity=t.owner.identity,
                    participant=t.owner.id,
                    track=t.pub.track_id,
                    label=verdict.label,
                    score=verdict.score,
                    ts=time.time(),
                )
            except OSError:
                log.exception("evidence frame not stored")
        verdict.cpu = time.thread_time() - cpu0
        return verdict

    # -- blocking (event loop) ------------------------------------------------------------

    async def _block(self, t: Sampled, verdict: Verdict) -> None:
        assert verdict.label is not None
        if t.pub.ended:
            return
        self.metrics.flagged.labels(verdict.label).inc()
        await self.media.suppress(t.room, t.owner.id, track_id=t.pub.track_id, reason=REASON)
        if verdict.evidence is not None:
            self.evidence.add(verdict.evidence)
        room = self.rooms.get(t.room)
        moderators = [p.id for p in room.participants.values() if p.can("moderate")] if room else []
        to = sorted({t.owner.id, *moderators})
        msg = protocol.track_blocked(
            participant=t.owner.id,
            track={"id": t.pub.track_id, "kind": t.pub.kind},
            reason=REASON,
            label=verdict.label,
            score=verdict.score,
            ts=time.time(),
        )
        await self.outbox.publish(t.room, msg, to=to)
        log.warning(
            "video %s of %s in %s blocked: %s %.2f",
            t.pub.track_id, t.owner.id, t.room, verdict.label, verdict.score,
        )  # fmt: skip

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("imagery sample failed", exc_info=task.exception())


IMAGERY = web.AppKey("imagery", ImageryModerator)


def setup(app: web.Application, settings: Settings, media: Media, rooms: Rooms, outbox: Any,
          registry: CollectorRegistry) -> ImageryModerator | None:  # fmt: skip
    """Wire imagery moderation into the app when `imagery` is on (app[IMAGERY])."""
    if not settings.imagery:
        return None
    moderator = ImageryModerator(settings, media, rooms, outbox, registry)
    app[IMAGERY] = moderator

    async def lifecycle(app: web.Application) -> Any:
        await moderator.start()
        yield
        await moderator.close()

    app.cleanup_ctx.append(lifecycle)
    return moderator
