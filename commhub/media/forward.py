"""Relay without re-encoding: the publisher's encoded frames are fanned out as av.Packets.

aiortc's RTCRtpSender encodes every `av.Frame` it is given (one encoder per sender, so a
MediaRelay costs one encode per subscriber) but only packetizes an `av.Packet`. The hub
therefore copies each complete encoded frame out of the receiver's decoder queue (a
`TeeQueue` put in place of aiortc's) and hands it to every subscriber's `ForwardTrack`.
Video is never decoded on the hub; audio is decoded once, for the audio taps only.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import MediaStreamTrack, RTCRtpReceiver
from aiortc.mediastreams import MediaStreamError
from av.packet import Packet

from commhub.rtc import compat

log = logging.getLogger("commhub.media.forward")

AUDIO_CLOCK = 48000
VIDEO_CLOCK = 90000
_QUEUE_LIMIT = {"audio": 50, "video": 60}  # ~1 s of audio, ~2 s of video


def is_vp8_keyframe(data: bytes) -> bool:
    # RFC 6386 9.1: bit 0 of the frame tag is 0 for key frames.
    return bool(data) and not data[0] & 0x01


class TeeQueue(queue.Queue[Any]):
    """Stands in for RTCRtpReceiver's decoder queue: copies frames out, decodes on demand.

    aiortc puts `(codec, JitterFrame)` here on the event loop thread; `None` stops the
    decoder thread and must always pass.
    """

    def __init__(self, on_frame: Callable[[str, bytes, int], bool], decode: bool) -> None:
        super().__init__()
        self.on_frame = on_frame
        self.decode = decode

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is None:
            super().put(None)
            return
        codec, frame = item
        # on_frame says whether the frame goes on: a suppressed track feeds no tap either
        if self.on_frame(codec.mimeType.lower(), bytes(frame.data), int(frame.timestamp)) and (
            self.decode
        ):
            super().put(item, block, timeout)


def tee_receiver(
    receiver: RTCRtpReceiver,
    on_frame: Callable[[str, bytes, int], bool],
    decode: bool,
    audio_prefetch: int | None = None,
    loss_patience: int = 0,
) -> None:
    """Swap the receiver's decoder queue (before it starts: aiortc hands it to the thread then).

    aiortc holds 4 audio packets (80 ms) before releasing the first, and after a lost packet
    14 (280 ms) for good; every relayed packet and every caption waits that long. With
    `audio_prefetch` the audio buffer holds that many instead, and with `loss_patience` it
    gives up on a lost packet after that many later ones.
    """
    compat.replace_decoder_queue(receiver, TeeQueue(on_frame, decode))
    if audio_prefetch is not None and compat.receiver_kind(receiver) == "audio":
        compat.set_jitter_buffer(
            receiver, capacity=16, prefetch=audio_prefetch, patience=loss_patience
        )


class ForwardTrack(MediaStreamTrack):
    """One subscriber's outgoing track: encoded packets from whichever publication feeds it.

    It never ends while the subscriber's transceiver lives, so the slot can be reused for
    another publication; timestamps are rebased so the subscriber sees one steady clock.
    """

    def __init__(self, kind: str, on_keyframe_needed: Callable[[], None] | None = None) -> None:
        super().__init__()
        self.kind = kind
        self.clock = AUDIO_CLOCK if kind == "audio" else VIDEO_CLOCK
        self.time_base = fractions.Fraction(1, self.clock)
        self._queue: deque[tuple[bytes, int]] = deque()
        self._wakeup = asyncio.Event()
        self.need_keyframe = kind == "video"
        self.on_keyframe_needed = on_keyframe_needed
        self._offset: int | None = None
        self._last_out = 0
        self.forwarded = 0
        self.dropped = 0

    def feed(self, data: bytes, ts: int) -> None:
        if self.readyState != "live":
            return
        if self.kind == "video" and self.need_keyframe:
            if not is_vp8_keyframe(data):
                self.dropped += 1
                return
            self.need_keyframe = False
        if len(self._queue) >= _QUEUE_LIMIT[self.kind]:
            # The subscriber's sender cannot keep up: drop, and for video restart
            # from a key frame so the decoder never sees a hole.
            self._queue.clear()
            self.dropped += 1
            if self.kind == "video":
                self.need_keyframe = True
                if self.on_keyframe_needed:
                    self.on_keyframe_needed()
                return
        if self._offset is None:
            self._offset = self._last_out + self.clock // 50 - ts
        self._queue.append((data, ts + self._offset))
        self._wakeup.set()

    def restart(self) -> None:
        """Forget what is queued; video resumes at the next key frame (after a suppression,
        so that the subscriber's decoder never sees a frame whose references it missed)."""
        self._queue.clear()
        self.need_keyframe = self.kind == "video"

    def switch_source(self, on_keyframe_needed: Callable[[], None] | None) -> None:
        """A new publication feeds this slot: rebase its clock, wait for its key frame."""
        self._queue.clear()
        self._offset = None
        self.need_keyframe = self.kind == "video"
        self.on_keyframe_needed = on_keyframe_needed

    async def recv(self) -> Packet[Any]:
        while not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._wakeup.clear()
            await self._wakeup.wait()
        if self.readyState != "live":
            raise MediaStreamError
        data, pts = self._queue.popleft()
        self._last_out = pts
        packet = Packet(data)
        packet.pts = pts
        packet.time_base = self.time_base
        self.forwarded += 1
        return packet

    def stop(self) -> None:
        super().stop()
        self._wakeup.set()


class Publication:
    """One track a participant publishes to the hub, and the slots it feeds."""

    def __init__(
        self, owner_id: str, track_id: str, kind: str, receiver: RTCRtpReceiver, mid: str
    ) -> None:
        self.owner_id = owner_id
        self.track_id = track_id
        self.key = f"{owner_id}/{track_id}"  # unique name for the audio taps
        self.kind = kind
        self.receiver = receiver
        self.mid = mid
        self.source = "microphone" if kind == "audio" else "camera"
        self.muted = False  # as the publisher says (`track {muted}`)
        # Why the hub holds this track back (Media.suppress): while any, nothing is
        # forwarded or tapped, and everyone is told the track is muted.
        self.suppressed: set[str] = set()
        # Called with every encoded frame, forwarded or not (imagery samples through this);
        # an observer must be cheap: it runs on the event loop for every frame.
        self.observers: list[Callable[[Publication, bytes], None]] = []
        self.ended = False
        self.subscribers: set[ForwardTrack] = set()
        self.frames = 0
        self.last_frame = time.monotonic()
        self.started = time.monotonic()
        self._last_pli = 0.0
        self._pli_tasks: set[asyncio.Task[None]] = set()

    def on_frame(self, mime: str, data: bytes, ts: int) -> bool:
        """One complete encoded frame; returns whether it went on (not suppressed)."""
        self.frames += 1
        self.last_frame = time.monotonic()
        for observe in self.observers:
            try:
                observe(self, data)
            except Exception:  # an observer's fault must never stop the relay
                log.exception("frame observer of %s failed", self.key)
        if self.suppressed:
            return False
        if self.muted:
            return True
        for sub in self.subscribers:
            sub.feed(data, ts)
        return True

    def suppress(self, reason: str) -> bool:
        """Hold the track back for `reason`; True when that stopped it (it was flowing)."""
        was = bool(self.suppressed)
        self.suppressed.add(reason)
        if not was:
            for sub in self.subscribers:
                sub.restart()  # what is queued is not sent either
        return not was

    def release(self, reason: str | None = None) -> bool:
        """Lift `reason` (None: every reason); True when the track flows again."""
        if not self.suppressed:
            return False
        if reason is None:
            self.suppressed.clear()
        else:
            self.suppressed.discard(reason)
        if self.suppressed:
            return False
        for sub in self.subscribers:
            sub.restart()
        self._last_pli = 0.0
        self.request_keyframe()
        return True

    def request_keyframe(self) -> None:
        """Ask the publisher for a key frame (PLI), at most every 0.5 s."""
        now = time.monotonic()
        if self.kind != "video" or now - self._last_pli < 0.5:
            return
        self._last_pli = now
        task = asyncio.create_task(self._send_pli(), name="commhub-pli")
        self._pli_tasks.add(task)
        task.add_done_callback(self._pli_tasks.discard)

    async def _send_pli(self) -> None:
        sources = self.receiver.getSynchronizationSources()
        for src in sources:
            try:
                await compat.send_pli(self.receiver, src.source)
            except ConnectionError:
                return
        if not sources:  # nothing received yet: ask again once the first packets land
            self._last_pli = 0.0

    def wire(self) -> dict[str, Any]:
        muted = self.muted or bool(self.suppressed)
        return {"id": self.track_id, "kind": self.kind, "source": self.source, "muted": muted}

    def close(self) -> None:
        self.ended = True
        self.observers.clear()
        for t in self._pli_tasks:
            t.cancel()
        self.subscribers.clear()
