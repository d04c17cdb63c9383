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
from .normalise import Folded, folded_letters

LEVELS = ("general", "minor", "sexual", "belittle", "race", "parent", "special")
_MAX_HITS = 256  # per text and view: then all of it is masked (what passes the cap is abuse)
_SPACE = re.compile(r"\s+")
# korcen's preprocess_text changes the text per level only for these (the others share it)
_OWN_PREPROCESSING = frozenset({"minor", "sexual", "belittle"})


def _by_first_char(rx: re.Pattern[str] | None) -> re.Pattern[str] | None:
    """korcen's patterns are alternations of literals, which re tries one by one at every
    position; grouped by first character (each group in korcen's order) the regex finds
    exactly the same matches, two to three times faster. Anything else is kept as is."""
    if rx is None:
        return None
    from re import _constants as sre  # type: ignore[attr-defined]
    from re import _parser  # type: ignore[attr-defined]

    tree = _parser.parse(rx.pattern, rx.flags)
    if len(tree) != 1 or tree[0][0] is not sre.BRANCH:
        return rx
    literals = []
    for branch in tree[0][1][1]:
        if not branch or any(op is not sre.LITERAL for op, _ in branch):
            return rx
        literals.append("".join(chr(v) for _, v in branch))
    groups: dict[str, list[str]] = {}
    for lit in literals:
        groups.setdefault(lit[0], []).append(lit)
    return re.compile(
        "|".join(
            re.escape(c) + "(?:" + "|".join(re.escape(lit[1:]) for lit in group) + ")"
            for c, group in groups.items()
        ),
        rx.flags,
    )


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
        k = self._k
        self._profanity = {lv: _by_first_char(k.get_profanity_regex(lv)) for lv in LEVELS}
        self._false = {lv: _by_first_char(k.get_false_positive_regex(lv)) for lv in LEVELS}

    def serves(self, lang: str) -> bool:
        return lang == "ko"

    def matches(self, text: str, level: str, *, _pre: dict[str, str] | None = None) -> list[str]:
        """Every pattern korcen finds in text at `level`, in order: korcen's own pipeline
        (check_and_report_profanity_pattern: URLs out, its normalisation, its false
        positives out, what it ignores out), its pattern searched once through the whole
        text instead of once per hit (parity with korcen's first find is tested).
        `_pre`: the normalised text of the levels that normalise alike, shared."""
        k = self._k
        form = level if level in _OWN_PREPROCESSING else ""
        pre = _pre if _pre is not None else {}
        processed = pre.get(form)
        if processed is None:
            processed = pre[form] = k.preprocess_text(k.URL_REGEX.sub("", text), level)
        fp = self._false[level]
        if fp is not None:
            processed = fp.sub("", processed)
        if level != "special":
            processed = re.sub(k.get_final_filter_regex_str(level), "", processed)
        rx = self._profanity[level]
        if rx is None:
            found: list[str] = []
        elif rx.groups:  # findall would give the groups
            found = [m.group(0) for m in rx.finditer(processed)]
        else:
            found = rx.findall(processed)
        if not found and level == "general" and processed in k.EXACT_MATCH_PROFANITY:
            found = [processed]
        return found

    def find(self, text: str, lang: str) -> list[Hit]:
        hits = self._scan(text, Folded.same(text))
        bare = folded_letters(text)
        # korcen drops whitespace itself: when that is all folding did, it saw this already
        if bare.text != _SPACE.sub("", text):
            hits += self._scan(text, bare)
        return hits

    def _scan(self, original: str, view: Folded) -> list[Hit]:
        """Every level's patterns, located in the view and mapped back to the original."""
        out: list[Hit] = []
        pre: dict[str, str] = {}
        for level in LEVELS:
            patterns = dict.fromkeys(self.matches(view.text, level, _pre=pre))
            for pattern in patterns:
                spans = self._locate(view.text, pattern)
                if not spans:  # korcen's normalisation moved it out of reach: all of it
                    return [*out, Hit(0, len(original), f"korcen:{level}")]
                out += [Hit(*view.origin(s, e), f"korcen:{level}") for s, e in spans]
                if len(out) > _MAX_HITS:
                    return [*out[:_MAX_HITS], Hit(0, len(original), "korcen:many")]
        return out

    def _locate(self, text: str, pattern: str) -> list[tuple[int, int]]:
        # korcen drops spaces, digits and punctuation before matching: allow them between
        loose = re.compile(r"[\W\d_]*".join(map(re.escape, pattern)), re.IGNORECASE)
        spans = [m.span() for m in loose.finditer(text) if m.end() > m.start()]
        if spans:
            return spans[: _MAX_HITS + 1]
        try:
            flexible = re.compile(self._k.build_flexible_regex(pattern), re.IGNORECASE)
        except re.error:
            return []
        return [m.span() for m in flexible.finditer(text) if m.end() > m.start()][: _MAX_HITS + 1]
