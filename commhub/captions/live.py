"""Live captions: every published audio track becomes caption events in its room.

Plugs into the media layer's audio taps and knows nothing of WebRTC beyond a track of
audio frames. One CaptionStream (one recognizer) per published track; the models are
loaded once per process and shared. Finals are translated once per read language present
in the room (the outbox's publish_text); partials go out in the original. Nothing on the
recognizer's path waits for a translation: readers of the speaker's language get each
caption at once, the others get them in order from the stream's own lane (commhub.lanes).
It is given its ports (settings, rooms, audio source, outbox, metrics registry), not the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import Protocol

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from prometheus_client import CollectorRegistry

from commhub import protocol
from commhub.captions.budget import RecognitionBudget, available_cpus
from commhub.captions.events import CaptionEvent
from commhub.captions.gate import GateSettings
from commhub.captions.metrics import CaptionMetrics
from commhub.captions.stream import CaptionStream, StreamSettings
from commhub.config import Settings
from commhub.moderation.text import TextModeration
from commhub.protocol import CaptionUnavailableReason, Message
from commhub.rooms import Participant, Room, Rooms
from commhub.speech import ModelNotFound, SpeechModel, SpeechModels
from commhub.speech.warmup import Warmable, Warmer, warmup_audio

log = logging.getLogger("commhub.captions")

# Default stream limit per core (caption_max_streams = 0). Measured on two cores: eight
# open-vocabulary streams decode at about 0.1 core each once warm.
STREAMS_PER_CORE = 4
# The fast preset's model keeps this fraction of caption_warm_recognizers warm, and no more
# live: it serves only new utterances of a strained node (each is ~110 MiB, 6-8 CPU-s).
FAST_SPARES_DIVISOR = 4


class AudioSource(Protocol):
    """Published audio tracks (commhub.media.Media's audio taps)."""

    def on_audio_track(
        self, callback: Callable[[Participant, MediaStreamTrack], Awaitable[None]]
    ) -> Callable[[], None]: ...


class CaptionOutbox(Protocol):
    """Where captions go (the hub: publish_text translates per read language)."""

    async def publish(self, room: str, msg: Message) -> None: ...

    async def publish_text(
        self,
        room: Room,
        msg: Message,
        text: str | None,
        source: str,
        *,
        lane: str,
        to: Collection[str] | None = None,
        droppable: bool = False,
    ) -> None: ...


class LiveCaptions:
    def __init__(
        self,
        settings: Settings,
        models: SpeechModels,
        *,
        rooms: Rooms,
        audio: AudioSource,
        outbox: CaptionOutbox,
        registry: CollectorRegistry,
    ) -> None:
        s = self.config = settings
        self.models = models
        self.rooms = rooms  # the room registry: who may receive a speaker's captions
        self.audio = audio
        self.outbox = outbox
        self.budget = RecognitionBudget(s.caption_budget or None)
        self.metrics = CaptionMetrics(registry)
        self.settings = StreamSettings(
            gate=GateSettings(end_silence_ms=s.caption_end_silence_ms),
            max_backlog_s=s.caption_max_backlog,
            max_lag_s=s.caption_max_lag,
        )
        self.active: dict[str, CaptionStream] = {}  # track id -> stream
        self._working: set[CaptionStream] = set()  # until their worker is done (close waits)
        self.streams = 0  # slots taken: streams open or opening (the limit counts these)
        self._anchors: dict[CaptionStream, list[float]] = {}  # filled on the first frame
        self._told: dict[CaptionStream, int] = {}  # degradation episodes the room was told of
        self._previous: dict[str, list[str]] = {}  # segment -> words of its last partial
        self._remove: Callable[[], None] | None = None
        self._preload: asyncio.Task[None] | None = None
        self._lane_ids = itertools.count()
        self._fast: dict[str, SpeechModel | None] = {}  # language -> fast preset (None: none)
        self._fast_loading: dict[str, asyncio.Task[None]] = {}
        self._warmers: dict[object, Warmer | None] = {}  # model -> None while its speech is read
        self._background: set[asyncio.Task[None]] = set()
        self.metrics.warm_up_cpu.set_function(
            lambda: sum(w.cpu_seconds for w in self._warmers.values() if w is not None)
        )
        self.moderation: TextModeration | None = None  # set by the app: the text filters

    @property
    def max_streams(self) -> int:
        return self.config.caption_max_streams or STREAMS_PER_CORE * available_cpus()

    def start(self) -> None:
        self._remove = self.audio.on_audio_track(self.run)
        self._preload = asyncio.create_task(self.preload(), name="commhub-model-preload")

    async def preload(self) -> None:
        """Load the configured languages' models in the background, so a speaker's first
        words are not queued behind a model load; say at start-up what is missing."""
        presets = ["default"]
        c = self.config
        if c.caption_decoder != "default" or c.caption_fast_from or c.caption_fast_preload:
            # loaded now, not when the load comes (a second model load then is seconds of CPU)
            presets = [self.config.caption_decoder, "fast"]
        for language in self.config.caption_preload:
            try:
                for preset in dict.fromkeys(presets):
                    model = await self.models.load(language, preset)
                    self._keep_warm(model)
                    if getattr(model, "preset", None) == "fast":
                        self._fast[language] = model  # auto-fast streams need no load
                log.info("captions for %s: %s model ready", language, model.engine)
            except ModelNotFound as exc:
                log.warning("captions for %s unavailable: %s", language, exc)

    async def close(self) -> None:
        if self._remove:
            self._remove()
        if self._preload is not None:
            self._preload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._preload
        # every stream whose worker still runs (a track's own close may have been cancelled)
        # gets its last finals before the threads go; the threads are joined off the loop
        for task in [*self._fast_loading.values(), *self._background]:
            task.cancel()
        warmers = [w for w in self._warmers.values() if w is not None]
        await asyncio.gather(*(asyncio.to_thread(w.stop) for w in warmers))
        streams = list(self._working)
        await asyncio.gather(*(stream.close() for stream in streams), return_exceptions=True)
        await asyncio.gather(
            *(asyncio.shield(stream.finished) for stream in streams), return_exceptions=True
        )
        await asyncio.to_thread(self.budget.shutdown)

    async def run(self, p: Participant, track: MediaStreamTrack) -> None:
        """Caption one published track until it ends; follows the speaker's language."""
        room = next((r for r in self.rooms if r.participants.get(p.id) is p), None)
        if room is None:
            return
        # The room is held by name: a speaker who just left still gets its last final.
        room_name = room.name
        try:
            while track.readyState == "live":
                language = p.speak
                if self.streams >= self.max_streams:
                    await self._wait_for_slot(p, room_name, track, language)
                    continue
                self.streams += 1  # taken before any await: the limit holds under a rush
                try:
                    stream = await self._open(p, room_name, language)
                    if stream is None:
                        track.stop()  # nothing to do with this audio
                        return
                    self.active[track.id] = stream
                    try:
                        await self._pump(p, room_name, track, stream, language)
                    finally:
                        try:
                            await stream.close()  # the last utterance still gets its final
                            await self._tell(p, room_name, stream)  # shed at the very end
                            self._summary(p, stream)
                        finally:
                            self._told.pop(stream, None)
                            if self.active.get(track.id) is stream:
                                del self.active[track.id]
                finally:
                    self.streams -= 1
        except MediaStreamError:
            pass

    @staticmethod
    def _summary(p: Participant, stream: CaptionStream) -> None:
        """A degraded stream's account, when it ends (operators and the benchmark read it)."""
        stats = stream.stats
        if stats.episodes:
            log.warning(
                "captions for %s ended degraded: %.1f s of speech shed (%.1f s for the lag "
                "bound), %d utterances cut, %d partials dropped, %d utterances on the fast "
                "preset, %d episodes",
                p.identity,
                stats.shed_seconds,
                stats.lag_shed_seconds,
                stats.dropped_utterances,
                stats.dropped_partials,
                stats.fast_utterances,
                stats.episodes,
            )

    async def _wait_for_slot(
        self, p: Participant, room_name: str, track: MediaStreamTrack, language: str
    ) -> None:
        """Over the stream limit: say so once, then drop this speaker's audio until a
        stream ends (or the speaker changes language): the others are not slowed."""
        limit = self.max_streams
        self.metrics.refused.inc()
        log.warning("captions for %s refused: %d streams open (the limit)", p.identity, limit)
        notice = protocol.caption_unavailable(
            p.id,
            language,
            CaptionUnavailableReason.BUSY,
            f"this hub captions at most {limit} speakers at once; captions for this speaker "
            "start when another speaker's stream ends",
        )
        await self.outbox.publish(room_name, notice)
        while self.streams >= self.max_streams and p.speak == language:
            await track.recv()  # raises MediaStreamError when the track ends

    async def _open(self, p: Participant, room_name: str, language: str) -> CaptionStream | None:
        fast_from = self.config.caption_fast_from
        # degrade by design: past the threshold, accuracy is traded for CPU first
        preset = "fast" if fast_from and self.streams >= fast_from else self.config.caption_decoder
        try:
            model = await self.models.load(language, preset)
        except ModelNotFound as exc:
            log.warning("no captions for %s: %s", p.identity, exc)
            notice = protocol.caption_unavailable(
                p.id, language, CaptionUnavailableReason.NO_MODEL, str(exc)
            )
            await self.outbox.publish(room_name, notice)
            return None
        self._keep_warm(model)
        lane = f"caption/{p.id}/{next(self._lane_ids)}"
        anchor: list[float] = []  # Unix time of the stream's first audio (its time zero)

        async def emit(event: CaptionEvent) -> None:
            await self._publish(p, room_name, event, lane, anchor[0] if anchor else time.time())

        phrases = self.config.caption_phrases.get(language)
        fast = None
        if self.config.caption_fast_auto and self.config.caption_max_lag and preset != "fast":
            fast = self._fast_provider(language)
        stream = CaptionStream(
            model,
            emit,
            speaker=p.id,
            phrases=phrases,
            settings=self.settings,
            budget=self.budget,
            metrics=self.metrics,
            fast=fast,
        )
        self._anchors[stream] = anchor
        self._working.add(stream)
        stream.finished.add_done_callback(lambda _: self._working.discard(stream))
        return stream

    def _fast_provider(self, language: str) -> Callable[[], SpeechModel | None]:
        """The fast preset of ``language`` for streams, once loaded: asked for the first time
        (the node strained) it starts loading off the loop and streams go on with their
        default model meanwhile."""

        def fast() -> SpeechModel | None:
            if language in self._fast:
                model = self._fast[language]
                if isinstance(model, Warmable) and self._warmers.get(model) and not model.idle:
                    return None  # a cold fast recognizer costs more than the warm default
                return model
            if language not in self._fast_loading:
                self._fast_loading[language] = asyncio.create_task(
                    self._load_fast(language), name=f"commhub-fast-model-{language}"
                )
            return None

        return fast

    async def _load_fast(self, language: str) -> None:
        try:
            model = await self.models.load(language, "fast")
        except ModelNotFound:
            model = None
        if model is not None:
            self._keep_warm(model)
        # an engine without presets gives its one model: nothing faster to switch to
        self._fast[language] = model if getattr(model, "preset", None) == "fast" else None
        log.info("captions for %s: fast decoder preset %s", language,
                 "ready" if self._fast[language] else "unavailable")  # fmt: skip

    def _keep_warm(self, model: SpeechModel) -> None:
        """Keep warm spares of ``model`` from now on (once per model; an engine whose
        recognizers need no warm-up has none)."""
        spares = self.config.caption_warm_recognizers
        if spares <= 0 or not isinstance(model, Warmable) or model in self._warmers:
            return
        cap = max(spares, self.max_streams)
        if getattr(model, "preset", None) == "fast":  # only for streams past capacity
            spares = cap = max(1, spares // FAST_SPARES_DIVISOR)
        self._warmers[model] = None
        task = asyncio.create_task(self._start_warmer(model, spares, cap), name="commhub-warm-up")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _start_warmer(self, model: Warmable, spares: int, cap: int) -> None:
        folder = self.config.data_dir / "warmup"
        pcm = await asyncio.to_thread(warmup_audio, model.language, folder)
        if pcm is None:
            return
        warmer = Warmer(model, pcm, spares, cap)
        self._warmers[model] = warmer
        preset = str(getattr(model, "preset", "default"))
        self.metrics.warm_recognizers.labels(model.language, preset).set_function(
            lambda: model.idle
        )
        warmer.start()
        log.info("captions for %s: keeping %d warm recognizers (%s preset, %.0f s of speech "
                 "each)", model.language, spares, preset, len(pcm) / 32000)  # fmt: skip

    async def _pump(
        self,
        p: Participant,
        room_name: str,
        track: MediaStreamTrack,
        stream: CaptionStream,
        language: str,
    ) -> None:
        anchor = self._anchors.pop(stream, [])
        while p.speak == language:
            frame = await track.recv()  # raises MediaStreamError when the track ends
            if not anchor:
                # the stream counts time from its first frame (a frame is 20 ms of audio)
                rate = getattr(frame, "sample_rate", 0) or 48000
                anchor.append(time.time() - getattr(frame, "samples", 0) / rate)
            await stream.push(frame)  # type: ignore[arg-type]
            if stream.stats.episodes != self._told.get(stream, 0):
                await self._tell(p, room_name, stream)

    async def _tell(self, p: Participant, room_name: str, stream: CaptionStream) -> None:
        """The room hears of each degradation episode once, with what was dropped so far."""
        stats = stream.stats
        if stats.episodes == self._told.get(stream, 0):
            return
        self._told[stream] = stats.episodes
        notice = protocol.caption_degraded(
            p.id,
            stats.dropped_partials,
            stats.dropped_utterances,
            shed_seconds=round(stats.shed_seconds, 2),
        )
        await self.outbox.publish(room_name, notice)

    def _stable_prefix(self, event: CaptionEvent) -> str:
        """The words two successive partials of a segment agree on (when partials are
        translated at all): translating them does not flicker as the recognizer revises."""
        if not self.config.translate_partials:
            return ""
        words = event.text.split()
        previous = self._previous.get(event.segment_id, [])
        self._previous[event.segment_id] = words
        stable = []
        for a, b in zip(previous, words, strict=False):
            if a != b:
                break
            stable.append(a)
        return " ".join(stable)

    async def _publish(
        self, p: Participant, room_name: str, event: CaptionEvent, lane: str, anchor: float
    ) -> None:
        room = self.rooms.get(room_name)
        if room is None:
            return
        # What was said is media: only for those allowed to receive it.
        listeners = {q.id for q in room.participants.values() if q.can("subscribe")}
        if not listeners:
            if event.final:
                self._previous.pop(event.segment_id, None)
            return
        words = None
        if event.final:
            self._previous.pop(event.segment_id, None)
            if not event.text:
                return  # an utterance with no words has no caption
            words = [
                {
                    "word": w.word,
                    "start": round(w.start, 3),
                    "end": round(w.end, 3),
                    "conf": round(w.conf, 3),
                }
                for w in event.words
            ]
        msg = protocol.caption(
            segment=event.segment_id,
            speaker=p.id,
            lang=event.language,
            final=event.final,
            text=event.text,
            start=event.start,
            end=event.end,
            track_start=anchor,
            words=words,
            confidence=event.confidence if event.final else None,
        )
        if event.final:
            text: str | None = event.text or None
        else:  # translate_partials: only words the recognizer no longer revises
            text = self._stable_prefix(event) or None
        if self.moderation is not None:  # partials too: no word may flash by
            screened = await self.moderation.caption(room_name, p, msg, text)
            if screened is None:
                return
            msg, text = screened
        await self.outbox.publish_text(
            room, msg, text, event.language, lane=lane, to=listeners, droppable=not event.final
        )
