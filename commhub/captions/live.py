"""Live captions: every published audio track becomes caption events in its room.

Plugs into the media layer's audio taps and knows nothing of WebRTC beyond a track of
audio frames. One CaptionStream (one recognizer) per published track; the models are
loaded once per process and shared. Finals are translated once per read language present
in the room (Hub.publish_text); partials go out in the original.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from commhub.captions.budget import RecognitionBudget
from commhub.captions.events import CaptionEvent
from commhub.captions.gate import GateSettings
from commhub.captions.metrics import CaptionMetrics
from commhub.captions.stream import CaptionStream, StreamSettings
from commhub.hub import Hub
from commhub.rooms import Participant
from commhub.speech import ModelNotFound, SpeechModels

log = logging.getLogger("commhub.captions")

DEGRADED_NOTICE_EVERY = 10.0  # seconds between caption_degraded notices per speaker


class LiveCaptions:
    def __init__(self, hub: Hub, models: SpeechModels) -> None:
        s = hub.settings
        self.hub = hub
        self.models = models
        self.budget = RecognitionBudget(s.caption_budget or None)
        self.metrics = CaptionMetrics(hub.registry)
        self.settings = StreamSettings(
            gate=GateSettings(end_silence_ms=s.caption_end_silence_ms),
            max_backlog_s=s.caption_max_backlog,
        )
        self.active: dict[str, CaptionStream] = {}  # track id -> stream
        self._previous: dict[str, list[str]] = {}  # segment -> words of its last partial
        self._remove: Callable[[], None] | None = None
        self._preload: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._remove = self.hub.media.on_audio_track(self.run)
        self._preload = asyncio.create_task(self.preload(), name="commhub-model-preload")

    async def preload(self) -> None:
        """Load the configured languages' models in the background, so a speaker's first
        words are not queued behind a model load; say at start-up what is missing."""
        for language in self.hub.settings.caption_preload:
            try:
                model = await self.models.load(language)
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
        for stream in list(self.active.values()):
            await stream.close()
        self.budget.shutdown()

    async def run(self, p: Participant, track: MediaStreamTrack) -> None:
        """Caption one published track until it ends; follows the speaker's language."""
        room = self.hub.room_of(p)
        if room is None:
            return
        # The room is held by name: a speaker who just left still gets its last final.
        room_name = room.name
        try:
            while track.readyState == "live":
                language = p.speak
                stream = await self._open(p, room_name, language)
                if stream is None:
                    track.stop()  # nothing to do with this audio
                    return
                self.active[track.id] = stream
                try:
                    await self._pump(p, room_name, track, stream, language)
                finally:
                    self.active.pop(track.id, None)
                    await stream.close()  # the last utterance still gets its final
        except MediaStreamError:
            pass

    async def _open(self, p: Participant, room_name: str, language: str) -> CaptionStream | None:
        try:
            model = await self.models.load(language)
        except ModelNotFound as exc:
            log.warning("no captions for %s: %s", p.identity, exc)
            notice = {
                "type": "caption_unavailable",
                "participant": p.id,
                "lang": language,
                "reason": "no_model",
                "message": str(exc),
            }
            await self.hub.publish(room_name, notice)
            return None

        async def emit(event: CaptionEvent) -> None:
            await self._publish(p, room_name, event)

        phrases = self.hub.settings.caption_phrases.get(language)
        return CaptionStream(
            model,
            emit,
            speaker=p.id,
            phrases=phrases,
            settings=self.settings,
            budget=self.budget,
            metrics=self.metrics,
        )

    async def _pump(
        self,
        p: Participant,
        room_name: str,
        track: MediaStreamTrack,
        stream: CaptionStream,
        language: str,
    ) -> None:
        noticed = (0, 0)
        last_notice = 0.0
        while p.speak == language:
            frame = await track.recv()  # raises MediaStreamError when the track ends
            await stream.push(frame)  # type: ignore[arg-type]
            seen = (stream.stats.dropped_partials, stream.stats.dropped_utterances)
            if seen != noticed and time.monotonic() - last_notice >= DEGRADED_NOTICE_EVERY:
                noticed, last_notice = seen, time.monotonic()
                notice = {
                    "type": "caption_degraded",
                    "participant": p.id,
                    "dropped_partials": seen[0],
                    "dropped_utterances": seen[1],
                }
                await self.hub.publish(room_name, notice)

    def _stable_prefix(self, event: CaptionEvent) -> str:
        """The words two successive partials of a segment agree on (when partials are
        translated at all): translating them does not flicker as the recognizer revises."""
        if not self.hub.settings.translate_partials:
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

    async def _publish(self, p: Participant, room_name: str, event: CaptionEvent) -> None:
        room = self.hub.rooms.get(room_name)
        if room is None:
            return
        # What was said is media: only for those allowed to receive it.
        listeners = {q.id for q in room.participants.values() if q.can("subscribe")}
        if not listeners:
            if event.final:
                self._previous.pop(event.segment_id, None)
            return
        msg: dict[str, Any] = {
            "type": "caption",
            "segment": event.segment_id,
            "speaker": p.id,
            "lang": event.language,
            "final": event.final,
            "text": event.text,
            "start": round(event.start, 3),
            "end": round(event.end, 3),
        }
        if not event.final:
            stable = self._stable_prefix(event)
            if stable:  # translate_partials: only words the recognizer no longer revises
                await self.hub.publish_text(room, msg, stable, event.language, to=listeners)
            else:
                await self.hub.publish(room.name, msg, to=listeners)
            return
        self._previous.pop(event.segment_id, None)
        msg["words"] = [
            {
                "word": w.word,
                "start": round(w.start, 3),
                "end": round(w.end, 3),
                "conf": round(w.conf, 3),
            }
            for w in event.words
        ]
        if event.confidence is not None:
            msg["confidence"] = round(event.confidence, 3)
        if event.text:
            await self.hub.publish_text(room, msg, event.text, event.language, to=listeners)
