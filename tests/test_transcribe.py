"""transcribe_file: the live pipeline over files, in every output format."""

from __future__ import annotations

import io
import json
import re
import subprocess
from pathlib import Path

import pytest

from commhub.captions.transcribe import render, transcribe_file
from commhub.speech import SpeechModels
from tests.helpers.audio import KO_PHRASES, KO_SENTENCE, KO_WORDS, librivox, require, word_errors

# Measured on this machine: 0.34 (24 errors / 71 words); pocketsphinx on whole files: 0.28.
LIBRIVOX_WER_BOUND = 0.40
CUE = re.compile(r"^(\d\d):(\d\d):(\d\d)([.,])(\d{3}) --> (\d\d):(\d\d):(\d\d)([.,])(\d{3})$")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> SpeechModels:
    return SpeechModels(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def korean_ogg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two Korean sentences with a pause, stereo 44.1 kHz Ogg Vorbis: PyAV must convert."""
    d = tmp_path_factory.mktemp("ko")
    raw = d / "s.wav"
    subprocess.run([require("espeak-ng"), "-v", "ko", "-w", str(raw), KO_SENTENCE], check=True)
    out = d / "two.ogg"
    sox = require("sox")
    with (d / "padded.wav").open("wb") as f:
        subprocess.run([sox, str(raw), "-t", "wav", "-", "pad", "0.5", "1.5", "repeat", "1"],
                       check=True, stdout=f)  # fmt: skip
    subprocess.run([sox, str(d / "padded.wav"), "-r", "44100", "-c", "2", str(out)], check=True)
    return out


def test_librivox_files_within_the_measured_word_error_rate(models: SpeechModels) -> None:
    errors = words = 0
    for wav, reference in librivox():
        out = io.StringIO()
        finals = transcribe_file(wav, "en", models, "txt", out, progress=False)
        assert finals, f"nothing recognised in {wav.name}"
        e, n = word_errors(reference, out.getvalue())
        errors, words = errors + e, words + n
    assert words == 71
    assert errors / words <= LIBRIVOX_WER_BOUND, f"WER {errors / words:.2f}"


@pytest.mark.parametrize("fmt", ["vtt", "srt", "json", "txt"])
def test_every_format_parses(
    models: SpeechModels, korean_ogg: Path, fmt: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    finals = transcribe_file(korean_ogg, "ko", models, fmt, out, True, KO_PHRASES)  # type: ignore[arg-type]
    assert [f.text.split() for f in finals] == [KO_WORDS, KO_WORDS]
    assert "two.ogg" in capsys.readouterr().err  # the progress bar went to stderr
    text = out.getvalue()
    if fmt == "txt":
        assert [line.split() for line in text.splitlines()] == [KO_WORDS, KO_WORDS]
    elif fmt == "json":
        doc = json.loads(text)
        assert doc["language"] == "ko"
        segs = doc["segments"]
        assert [s["text"].split() for s in segs] == [KO_WORDS, KO_WORDS]
        assert segs[0]["end"] < segs[1]["start"]
        assert [w["word"] for w in segs[1]["words"]] == KO_WORDS
        assert 0.4 < segs[0]["start"] < 0.7  # after the 0.5 s of leading silence
    else:
        cues = parse_cues(text, fmt)
        assert [c[2].split() for c in cues] == [KO_WORDS, KO_WORDS]
        assert 0 < cues[0][0] < cues[0][1] < cues[1][0] < cues[1][1]


def parse_cues(text: str, fmt: str) -> list[tuple[float, float, str]]:
    blocks = text.strip().split("\n\n")
    if fmt == "vtt":
        assert blocks.pop(0) == "WEBVTT"
    cues = []
    for n, block in enumerate(blocks, 1):
        lines = block.split("\n")
        if fmt == "srt":
            assert lines.pop(0) == str(n)
        match = CUE.match(lines[0])
        assert match, lines[0]
        g = match.groups()
        assert {g[3], g[8]} == ({","} if fmt == "srt" else {"."})
        start = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[4]) / 1000
        end = int(g[5]) * 3600 + int(g[6]) * 60 + int(g[7]) + int(g[9]) / 1000
        cues.append((start, end, " ".join(lines[1:])))
    return cues


def test_render_timestamps_past_an_hour() -> None:
    from commhub.captions import CaptionEvent

    event = CaptionEvent("s-1", "", "en", True, "late", 3723.5, 3725.25)
    assert "01:02:03.500 --> 01:02:05.250" in render([event], "vtt", "en")
    assert "01:02:03,500 --> 01:02:05,250" in render([event], "srt", "en")


def test_bad_format_and_file_without_audio_fail_clearly(
    models: SpeechModels, tmp_path: Path
) -> None:
    wav = librivox()[1][0]
    with pytest.raises(ValueError, match="unknown format"):
        transcribe_file(wav, "en", models, "doc", io.StringIO(), False)  # type: ignore[arg-type]
    not_media = tmp_path / "notes.txt"
    not_media.write_text("hello")
    with pytest.raises(Exception):  # noqa: B017 - PyAV's own error type for unreadable input
        transcribe_file(not_media, "en", models, "txt", io.StringIO(), False)
