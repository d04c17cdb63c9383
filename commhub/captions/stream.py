"""CaptionStream: one audio stream in, caption events out (resample -> gate -> recognize).

The event loop only resamples and gates (tens of microseconds per 20 ms frame). Decoding
runs in the shared RecognitionBudget's threads, one job at a time per stream, because a
recognizer is not thread-safe; so do the recognizer's creation (taken when the stream
opens, before anyone speaks) and its release (freeing one is ~0.1 s of C). Speech audio
is queued per stream in chunks of ``chunk_ms``; a job takes what is queued for the
current utterance (up to ``max_job_s``), so when decoding
falls behind, chunks merge and their partials are skipped (counted), while every
utterance still gets its final. The queue holds at most ``max_backlog_s`` of speech: past
that the oldest queued speech is shed (counted), so a stream that cannot keep up lags by
a bounded amount and costs bounded memory.

With ``max_lag_s`` set (live captions) the lag itself is bounded: a job decides what to
decode only once it holds a thread, and by then the stream degrades in this order while
its oldest audio waits too long: the node is marked strained (new utterances decode with
the model's ``fast`` preset, when one is given), the stream's partials stop, and the oldest
queued speech whose final would come later than ``max_lag_s`` after its utterance ended
(by the stream's measured decode speed and wait for a thread) is shed, counted. Each
degradation episode (from the first drop until ``EPISODE_QUIET_S`` without one) is
counted once in ``episodes``: the room is told once per episode.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import av

from ..speech.base import BYTES_PER_SECOND, Hypothesis, Recognizer, SpeechModel, Word
from .budget import RecognitionBudget, default_budget
from .events import CaptionEvent, OnCaption
from .gate import GateEvent, GateSettings, SpeechAudio, SpeechEnd, SpeechStart, VoiceGate
from .metrics import CaptionMetrics, default_metrics
from .resample import Resampler

log = logging.getLogger(__name__)

# The lag policy, as fractions of max_lag_s: oldest audio older than FAST_AT marks the node
# strained (fast preset for STRAIN_HOLD_S) when the job also waited CONTENDED_AT for a
# thread; older than QUIET_AT stops the stream's partials until it is back under CALM_AT.
FAST_AT = 0.25
CONTENDED_AT = 0.05  # ... and its job waited this long for a thread (the node is loaded)
QUIET_AT = 0.5
CALM_AT = 0.25
STRAIN_HOLD_S = 15.0
STRAINED_JOB_S = 1.0  # jobs are shorter while the node is strained: shorter waits for all
# Shedding aims this fraction of the bound early: its estimates (decode speed, wait for a
# thread) lag a node that is getting busier (measured at K=8: one final 0.18 s past the bound
# when aiming at it exactly).
LAG_HEADROOM = 0.1
EPISODE_QUIET_S = 10.0  # seconds without a drop that end a degradation episode
_EWMA = 0.3  # weight of the newest measure in the decode speed and wait estimates
RTF_CEILING = 4.0  # one stalled job cannot make the estimate shed everything


@dataclass(frozen=True)
class StreamSettings:
    chunk_ms: int = 90  # decode granularity, a multiple of the gate's 30 ms frames
    partials: bool = True
    # An unchanged partial is re-sent so that one arrives at least this often while
    # someone speaks (listeners see the caption is live; its end time moves on).
    partial_refresh_ms: int = 250
    # Room for network and decoder jitter: a partial is re-sent early rather than late.
    partial_margin_ms: int = 60
    max_backlog_s: float = 20.0  # queued speech per stream; beyond, the oldest is shed
    # A decode job takes at most this much queued speech: big enough that a stream behind
    # catches up in few calls, small enough that other streams get a thread in between.
    max_job_s: float = 2.0
    lossless: bool = False  # files: push() waits for room instead of shedding
    # No final later than this after its utterance ended: older queued speech is shed
    # (live captions: caption_max_lag). 0: no lag bound (files; the backlog bound only).
    max_lag_s: float = 0.0
    gate: GateSettings = field(default_factory=GateSettings)


@dataclass
class StreamStats:
    partials: int = 0
    dropped_partials: int = 0
    finals: int = 0
    dropped_utterances: int = 0  # shed whole, or cut short where decoding stood
    shed_seconds: float = 0.0  # queued speech thrown away to hold the backlog or lag bound
    lag_shed_seconds: float = 0.0  # of which to hold the lag bound
    skipped_partials: int = 0  # of dropped_partials, not sent because the stream lagged
    fast_utterances: int = 0  # utterances decoded with the fast preset (the node strained)
    episodes: int = 0  # degradation episodes (the room is told once per episode)
    audio_seconds: float = 0.0
    recognize_seconds: float = 0.0


@dataclass(eq=False)
class _Segment:
    id: str
    origin: float  # stream time of the first sample the recognizer gets for it
    fed: float = 0.0  # seconds of audio decoded so far
    last_partial: str = ""
    last_partial_at: float = 0.0
    sent_partial: bool = False
    model: SpeechModel | None = None  # chosen at its first job: one recognizer per utterance


@dataclass(eq=False)
class _Chunk:
    segment: _Segment
    pcm: bytes
    at: float  # monotonic arrival: the job's deadline in the budget is its oldest audio's


@dataclass(eq=False)
class _End:
    segment: _Segment
    speech_end: float
    detected_at: float  # monotonic wall time when the gate closed the utterance


class CaptionStream:
    def __init__(
        self,
        model: SpeechModel,
        on_event: OnCaption,
        *,
        speaker: str,
        phrases: Sequence[str] | None = None,
        settings: StreamSettings | None = None,
        budget: RecognitionBudget | None = None,
        metrics: CaptionMetrics | None = None,
        stream_id: str | None = None,
        fast: Callable[[], SpeechModel | None] | None = None,
    ) -> None:
        """``fast`` gives the fast-preset model when loaded (None: not yet, or none): new
        utterances use it while the budget is strained."""
        self.model = model
        self.speaker = speaker
        self.language = model.language
        self.settings = settings or StreamSettings()
        self.stats = StreamStats()
        self.stream_id = stream_id or uuid.uuid4().hex[:12]
        self._on_event = on_event
        self._phrases = list(phrases) if phrases else None
        self._budget = budget or default_budget()
        self._metrics = metrics or default_metrics()
        self._resampler = Resampler()
        self._gate = VoiceGate(self.settings.gate)
        self._chunk_bytes = BYTES_PER_SECOND * self.settings.chunk_ms // 1000
        self._queue: deque[_Chunk | _End] = deque()
        self._queued_bytes = 0
        self._pending = bytearray()
        self._segment: _Segment | None = None
        self._decoding: _Segment | None = None  # the segment the recognizer is on
        self._last_shed_log = -1e9
        self._segments = 0
        self._recognizer: Recognizer | None = None
        self._recognizer_model: SpeechModel = model  # the model it came from
        self._fast = fast
        self._rtf: float | None = None  # wall seconds per audio second decoded (estimate)
        self._wait = 0.0  # seconds a job waits for a thread (estimate)
        self._finish_s = 0.0  # seconds a final takes after its audio (estimate)
        self._lagging = False  # partials stopped
        self._episode_until = -1.0
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._closing = False
        self._closed = False
        self._worker = asyncio.get_running_loop().create_task(self._work())
        self._metrics.active_streams.inc()

    # -- input (event loop) -------------------------------------------------------------

    @property
    def time(self) -> float:
        """Seconds of audio received."""
        return self.stats.audio_seconds

    @property
    def finished(self) -> asyncio.Task[None]:
        """The stream's worker: done once the last job ran and the recognizer is released."""
        return self._worker

    @property
    def backlog_seconds(self) -> float:
        return (self._queued_bytes + len(self._pending)) / BYTES_PER_SECOND

    async def push(self, frame: av.AudioFrame | bytes) -> None:
        """Feed audio: an av.AudioFrame of any format, or s16le mono 16 kHz bytes.

        Never waits in live mode; in lossless mode waits while the backlog is full.
        """
        if self._closing:
            raise RuntimeError("CaptionStream is closed")
        started = time.perf_counter()
        pcm = frame if isinstance(frame, bytes) else self._resampler(frame)
        resampled = time.perf_counter()
        self._feed(pcm)
        self._metrics.stage_seconds.labels("resample").observe(resampled - started)
        self._metrics.stage_seconds.labels("gate").observe(time.perf_counter() - resampled)
        if self.settings.lossless:
            while self.backlog_seconds > self.settings.max_backlog_s and not self._worker.done():
                self._progress.clear()
                await self._progress.wait()

    def _feed(self, pcm: bytes) -> None:
        seconds = len(pcm) / BYTES_PER_SECOND
        self.stats.audio_seconds += seconds
        self._metrics.audio_seconds.inc(seconds)
        self._route(self._gate.push(pcm))

    def _route(self, events: list[GateEvent]) -> None:
        for event in events:
            if isinstance(event, SpeechStart):
                self._start_segment(event.t)
            elif isinstance(event, SpeechAudio):
                if self._segment is not None:
                    self._pending += event.pcm
                    if len(self._pending) >= self._chunk_bytes:
                        self._enqueue_pending()
            elif isinstance(event, SpeechEnd) and self._segment is not None:
                self._enqueue_pending()
                if self._segment is not None:  # unless that chunk made it shed
                    self._enqueue(_End(self._segment, event.t, time.monotonic()))
                self._segment = None

    def _start_segment(self, t: float) -> None:
        self._segments += 1
        self._segment = _Segment(f"{self.stream_id}-{self._segments}", t)

    def _enqueue_pending(self) -> None:
        if self._pending and self._segment is not None:
            self._enqueue(_Chunk(self._segment, bytes(self._pending), time.monotonic()))
        self._pending.clear()

    def _enqueue(self, item: _Chunk | _End) -> None:
        if isinstance(item, _Chunk):
            self._queued_bytes += len(item.pcm)
        self._queue.append(item)
        self._wake.set()
        if not self.settings.lossless and self.backlog_seconds > self.settings.max_backlog_s:
            self._shed()

    def _shed(self) -> None:
        """Throw away the oldest queued utterances until the backlog is within its bound."""
        limit = self.settings.max_backlog_s
        for segment in dict.fromkeys(item.segment for item in self._queue):
            if self.backlog_seconds <= limit:
                break
            self._shed_segment(segment)

    def _shed_segment(self, segment: _Segment, bound: str = "backlog") -> float:
        """Throw away an utterance's queued speech; the seconds shed.

        One the recognizer has not started is dropped whole; one it has started loses its
        queued audio and gets its final from what was decoded. Shedding the utterance
        being spoken drops the rest of it too.
        """
        started = segment.fed > 0 or segment is self._decoding
        shed = 0
        end: _End | None = None
        now = time.monotonic()
        speaking = segment is self._segment
        if speaking:
            self._segment = None
            shed += len(self._pending)
            self._pending.clear()
            end = _End(segment, self._gate.time, now)
        kept: deque[_Chunk | _End] = deque()
        at: int | None = None  # where the utterance stood in the queue
        for item in self._queue:
            if item.segment is not segment:
                kept.append(item)
                continue
            at = len(kept) if at is None else at
            if isinstance(item, _Chunk):
                shed += len(item.pcm)
                self._queued_bytes -= len(item.pcm)
            elif end is None:
                end = item
        if not shed:
            if speaking:
                self._segment = segment  # nothing queued to shed: it goes on
            return 0.0
        if started and end is not None:  # finish it, in its place before newer ones
            kept.insert(len(kept) if at is None else at, end)
        self._queue = kept
        return self._count_shed(shed, now, f"the {bound} bound")

    def _count_shed(self, size: int, now: float, why: str) -> float:
        """`size` bytes of speech were thrown away: counted, an episode, logged at most every
        10 s. Returns the seconds shed."""
        seconds = size / BYTES_PER_SECOND
        self.stats.shed_seconds += seconds
        self.stats.dropped_utterances += 1
        self._metrics.dropped_utterances.inc()
        self._metrics.shed_seconds.inc(seconds)
        self._degrade(now)
        if now - self._last_shed_log >= 10.0:
            self._last_shed_log = now
            log.warning("captions %s: %.1f s of speech shed to hold %s", self.stream_id, seconds,
                        why)  # fmt: skip
        return seconds

    def _degrade(self, now: float) -> None:
        """Something was dropped: a new episode unless one is under way."""
        if now >= self._episode_until:
            self.stats.episodes += 1
            self._metrics.episodes.inc()
        self._episode_until = now + EPISODE_QUIET_S

    # -- the lag bound (event loop, while the stream holds a thread) ----------------------

    def _hold_lag(self, now: float, waited: float) -> None:
        bound = self.settings.max_lag_s
        if bound <= 0 or not self._queue:
            return
        age = now - self._arrival(self._queue[0])
        if age > FAST_AT * bound and waited > CONTENDED_AT * bound:
            # load, not this stream's own slow start (a fresh recognizer is slower): its
            # job had to wait for a thread
            self._budget.strain(STRAIN_HOLD_S)
        if age > QUIET_AT * bound:
            self._lagging = True
        elif age < CALM_AT * bound:
            self._lagging = False
        while (late := self._late(now, bound)) is not None:
            segment, keep = late
            shed = self._shed_segment(segment, "lag") if keep is None else self._trim(segment, keep)
            self.stats.lag_shed_seconds += shed
            if not shed:
                break

    def _late(self, now: float, bound: float) -> tuple[_Segment, float | None] | None:
        """What to shed so that finals meet the bound, by the measured decode speed, final
        cost and wait for a thread (per further job), or None.

        An ended utterance whose final would come later than ``bound`` after its end is
        shed whole (the oldest queued before it first). The one being spoken keeps only the
        newest speech that leaves time for a thread wait and its final if it ended now
        (never less than CALM_AT of the bound, and at least one chunk: every stream keeps
        decoding, so its estimates stay current)."""
        rtf = self._budget.rtf if self._rtf is None else self._rtf
        # the bound counts from the utterance's end, the gate saw it end_silence_ms later
        after_end = bound * (1 - LAG_HEADROOM) - self.settings.gate.end_silence_ms / 1000
        queued = 0.0
        before_open = 0.0  # queued ahead of the utterance being spoken
        oldest: _Segment | None = None
        for item in self._queue:
            if isinstance(item, _Chunk):
                if item.segment is not self._segment:
                    before_open += len(item.pcm) / BYTES_PER_SECOND
                queued += len(item.pcm) / BYTES_PER_SECOND
                oldest = oldest or item.segment
            elif queued > 0:
                jobs = int(queued // self._job_s())  # jobs after this one
                done = now + rtf * queued + self._finish_s + self._wait * jobs
                if done > item.detected_at + after_end:
                    assert oldest is not None
                    return oldest, None
        if self._segment is None or queued <= before_open:
            return None
        room = max(after_end - self._wait - self._finish_s, CALM_AT * bound)
        if rtf * queued <= room:
            return None
        return self._segment, max(room / rtf - before_open, 0.0)

    def _trim(self, segment: _Segment, keep_s: float) -> float:
        """The utterance being spoken loses its oldest queued speech, all but the newest
        ``keep_s`` (at least one chunk), which starts a new utterance with what follows; if
        the recognizer had started it, it ends where it was (its final: what was decoded)."""
        mine = [item for item in self._queue if item.segment is segment]
        if not mine or not all(isinstance(item, _Chunk) for item in mine):
            return 0.0
        chunks = [item for item in mine if isinstance(item, _Chunk)]
        kept: list[_Chunk] = []
        size = 0
        for chunk in reversed(chunks):
            if kept and size + len(chunk.pcm) > keep_s * BYTES_PER_SECOND:
                break
            kept.append(chunk)
            size += len(chunk.pcm)
        dropped = chunks[: len(chunks) - len(kept)]
        if not dropped:
            return 0.0
        gone = {id(chunk) for chunk in dropped}
        queue = deque(item for item in self._queue if id(item) not in gone)
        shed = sum(len(chunk.pcm) for chunk in dropped)
        self._queued_bytes -= shed
        now = time.monotonic()
        origin = self._gate.time - (size + len(self._pending)) / BYTES_PER_SECOND
        if segment.fed > 0:  # finish it where decoding stood, before the kept speech
            queue.insert(len(queue) - len(kept), _End(segment, origin, now))
        self._start_segment(origin)
        assert self._segment is not None
        for chunk in kept:
            chunk.segment = self._segment
        self._queue = queue
        return self._count_shed(shed, now, "the lag bound")

    def _job_s(self) -> float:
        if self.settings.max_lag_s > 0 and self._budget.strained:
            return min(self.settings.max_job_s, STRAINED_JOB_S)
        return self.settings.max_job_s

    # -- decoding (worker task + budget threads) ------------------------------------------

    async def _work(self) -> None:
        try:  # the recognizer now, on a worker, while the speaker has not spoken yet
            await self._budget.run(self._prepare)
        except Exception:
            log.exception("captions %s: recognizer creation failed", self.stream_id)
        await self._jobs()
        # Released here, after the last job, by the task that ran them: never while a job
        # still decodes on it (a close() that was cancelled cannot race it). If this task is
        # cancelled mid-job the recognizer is left to the garbage collector instead.
        with contextlib.suppress(Exception):
            await self._budget.run(self._release)

    async def _jobs(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            deadline = self._arrival(self._queue[0])
            asked = time.monotonic()
            async with self._budget.slot(deadline):
                now = time.monotonic()
                self._wait += _EWMA * (now - asked - self._wait)
                self._hold_lag(now, now - asked)
                if self._queue:  # unless all of it was shed
                    segment, pcm, chunks, end = self._take()
                    model = segment.model = segment.model or self._pick_model()
                    self._decoding = segment
                    try:
                        await self._decode(segment, pcm, chunks, end, model)
                    except Exception:
                        log.exception(
                            "captions %s: recognition failed, utterance lost", self.stream_id
                        )
                    finally:
                        self._decoding = None
            self._progress.set()

    def _pick_model(self) -> SpeechModel:
        """A new utterance's model: the fast preset while the node is strained."""
        if self._fast is not None and self._budget.strained:
            fast = self._fast()
            if fast is not None:
                self.stats.fast_utterances += 1
                self._metrics.fast_utterances.inc()
                return fast
        return self.model

    @staticmethod
    def _arrival(item: _Chunk | _End) -> float:
        return item.at if isinstance(item, _Chunk) else item.detected_at

    def _take(self) -> tuple[_Segment, bytes, int, _End | None]:
        """What is queued for the head utterance, up to and including its end, at most
        ``max_job_s`` of audio."""
        head = self._queue.popleft()
        segment = head.segment
        parts: list[bytes] = []
        end = head if isinstance(head, _End) else None
        limit = self._job_s() * BYTES_PER_SECOND
        if isinstance(head, _Chunk):
            parts.append(head.pcm)
            size = len(head.pcm)
            while self._queue and self._queue[0].segment is segment and end is None:
                nxt = self._queue[0]
                if isinstance(nxt, _Chunk) and size + len(nxt.pcm) > limit:
                    break
                item = self._queue.popleft()
                if isinstance(item, _Chunk):
                    parts.append(item.pcm)
                    size += len(item.pcm)
                else:
                    end = item
        pcm = b"".join(parts)
        self._queued_bytes -= len(pcm)
        return segment, pcm, len(parts), end

    async def _decode(
        self, segment: _Segment, pcm: bytes, chunks: int, end: _End | None, model: SpeechModel
    ) -> None:
        partial, final, decoding, finishing = await self._budget.execute(
            lambda: self._recognize(pcm, end, model)
        )
        elapsed = decoding + finishing
        seconds = len(pcm) / BYTES_PER_SECOND
        if seconds >= 0.05:  # the decode speed; a final's cost is estimated on its own
            rtf = min(decoding / seconds, RTF_CEILING)
            self._budget.rtf += _EWMA * (rtf - self._budget.rtf)
            mine = self._budget.rtf if self._rtf is None else self._rtf
            self._rtf = mine + _EWMA * (rtf - mine)
        if end is not None:
            self._finish_s += _EWMA * (finishing - self._finish_s)
        segment.fed += seconds
        self.stats.recognize_seconds += elapsed
        self._metrics.stage_seconds.labels("recognize").observe(elapsed)
        self._metrics.recognized_seconds.inc(seconds)
        if seconds > 0:
            self._metrics.realtime_factor.observe(elapsed / seconds)
        skipped = 0
        if self.settings.partials and chunks > 1:
            # merged chunks: one decode instead of several, so their partials are skipped
            skipped = chunks - 1
        if end is not None and final is not None:
            self._dropped_partials(skipped)
            await self._emit_final(segment, final, end)
            return
        if not self.settings.partials:
            return
        if self._lagging:  # the stream is behind: its partials stop until it catches up
            self.stats.skipped_partials += 1
            self._dropped_partials(skipped + 1)
            if partial is not None:
                segment.last_partial = partial.text
            return
        self._dropped_partials(skipped)
        await self._emit_partial(segment, partial)

    def _dropped_partials(self, n: int) -> None:
        if n > 0:
            self.stats.dropped_partials += n
            self._metrics.dropped_partials.inc(n)
            self._degrade(time.monotonic())

    def _prepare(self) -> None:
        """Worker thread: take the recognizer (a warm idle one when the model has it)."""
        if self._recognizer is None:
            self._recognizer = self._recognizer_model.recognizer(self._phrases)

    def _recognize(
        self, pcm: bytes, end: _End | None, model: SpeechModel
    ) -> tuple[Hypothesis | None, Hypothesis | None, float, float]:
        """Worker thread: decode one job (with ``model``'s recognizer: switching presets
        happens between utterances, the old recognizer goes back to its model's pool);
        the partial, the final, the seconds decoding the audio took, and the final's."""
        if model is not self._recognizer_model:
            self._release()
            self._recognizer_model = model
        self._prepare()
        recognizer = self._recognizer
        assert recognizer is not None
        try:
            started = time.perf_counter()
            partial = recognizer.accept(pcm) if pcm else None
            accepted = time.perf_counter()
            final = recognizer.finish() if end is not None else None
        except Exception:
            # a fresh one for the next utterance; this one is dropped here, off the loop
            self._recognizer = None
            with contextlib.suppress(Exception):
                recognizer.close()
            raise
        return partial, final, accepted - started, time.perf_counter() - accepted

    async def _emit_partial(self, segment: _Segment, hyp: Hypothesis | None) -> None:
        now = time.monotonic()
        if hyp is not None:
            segment.last_partial = hyp.text
        elif (now - segment.last_partial_at) + (
            self.settings.chunk_ms + self.settings.partial_margin_ms
        ) / 1000 <= self.settings.partial_refresh_ms / 1000:
            return  # the next chunk still arrives in time for the cadence
        if not segment.last_partial:
            return
        segment.last_partial_at = now
        segment.sent_partial = True
        self.stats.partials += 1
        self._metrics.partials.inc()
        await self._send(
            CaptionEvent(
                segment.id,
                self.speaker,
                self.language,
                False,
                segment.last_partial,
                segment.origin,
                segment.origin + segment.fed,
            )
        )

    async def _emit_final(self, segment: _Segment, hyp: Hypothesis, end: _End) -> None:
        if not hyp.text and not segment.sent_partial:
            return  # noise or a cough: nothing was shown, nothing to retract
        words = tuple(
            Word(w.word, segment.origin + w.start, segment.origin + w.end, w.conf)
            for w in hyp.words
        )
        start = words[0].start if words else segment.origin
        stop = words[-1].end if words else max(end.speech_end, start)
        self.stats.finals += 1
        self._metrics.finals.inc()
        await self._send(
            CaptionEvent(
                segment.id,
                self.speaker,
                self.language,
                True,
                hyp.text,
                start,
                stop,
                words,
                hyp.confidence,
            )
        )
        self._metrics.stage_seconds.labels("finalize").observe(time.monotonic() - end.detected_at)

    async def _send(self, event: CaptionEvent) -> None:
        try:
            await self._on_event(event)
        except Exception:
            log.exception("captions %s: event handler failed", self.stream_id)

    # -- end of stream --------------------------------------------------------------------

    async def close(self) -> None:
        """Flush: the utterance in progress gets its final, then the recognizer is released."""
        if self._closed:
            return
        self._closing = True
        if not self._closed:
            tail = self._resampler.flush()
            if tail:
                self._feed(tail)
            self._route(self._gate.flush())
            self._wake.set()
            try:
                await asyncio.shield(self._worker)  # it releases the recognizer last
            finally:
                self._closed = True
                self._metrics.active_streams.dec()

    def _release(self) -> None:
        """Worker thread: the recognizer goes back to its model's idle pool or is freed."""
        recognizer, self._recognizer = self._recognizer, None
        if recognizer is not None:
            recognizer.close()

    async def __aenter__(self) -> CaptionStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
