"""Subtitle time codes, shared by file transcription and transcript export."""

from __future__ import annotations


def timecode(seconds: float, sep: str) -> str:
    """`HH:MM:SS<sep>mmm`: sep "." for WebVTT, "," for SubRip; negative times are 0."""
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"
