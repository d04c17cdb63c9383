"""Vosk (Kaldi) engine: one shared ``vosk.Model``, one ``KaldiRecognizer`` per stream."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import vosk

from .base import SAMPLE_RATE, Hypothesis, Word, mean_confidence

log = logging.getLogger(__name__)

vosk.SetLogLevel(-1)  # Kaldi logs every model load and chunk to stderr otherwise


class VoskModel:
    engine = "vosk"

    def __init__(self, language: str, path: Path) -> None:
        self.language = language
        self.path = path
        self._model = vosk.Model(str(path))

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
        grammar = self.grammar(phrases) if phrases else None
        return VoskRecognizer(self._model, grammar)


class VoskRecognizer:
    def __init__(self, model: Any, grammar: str | None) -> None:
        if grammar is None:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE)
        else:
            self._rec = vosk.KaldiRecognizer(model, SAMPLE_RATE, grammar)
        self._rec.SetWords(True)
        # Vosk word times count from the recognizer's creation; ours from the utterance.
        self._fed = 0.0
        self._utt_start = 0.0
        # Vosk may endpoint by itself inside what our voice gate calls one utterance:
        # keep those results and prepend them, so nothing said is lost.
        self._done: list[Hypothesis] = []
        self._partial = ""

    def accept(self, pcm: bytes) -> Hypothesis | None:
        self._fed += len(pcm) / (2 * SAMPLE_RATE)
        if self._rec.AcceptWaveform(pcm):
            self._done.append(self._parse(self._rec.Result()))
            text = self._joined("")
        else:
            text = self._joined(json.loads(self._rec.PartialResult()).get("partial", ""))
        if text == self._partial:
            return None
        self._partial = text
        return Hypothesis(text)

    def finish(self) -> Hypothesis:
        self._done.append(self._parse(self._rec.FinalResult()))
        parts = [h for h in self._done if h.text]
        words = tuple(w for h in parts for w in h.words)
        hyp = Hypothesis(" ".join(h.text for h in parts), words, mean_confidence(words))
        self._done = []
        self._partial = ""
        self._utt_start = self._fed
        return hyp

    def close(self) -> None:
        self._done = []

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
