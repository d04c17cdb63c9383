"""Sampling a relayed VP8 track without decoding it: grab one key frame, decode only that.

The relay forwards encoded frames and never decodes video. To look at a picture every few
seconds the sampler asks the publisher for a key frame (PLI), keeps the next one that
arrives (a VP8 key frame decodes on its own, RFC 6386) and decodes it with a fresh PyAV
decoder on a worker thread. Between samples nothing is decoded at all.
"""

from __future__ import annotations

import av
import numpy as np
from av.packet import Packet

from commhub.media.forward import Publication, is_vp8_keyframe

MAX_KEYFRAME_BYTES = 2 * 1024 * 1024  # larger is not a camera picture worth decoding


class KeyframeGrab:
    """A publication observer: once `arm()`ed, keeps the next key frame in `frame`."""

    def __init__(self) -> None:
        self.armed = False
        self.frame: bytes | None = None
        self.armed_at = 0.0

    def arm(self, now: float) -> None:
        self.armed, self.frame, self.armed_at = True, None, now

    def __call__(self, pub: Publication, data: bytes) -> None:
        # Runs on the event loop for every frame: one byte test, no copy unless kept.
        if self.armed and is_vp8_keyframe(data) and len(data) <= MAX_KEYFRAME_BYTES:
            self.armed = False
            self.frame = data


class UndecodableFrame(ValueError):
    """The bytes are not a VP8 key frame the decoder can turn into a picture."""


def decode_keyframe(data: bytes) -> np.ndarray:
    """A VP8 key frame to a BGR picture (blocking: call it on a worker thread)."""
    codec = av.CodecContext.create("vp8", "r")
    try:
        frames = codec.decode(Packet(data))
        frames += codec.decode(None)  # flush: a lone frame may wait in the decoder
    except av.FFmpegError as exc:
        raise UndecodableFrame(str(exc)) from None
    if not frames:
        raise UndecodableFrame("the decoder gave no picture")
    picture: np.ndarray = frames[0].to_ndarray(format="bgr24")
    return picture
