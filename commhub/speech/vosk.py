"""Vosk (Kaldi) engine: one shared ``vosk.Model``, one ``KaldiRecognizer`` per stream.

A recognizer of a lookahead model (the small models) composes its decoding graph lazily
and caches it: a fresh one decodes a sentence with about 5x the CPU of a used one
(measured: 1.64 CPU-s against 0.31; silence or noise fed before does not warm it, other
speech does). Closed recognizers therefore go back to an idle pool, which
commhub.speech.warmup also fills with recognizers warmed before anyone speaks; past the
pool's size they are freed, in the thread that closes them (a recognize worker: freeing
one after long audio takes ~0.1 s, never on the event loop).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import vosk

from .base import SAMPLE_RATE, Hypothesis, Word, mean_confidence

log = logging.getLogger(__name__)

vosk.SetLogLevel(-1)  # Kaldi logs every model load and chunk to stderr otherwise

# Decoder presets: Kaldi settings over the model's conf/model.conf. Measured with the small
# Korean model (2 cores): "fast" decodes in ~25 % less CPU, warm or cold. Its accuracy
# cost could not be measured on real recordings here (no English Vosk model offline, and
# espeak Korean is not understood at open vocabulary); with a grammar both are right.
PRESETS: dict[str, dict[str, str]] = {
    "default": {},
    "fast": {"--max-active": "1000", "--beam": "8.0", "--lattice-beam": "1.0"},
}

# Idle recognizers kept per model (a Warmer raises it to its spares): each holds its graph
# cache (~110 MiB open vocabulary, a few MiB with a grammar), the price of a warm start.
IDLE_MAX = 2


class VoskModel:
    engine = "vosk"

    def __init__(
        self, language: str, path: Path, idle_max: int = IDLE_MAX, preset: str = "default"
    ) -> None:
        if preset not in PRESETS:
            raise ValueError(f"unknown Vosk decoder preset {preset!r}: {', '.join(PRESETS)}")
        self.language = language
        self.path = path
        self.preset = preset
        self.idle_max = idle_max
        self._overlay: tempfile.TemporaryDirectory[str] | None = None
        if PRESETS[preset]:  # kept while the model lives, in case Kaldi reads a file late
            self._overlay = tempfile.TemporaryDirectory(prefix="commhub-vosk-")
            self._model = vosk.Model(str(_overlay(path, PRESETS[preset], Path(self._overlay.name))))
        else:
            self._model = vosk.Model(str(path))
        self._lock = threading.Lock()
        # grammar (None: open vocabulary) -> idle (recognizer, seconds it has been fed)
        self._idle: dict[str | None, list[tuple[Any, float]]] = {}
        self.taken = threading.Event()  # an idle one was taken: a Warmer refills the pool
        self.lent = 0  # open-vocabulary recognizers streams hold (not yet given back)

    def known_word(self, word: str) -> bool:
        return bool(self._model.vosk_model_find_word(word) >= 0)

    def grammar(self, phrases: Sequence[str]) -> str:
        """Vosk's JSON phrase list, keeping only phrases whose words are all in the model.

        Vosk warns on stderr and ignores unknown words; we drop them ourselves and say so
        in our log, where an operator looks.
        """
        kept = [p for p in phrases if all(self.known_word(w) for w in p.split())]
        dropped = [p for p in phrases if p not in kept]
        if dropped:
            log.info("vosk %s: phrases not in the vocabulary, ignored: %s", self.language, dropped)
        return json.dumps(kept, ensure_ascii=False)

    def recognizer(self, phrases: Sequence[str] | None = None) -> VoskRecognizer:
        """A warm idle recognizer for the same grammar, else a new one (blocking: call it
        on a worker thread)."""
        grammar = self.grammar(phrases) if phrases else None
        with self._lock:
            idle = self._idle.get(grammar)
            taken = idle.pop() if idle else None
            self.lent += grammar is None
        if taken is not None:
            self.taken.set()
            rec, fed = taken
        else:
            rec, fed = self._new(grammar), 0.0
        lost = self._forget if grammar is None else None
        return VoskRecognizer(rec, fed, lambda r, f: self._give_back(grammar, r, f), lost)

    def _forget(self) -> None:
        with self._lock:
            self.lent -= 1

    def _new(self, grammar: str | None) -> Any:
        rec = (
            vosk.KaldiRecognizer(self._model, SAMPLE_RATE)
            if grammar is None
            else vosk.KaldiRecognizer(self._model, SAMPLE_RATE, grammar)
        )
        rec.SetWords(True)
        return rec

    def warm_one(self, pcm: bytes, chunk_bytes: int, stop: threading.Event) -> bool:
        """A new open-vocabulary recognizer fed ``pcm``, then idle (commhub.speech.warmup);
        False if ``stop`` came first or the pool was full (blocking: seconds of CPU)."""
        rec = self._new(None)
        for at in range(0, len(pcm), chunk_bytes):
            if stop.is_set():
                return False
            rec.AcceptWaveform(pcm[at : at + chunk_bytes])
        rec.FinalResult()  # the next utterance starts clean
        return self._give_back(None, rec, len(pcm) / (2 * SAMPLE_RATE), lent=False)

    def _give_back(self, grammar: str | None, rec: Any, fed: float, lent: bool = True) -> bool:
        with self._lock:
            self.lent -= grammar is None and lent
            idle = self._idle.setdefault(grammar, [])
            if sum(len(v) for v in self._idle.values()) >= self.idle_max:
                return False
            idle.append((rec, fed))
            return True

    def clear_idle(self) -> int:
        """Free the idle recognizers (blocking: call it on a worker thread); how many."""
        with self._lock:
            idle, self._idle = self._idle, {}
        return sum(len(v) for v in idle.values())

    @property
    def idle(self) -> int:
        with self._lock:
            return sum(len(v) for v in self._idle.values())


class VoskRecognizer:
    def __init__(
        self,
        rec: Any,
        fed: float,
        give_back: Callable[[Any, float], bool],
        lost: Callable[[], None] | None = None,
    ) -> None:
        self._rec: Any = rec
        self._give_back = give_back
        # dropped without close() (a stream's task cancelled mid-job): the model still hears
        # of it, so its count of lent recognizers does not drift
        self._lost = weakref.finalize(self, lost) if lost is not None else None
        # Vosk word times count from the recognizer's creation; ours from the utterance.
        self._fed = fed
        self._utt_start = fed
        # Vosk may endpoint by itself inside what our voice gate calls one utterance:
        # keep those results and prepend them, so nothing said is lost.
        self._done: list[Hypothesis] = []
        self._partial = ""

    def accept(self, pcm: bytes) -> Hypothesis | None:
        self._fed += len(pcm) / (2 * SAMPLE_RATE)
        rec = self._live()
        if rec.AcceptWaveform(pcm):
            self._done.append(self._parse(rec.Result()))
            text = self._joined("")
        else:
            text = self._joined(json.loads(rec.PartialResult()).get("partial", ""))
        if text == self._partial:
            return None
        self._partial = text
        return Hypothesis(text)

    def finish(self) -> Hypothesis:
        self._done.append(self._parse(self._live().FinalResult()))
        parts = [h for h in self._done if h.text]
        words = tuple(w for h in parts for w in h.words)
        hyp = Hypothesis(" ".join(h.text for h in parts), words, mean_confidence(words))
        self._done = []
        self._partial = ""
        self._utt_start = self._fed
        return hyp

    def _live(self) -> Any:
        if self._rec is None:
            raise RuntimeError("recognizer is closed")
        return self._rec

    def close(self) -> None:
        """Back to the idle pool, reset, or freed here: call it on a worker thread."""
        rec, self._rec = self._rec, None
        self._done = []
        if rec is None:
            return
        if self._lost is not None:
            self._lost.detach()  # _give_back counts it back
        if self._fed > self._utt_start or self._partial:
            rec.FinalResult()  # an unfinished utterance: discard it, the next starts clean
            self._utt_start = self._fed
        if not self._give_back(rec, self._fed):
            del rec  # the last reference: Kaldi frees its state now, in this thread

    def _joined(self, partial: str) -> str:
        return " ".join(t for t in [*(h.text for h in self._done), partial] if t)

    def _parse(self, result_json: str) -> Hypothesis:
        result = json.loads(result_json)
        words = tuple(
            Word(
                str(w["word"]),
                max(0.0, float(w["start"]) - self._utt_start),
                max(0.0, float(w["end"]) - self._utt_start),
                float(w["conf"]),
            )
            for w in result.get("result", ())
        )
        return Hypothesis(str(result.get("text", "")), words, mean_confidence(words))


def _overlay(model: Path, settings: dict[str, str], into: Path) -> Path:
    """The model seen through links, with ``settings`` replacing lines of its model.conf
    (the graph and acoustic model are linked, not copied)."""
    for item in model.iterdir():
        if item.name != "conf":
            (into / item.name).symlink_to(item.resolve())
    conf = into / "conf"
    conf.mkdir()
    for item in (model / "conf").iterdir():
        if item.name != "model.conf":
            shutil.copy(item, conf / item.name)
    lines = [
        f"{key}={settings[key]}" if (key := line.split("=", 1)[0]) in settings else line
        for line in (model / "conf" / "model.conf").read_text().splitlines()
    ]
    present = {line.split("=", 1)[0] for line in lines}
    lines += [f"{k}={v}" for k, v in settings.items() if k not in present]
    (conf / "model.conf").write_text("\n".join(lines) + "\n")
    return into
