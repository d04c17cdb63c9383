"""pocketsphinx 5 engine with the en-US model bundled in its wheel (English offline)."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Sequence

from pocketsphinx import Decoder

from .base import Hypothesis, Word, mean_confidence

log = logging.getLogger(__name__)

_FILLER = re.compile(r"^(<.*>|\[.*\]|\+\+.*\+\+)$")  # <s>, <sil>, [NOISE], ++UH++
_ALTERNATE = re.compile(r"\(\d+\)$")  # "read(2)": second pronunciation of "read"
_GRAMMAR = "phrases"
_POOL_MAX = 8

# Decoder presets: pocketsphinx Config options over its defaults. "fast" caps the HMMs
# (maxhmmpf, default 30000) and the word exits (maxwpf, default all) searched per frame.
# Measured on pocketsphinx-testdata's LibriVox and cards recordings, both caption paths
# (scripts/bench_accuracy.py): 28-56 % less CPU, the same words recognised. Candidates
# that cut more lost words in one path or the other: 2000 HMMs, topn 2 (Gaussians scored
# per codebook), no fwdflat (the second pass).
PRESETS: dict[str, dict[str, int | bool]] = {
    "default": {},
    "fast": {"maxhmmpf": 3000, "maxwpf": 5},
}


class PocketsphinxModel:
    """Holds idle decoders for reuse.

    pocketsphinx cannot share one acoustic model between decoders, and creating a
    decoder costs ~0.4 s and ~100 MB, so closed recognizers give theirs back.
    """

    engine = "pocketsphinx"

    def __init__(self, language: str = "en", preset: str = "default") -> None:
        if preset not in PRESETS:
            raise ValueError(
                f"unknown pocketsphinx decoder preset {preset!r}: {', '.join(PRESETS)}"
            )
        self.language = language
        self.preset = preset
        self._lock = threading.Lock()
        self._idle: list[Decoder] = [self._new_decoder()]  # also proves the model loads
        self._cmn = self._idle[0].get_cmn()

    def _new_decoder(self) -> Decoder:
        return Decoder(loglevel="FATAL", **PRESETS[self.preset])

    def _take(self) -> Decoder:
        with self._lock:
            if self._idle:
                return self._idle.pop()
        return self._new_decoder()

    def _give_back(self, decoder: Decoder) -> None:
        decoder.activate_search("_default")
        # The cepstral mean adapts to what a decoder hears and outlives the utterance: the
        # next speaker starts from the model's own, not the last speaker's channel (measured:
        # cards 9/21 right on a new decoder, 2/21 on one that had heard LibriVox).
        decoder.set_cmn(self._cmn)
        with self._lock:
            if len(self._idle) < _POOL_MAX:
                self._idle.append(decoder)

    def recognizer(self, phrases: Sequence[str] | None = None) -> PocketsphinxRecognizer:
        decoder = self._take()
        if phrases:
            self._use_grammar(decoder, phrases)
        return PocketsphinxRecognizer(decoder, self._give_back)

    def _use_grammar(self, decoder: Decoder, phrases: Sequence[str]) -> None:
        """Any sequence of the phrases (Vosk's grammar semantics) as a JSGF rule."""
        kept = [
            p.lower() for p in phrases if all(decoder.lookup_word(w.lower()) for w in p.split())
        ]
        dropped = [p for p in phrases if p.lower() not in kept]
        if dropped:
            log.info("pocketsphinx: phrases not in the dictionary, ignored: %s", dropped)
        if not kept:
            return
        alternatives = " | ".join(f"( {p} )" for p in kept)
        decoder.add_jsgf_string(
            _GRAMMAR, f"#JSGF V1.0;\ngrammar {_GRAMMAR};\npublic <utt> = ( {alternatives} )+ ;\n"
        )
        decoder.activate_search(_GRAMMAR)


class PocketsphinxRecognizer:
    def __init__(self, decoder: Decoder, give_back: Callable[[Decoder], None]) -> None:
        self._decoder: Decoder | None = decoder
        self._give_back = give_back
        self._frate = float(decoder.config["frate"])
        self._partial = ""
        self._started = False

    def _dec(self) -> Decoder:
        if self._decoder is None:
            raise RuntimeError("recognizer is closed")
        if not self._started:
            self._decoder.start_utt()
            self._started = True
        return self._decoder

    def accept(self, pcm: bytes) -> Hypothesis | None:
        decoder = self._dec()
        decoder.process_raw(pcm, no_search=False, full_utt=False)
        hyp = decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text == self._partial:
            return None
        self._partial = text
        return Hypothesis(text)

    def finish(self) -> Hypothesis:
        decoder = self._dec()
        decoder.end_utt()
        self._started = False
        self._partial = ""
        hyp = decoder.hyp()
        if hyp is None or not hyp.hypstr:
            return Hypothesis("")
        words = tuple(
            Word(
                _ALTERNATE.sub("", seg.word),
                seg.start_frame / self._frate,
                (seg.end_frame + 1) / self._frate,
                float(seg.prob),
            )
            for seg in decoder.seg()
            if not _FILLER.match(seg.word)
        )
        return Hypothesis(hyp.hypstr, words, mean_confidence(words))

    def close(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is None:
            return
        if self._started:
            decoder.end_utt()
        self._give_back(decoder)
