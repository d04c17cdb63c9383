"""Korean: the korcen keyword filter (PyPI `korcen`), with spans for masking.

korcen answers whether a text holds a pattern and which one, in its own normalised form;
this engine finds where, in what was sent. It runs korcen twice: on the text as sent
(korcen reads its own leetspeak: 10발, t발) and on the letters alone after folding
(jamo typed apart and joined again, digits and punctuation between syllables taken out:
ㅅㅣ1ㅂㅏㄹ). Its `politics` level (nicknames of politicians) is opinion, not abuse: not used.
"""

from __future__ import annotations

import re
from typing import Any

from .base import Hit
from .normalise import Folded, fold, letters_only

LEVELS = ("general", "minor", "sexual", "belittle", "race", "parent", "special")
_MAX_HITS = 16  # per text: then the rest of it is masked whole


def _load() -> Any:
    import korcen.korcen as k  # heavy-ish import (regex tables): the loader runs off the loop

    # korcen reads custom include/exclude lists from the working directory at import:
    # a file there must not change what the hub filters.
    k.CUSTOM_INCLUDE_REGEXES = []
    k.CUSTOM_EXCLUDE_REGEXES = []
    return k


class KorcenFilter:
    name = "korcen"
    languages = frozenset({"ko"})

    def __init__(self) -> None:
        self._k = _load()

    def serves(self, lang: str) -> bool:
        return lang == "ko"

    def _first(self, text: str) -> tuple[str, str] | None:
        for level in LEVELS:
            found = self._k.check_and_report_profanity_pattern(text, level)
            if found:
                return level, str(found)
        return None

    def find(self, text: str, lang: str) -> list[Hit]:
        hits = self._scan(text, Folded(text, tuple((i, i + 1) for i in range(len(text)))))
        hits += self._scan(text, letters_only(fold(text)))
        return hits

    def _scan(self, original: str, view: Folded) -> list[Hit]:
        """Ask korcen again and again, blanking each find, until it finds nothing."""
        work = list(view.text)
        out: list[Hit] = []
        for _ in range(_MAX_HITS):
            found = self._first("".join(work))
            if found is None:
                return out
            level, pattern = found
            span = self._locate("".join(work), pattern)
            if span is None:  # korcen's normalisation moved it out of reach: all of it
                return [*out, Hit(0, len(original), f"korcen:{level}")]
            s, e = span
            out.append(Hit(*view.origin(s, e), f"korcen:{level}"))
            work[s:e] = " " * (e - s)
        return [*out, Hit(0, len(original), "korcen:many")]

    def _locate(self, text: str, pattern: str) -> tuple[int, int] | None:
        i = text.find(pattern)
        if i >= 0:
            return i, i + len(pattern)
        # korcen drops spaces, digits and punctuation before matching: allow them between
        loose = re.search(r"[\W\d_]*".join(map(re.escape, pattern)), text, re.IGNORECASE)
        if loose and loose.end() > loose.start():
            return loose.start(), loose.end()
        try:
            m = re.search(self._k.build_flexible_regex(pattern), text, re.IGNORECASE)
        except re.error:
            return None
        return (m.start(), m.end()) if m and m.end() > m.start() else None
