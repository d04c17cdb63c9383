"""Test audio made with real tools: espeak-ng speech, sox conversion, numpy noise.

Everything returned is s16le mono 16 kHz PCM unless said otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

RATE = 16000
POCKETSPHINX_DATA = Path("/usr/share/pocketsphinx/test/data")
LIBRIVOX = POCKETSPHINX_DATA / "librivox"

# espeak-ng Korean that the small Vosk model recognises in grammar mode: the punctuation
# makes espeak pause between words (measured: every run correct, speeds 150-190).
KO_SENTENCE = "안녕하세요. 서울, 시청 입니다"
KO_WORDS = ["안녕하세요", "서울", "시청", "입니다"]
KO_PHRASES = [*KO_WORDS, "[unk]"]


def require(tool: str) -> str:
    path = shutil.which(tool)
    assert path, f"{tool} not found: install the Debian package (scripts/test does)"
    return path


def to_pcm(wav: bytes) -> bytes:
    """Any audio sox reads -> s16le mono 16 kHz."""
    return subprocess.run(
        [require("sox"), "-t", "wav", "-", "-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed",
         "-t", "raw", "-"],
        input=wav, capture_output=True, check=True,
    ).stdout  # fmt: skip


def espeak(text: str, voice: str = "ko", speed: int = 175) -> bytes:
    wav = subprocess.run(
        [require("espeak-ng"), "-v", voice, "-s", str(speed), "--stdout", text],
        capture_output=True,
        check=True,
    ).stdout
    return to_pcm(wav)


def wav_pcm(path: Path) -> bytes:
    return to_pcm(path.read_bytes())


def write_wav(path: Path, pcm: bytes, rate: int = RATE) -> Path:
    """s16le mono PCM as a WAV file."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)
    return path


def korean_speech(before: float = 0.3, after: float | None = None) -> bytes:
    """The Korean test sentence between silences (`after` defaults to `before`)."""
    return silence(before) + espeak(KO_SENTENCE) + silence(before if after is None else after)


def speech_wav(
    path: Path,
    text: str = "Hello, this is a test of the commhub media relay. One two three four five.",
) -> Path:
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(path), text], check=True)
    return path


def read_wav_mono(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        rate, ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float64)
    if ch > 1:
        data = data.reshape(-1, ch).mean(axis=1)
    return data, rate


def silence(seconds: float) -> bytes:
    return bytes(2 * round(seconds * RATE))


def white_noise(seconds: float, level: float = 0.05, seed: int = 7) -> bytes:
    """Gaussian white noise, ``level`` = RMS relative to full scale (0.05 = -26 dBFS)."""
    rng = np.random.default_rng(seed)
    samples = rng.standard_normal(round(seconds * RATE)) * level * 32767
    return samples.clip(-32768, 32767).astype("<i2").tobytes()


def webrtc_frames(pcm: bytes, samples_per_frame: int = 960) -> list[av.AudioFrame]:
    """16 kHz mono PCM as WebRTC delivers audio: s16 stereo 48 kHz frames of 20 ms."""
    mono = np.frombuffer(pcm, dtype="<i2")
    up = np.repeat(mono, 3)  # crude 3x upsampling is enough: the resampler filters it
    frames = []
    for i in range(0, len(up), samples_per_frame):
        block = up[i : i + samples_per_frame]
        stereo = np.stack([block, block], axis=1).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
        frame.sample_rate = 48000
        frame.pts = i
        frame.time_base = Fraction(1, 48000)
        frames.append(frame)
    return frames


def chunks(pcm: bytes, ms: int = 20) -> list[bytes]:
    size = RATE * 2 * ms // 1000
    return [pcm[i : i + size] for i in range(0, len(pcm), size)]


def librivox() -> list[tuple[Path, str]]:
    """(wav, reference transcript) of pocketsphinx-testdata's LibriVox recordings."""
    listing = LIBRIVOX / "transcription"
    assert listing.is_file(), f"{listing} missing: apt-get install pocketsphinx-testdata"
    refs = re.findall(r"<s>(.*?)</s> \((.*?)\)", listing.read_text())
    return [(LIBRIVOX / f"{fid}.wav", text.strip()) for text, fid in refs]


_NORMAL = {"mr": "mister", "mrs": "missus"}


def normalise(text: str) -> list[str]:
    words = re.sub(r"[^a-z' ]", " ", text.lower()).split()
    return [_NORMAL.get(w, w) for w in words]


def word_errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length) after normalising case and punctuation."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i in range(1, len(ref) + 1):
        diag, row[0] = row[0], i
        for j in range(1, len(hyp) + 1):
            diag, row[j] = (
                row[j],
                min(row[j] + 1, row[j - 1] + 1, diag + (ref[i - 1] != hyp[j - 1])),
            )
    return row[len(hyp)], len(ref)
