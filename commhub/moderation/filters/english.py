"""English: better-profanity's word list and alt-profanity-check's linear model.

better-profanity's own censor() walks its whole list of word variants for every word of
the text (about 12 ms for one line on this hardware: more than a caption can spend), so
its list is matched by commhub's WordList (a hash probe per word, with better-profanity's
leetspeak digits and symbols folded back). alt-profanity-check is a TF-IDF vectoriser and
a calibrated LinearSVC (five folds); its predict_prob costs ~3.5 ms through scikit-learn,
so the same formula is computed here from its weights (parity is tested): the average of
the folds' sigmoids of w·x + c over the L2-normalised TF-IDF vector of the text's words.
A score at or over the threshold is a hit; what is masked is the smallest set of words
whose removal brings the score under it (the words the model weighs most, one by one).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any

from .base import Hit
from .wordlist import WordList

_MAX_MASKED = 6  # words taken out before the whole text counts as the hit


def better_profanity_list(allow: list[str] | None = None) -> WordList:
    from better_profanity.utils import get_complete_path_of_file, read_wordlist

    words = list(read_wordlist(get_complete_path_of_file("profanity_wordlist.txt")))
    return WordList("better-profanity", words, allow=allow or (), languages={"en"})


class ProfanityModel:
    name = "profanity-check"
    languages = frozenset({"en"})
    contextual = True  # judges the sentence: allow lists (words) do not overrule it

    def __init__(self, threshold: float) -> None:
        from profanity_check import profanity_check as pc  # loads the joblib files

        v: Any = pc.vectorizer
        m: Any = pc.model
        self.threshold = threshold
        self._analyse = v.build_analyzer()
        self._pattern = re.compile(v.token_pattern)
        folds = m.calibrated_classifiers_
        self._bias = [float(cc.estimator.intercept_[0]) for cc in folds]
        self._calib = [(float(cc.calibrators[0].a_), float(cc.calibrators[0].b_)) for cc in folds]
        coefs = [cc.estimator.coef_[0] for cc in folds]
        idf = v.idf_
        self._terms: dict[str, tuple[float, tuple[float, ...]]] = {
            term: (float(idf[j]), tuple(float(c[j]) for c in coefs))
            for term, j in v.vocabulary_.items()
        }

    def serves(self, lang: str) -> bool:
        return lang == "en"

    def score(self, text: str) -> float:
        return self._score(Counter(self._analyse(text)))

    def _score(self, counts: Counter[str]) -> float:
        x = {t: n * self._terms[t][0] for t, n in counts.items() if t in self._terms}
        norm = math.sqrt(sum(v * v for v in x.values())) or 1.0
        total = 0.0
        for i, bias in enumerate(self._bias):
            f = sum(v * self._terms[t][1][i] for t, v in x.items()) / norm + bias
            a, b = self._calib[i]
            total += 1.0 / (1.0 + math.exp(a * f + b))
        return total / len(self._bias)

    def find(self, text: str, lang: str) -> list[Hit]:
        counts = Counter(self._analyse(text))
        if self._score(counts) < self.threshold:
            return []
        removed: list[str] = []
        while len(removed) < _MAX_MASKED:
            worst = max(
                (t for t in counts if t in self._terms),
                key=lambda t: counts[t] * self._terms[t][0] * sum(self._terms[t][1]),
                default=None,
            )
            if worst is None:
                break
            removed.append(worst)
            del counts[worst]
            if self._score(counts) < self.threshold:
                rule = f"{self.name}>={self.threshold:g}"
                lowered = text.lower()
                if len(lowered) != len(text):
                    return [Hit(0, len(text), rule)]
                return [
                    Hit(m.start(), m.end(), rule)
                    for m in self._pattern.finditer(lowered)
                    if m.group(0) in removed
                ]
        return [Hit(0, len(text), f"{self.name}>={self.threshold:g}")]
