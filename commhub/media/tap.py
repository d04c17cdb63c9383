"""Audio taps: every audio track published to the hub, handed to whoever wants it.

A consumer registers `callback(participant, track)`; for each published audio track it
gets its own `TapTrack`, a MediaStreamTrack of decoded `av.AudioFrame`s (s16, 48 kHz,
20 ms) that ends when the publication ends. One drain task per publication reads the
decoded track once and fans frames out; each tap queue is bounded and drops its oldest
frame when a consumer falls behind, so a slow consumer never holds up the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.audio.frame import AudioFrame

from commhub.rooms import Participant

log = logging.getLogger("commhub.media.tap")

AudioTapCallback = Callable[[Participant, "TapTrack"], Awaitable[None] | None]
TAP_QUEUE_FRAMES = 250  # 5 s of 20 ms frames


class TapTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, participant: Participant, track_id: str, source: str) -> None:
        super().__init__()
        self.participant = participant
        self.track_id = track_id
        self.source = source
        self._queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue(TAP_QUEUE_FRAMES)
        self.dropped = 0

    def push(self, frame: AudioFrame | None) -> None:
        if self._queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self.dropped += 1
        self._queue.put_nowait(frame)

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self._queue.get()
        if frame is None:
            super().stop()
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(None)


class AudioTaps:
    """The registry of consumers and the drain task of each published audio track."""

    def __init__(self) -> None:
        self._callbacks: list[AudioTapCallback] = []
        self._drains: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def active(self) -> bool:
        return bool(self._callbacks)

    def on_audio_track(self, callback: AudioTapCallback) -> Callable[[], None]:
        """Register a consumer for every audio track published from now on; returns `remove`."""
        self._callbacks.append(callback)
        return lambda: self._callbacks.remove(callback) if callback in self._callbacks else None

    def attach(
        self, key: str, participant: Participant, track: MediaStreamTrack, source: str
    ) -> None:
        """Start draining a decoded published track (`key` names the publication)."""
        taps = [TapTrack(participant, track.id, source) for _ in self._callbacks]
        for cb, tap in zip(list(self._callbacks), taps, strict=True):
            try:
                result = cb(participant, tap)
            except Exception:
                log.exception("audio tap consumer failed")
                continue
            if asyncio.iscoroutine(result):
                task = asyncio.ensure_future(result)
                self._tasks.add(task)
                task.add_done_callback(self._consumer_done)
        self._drains[key] = asyncio.create_task(
            self._drain(track, taps), name=f"commhub-audio-drain-{key}"
        )

    def _consumer_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception():
            log.error("audio tap consumer raised", exc_info=task.exception())

    async def _drain(self, track: MediaStreamTrack, taps: list[TapTrack]) -> None:
        try:
            while True:
                frame = await track.recv()
                for tap in taps:
                    if tap.readyState == "live":
                        tap.push(frame)  # type: ignore[arg-type]
        except MediaStreamError:
            pass
        finally:
            for tap in taps:
                tap.push(None)

    async def detach(self, key: str) -> None:
        task = self._drains.pop(key, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def close(self) -> None:
        for key in list(self._drains):
            await self.detach(key)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
