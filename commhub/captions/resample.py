"""Any PyAV audio frame -> s16le mono 16 kHz bytes, the recognizers' input."""

from __future__ import annotations

import av

TARGET_RATE = 16000


class Resampler:
    """Stateful (keeps the filter's tail between frames); one per stream.

    WebRTC hands us s16 stereo 48 kHz in 20 ms frames; files give anything. If the
    input format changes mid-stream (a renegotiated track), the resampler is rebuilt.
    """

    def __init__(self) -> None:
        self._resampler: av.AudioResampler | None = None
        self._input: tuple[str, str, int] | None = None

    def __call__(self, frame: av.AudioFrame) -> bytes:
        shape = (frame.format.name, frame.layout.name, frame.sample_rate)
        out = b""
        if self._resampler is None or shape != self._input:
            out = self.flush()
            self._resampler = av.AudioResampler(format="s16", layout="mono", rate=TARGET_RATE)
            self._input = shape
        return out + _pcm(self._resampler.resample(frame))

    def flush(self) -> bytes:
        """The samples still held in the filter (call at end of stream)."""
        if self._resampler is None:
            return b""
        resampler, self._resampler = self._resampler, None
        return _pcm(resampler.resample(None))


def _pcm(frames: list[av.AudioFrame]) -> bytes:
    # to_ndarray, not planes[0]: planes are padded beyond the samples.
    return b"".join(f.to_ndarray().tobytes() for f in frames)
