"""A word-list filter: curated data files, better-profanity's list, operators' lists.

Terms in a script that separates words (Latin, Cyrillic...) match whole words, so
"Scunthorpe", "class" and "assess" never match "cunt" or "ass"; a term ending in `*`
matches every word it begins ("gilipoll*"). Terms with Hangul or CJK match anywhere
(Korean attaches particles: 바보야, 바보는), in the text with spaces, punctuation and
digits taken out. Before matching, text is folded (commhub.moderation.filters.normalise):
case, width, accents, zero-width characters, jamo typed apart, leetspeak inside a word;
a word stretched (fuuuuck) is also compared squeezed; letters spelled out one by one
(f u c k, p.u.t.a) and a word split in two short halves (fu ck) are joined.
An allow list names words that are never hits (a term's false friends).

Lookups are hash-set probes per word: cost grows with the text, not the list.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from .base import Hit
from .normalise import (
    SYMBOLS,
    Folded,
    deleet,
    fold,
    folded_letters,
    is_cjk,
    letters_only,
    squeeze,
    stretched,
)

MAX_TERM = 64  # characters of one term
MAX_PHRASE_WORDS = 4
_GAP = re.compile(r"[\s.\-_,·•/\\]{1,2}")  # what may separate spelled-out letters


class _Token(NamedTuple):  # a tuple: a long text makes thousands
    text: str  # folded
    start: int  # folded indices
    end: int


_EDGE = "!¡|+"  # leet inside a word (b!tch), punctuation at its edges (damn!)
# A token: letters and digits (str.isalnum), leet symbols and `*`, but not Hangul or CJK
# (matched as substrings instead); one regex pass instead of a Python step per character.
_CJK_RANGES = "\uac00-\ud7a3\u3131-\u318e\u3040-\u30ff\u4e00-\u9fff\u3400-\u4dbf"
_TOKEN = re.compile(
    "(?:[^\\W_" + _CJK_RANGES + "]|[" + re.escape("".join(sorted(SYMBOLS))) + "*])+"
)


def _tokens(f: Folded) -> tuple[_Token, ...]:
    return _tokens_of(f.text)


@lru_cache(maxsize=8)
def _tokens_of(text: str) -> tuple[_Token, ...]:
    out: list[_Token] = []
    make = _Token._make
    for m in _TOKEN.finditer(text):
        tok = m.group()
        s, e = m.span()
        if tok[0] in _EDGE or tok[-1] in _EDGE:
            while s < e and text[s] in _EDGE:
                s += 1
            while e > s and text[e - 1] in _EDGE:
                e -= 1
            if e == s:
                continue
            tok = text[s:e]
        out.append(make((tok, s, e)))
    return tuple(out)


def _key(term: str) -> str:
    return deleet(fold(term).text.strip())


class WordList:
    """Filter over a list of terms for some languages (None: every language)."""

    def __init__(
        self,
        name: str,
        terms: Iterable[str],
        *,
        allow: Iterable[str] = (),
        languages: Iterable[str] | None = None,
    ) -> None:
        self.name = name
        self.languages = frozenset(languages) if languages is not None else None
        self.words: dict[str, str] = {}
        self.squeezed: dict[str, str] = {}
        self.prefixes: dict[str, list[str]] = {}  # first 3 letters -> prefixes
        self.phrases: set[str] = set()
        self._phrase_first: set[str] = set()
        cjk: list[str] = []
        for raw in terms:
            term = raw.strip()
            if not term or len(term) > MAX_TERM:
                continue
            key = _key(term)
            if not key:
                continue
            if any(is_cjk(c) for c in key):
                cjk.append(letters_only(fold(term)).text)
            elif key.endswith("*") and len(key) >= 4:
                stem = key.rstrip("*")
                self.prefixes.setdefault(stem[:3], []).append(stem)
            elif " " in key:
                words = key.split()
                if len(words) <= MAX_PHRASE_WORDS:
                    self.phrases.add(" ".join(words))
                    self._phrase_first.add(words[0])
                self.words["".join(words)] = term  # blowjob as well as blow job
            else:
                self.words[key] = term
                if len(set(key)) > 1:  # xxx squeezed is x: a run of one letter is no word
                    self.squeezed.setdefault(squeeze(key), term)
        # f*ck: the words with a given letter at a given place, for starred tokens
        self._at: dict[tuple[int, int, str], set[str]] = {}
        for w in self.words:
            for i, c in enumerate(w):
                self._at.setdefault((len(w), i, c), set()).add(w)
        cjk = sorted({t for t in cjk if t}, key=len, reverse=True)
        self.cjk = re.compile("|".join(map(re.escape, cjk))) if cjk else None
        allow = [a for a in allow if a.strip()]
        self.allow = {_key(a) for a in allow if not any(is_cjk(c) for c in a)}
        allow_cjk = sorted(
            {letters_only(fold(a)).text for a in allow if any(is_cjk(c) for c in a)},
            key=len,
            reverse=True,
        )
        self.allow_cjk = re.compile("|".join(map(re.escape, allow_cjk))) if allow_cjk else None

    def __len__(self) -> int:
        return len(self.words) + len(self.phrases) + sum(map(len, self.prefixes.values()))

    def serves(self, lang: str) -> bool:
        return self.languages is None or lang in self.languages

    # -- matching ------------------------------------------------------------------------

    def _word_hit(self, token: str) -> bool:
        if token in self.allow or not (token.isalpha() or any(map(str.isalpha, token))):
            return False
        plain = deleet(token)
        if plain in self.allow:
            return False
        if token in self.words or plain in self.words:
            return True
        if stretched(plain) and squeeze(plain) in self.squeezed:
            return True
        if "*" in plain and len(plain) > 2 and self._starred(plain):
            return True
        return any(plain.startswith(stem) for stem in self.prefixes.get(plain[:3], ()))

    def _starred(self, token: str) -> bool:
        """f*ck, sh*t: a star stands for one letter (only words with a star pay for this)."""
        known = [(len(token), i, c) for i, c in enumerate(token) if c != "*"]
        if len(known) < 2:
            return False
        sets = sorted((self._at.get(k, set()) for k in known), key=len)
        return bool(sets[0].intersection(*sets[1:]))

    def find(self, text: str, lang: str) -> list[Hit]:
        f = fold(text)
        hits: list[tuple[int, int]] = []
        tokens = _tokens(f)
        seen: dict[str, bool] = {}  # a long text repeats its words: judge each once
        for t in tokens:
            hit = seen.get(t.text)
            if hit is None:
                hit = seen[t.text] = self._word_hit(t.text)
            if hit:
                hits.append((t.start, t.end))
        hits.extend(self._joined(f, tokens))
        if self.phrases:
            hits.extend(self._phrase_hits(tokens))
        if self.cjk is not None:
            hits.extend(self._cjk_hits(text, f))
        return [Hit(*f.origin(s, e), self.name) for s, e in _merge(hits)]

    def _joined(self, f: Folded, tokens: tuple[_Token, ...]) -> list[tuple[int, int]]:
        """Letters spelled out one by one (f u c k), and a word split in two (fu ck)."""
        out: list[tuple[int, int]] = []
        run: list[_Token] = []

        def close() -> None:
            if len(run) >= 3 and self._word_hit("".join(t.text for t in run)):
                out.append((run[0].start, run[-1].end))

        text = f.text
        prev: _Token | None = None
        for t in tokens:
            n = len(t.text)
            # a run's last token is the one before t: letters with a gap between them join
            # (a gap is one or two characters: the lengths first, the regex only then)
            if (
                n == 1
                and run
                and t.start - run[-1].end <= 2
                and _GAP.fullmatch(text, run[-1].end, t.start)
            ):
                run.append(t)
            else:
                if len(run) >= 3:
                    close()
                run = [t] if n == 1 else []
            if (
                prev is not None
                and 1 < n <= 3
                and 1 < len(prev.text) <= 3
                and t.start - prev.end <= 2
                and _GAP.fullmatch(text, prev.end, t.start)
                and self._word_hit(prev.text + t.text)
            ):
                out.append((prev.start, t.end))
            prev = t
        close()
        return out

    def _phrase_hits(self, tokens: tuple[_Token, ...]) -> list[tuple[int, int]]:
        out = []
        words = [deleet(t.text) for t in tokens]
        for i, first in enumerate(words):
            if first not in self._phrase_first:  # most words start no phrase
                continue
            for n in range(2, min(MAX_PHRASE_WORDS, len(words) - i) + 1):
                if " ".join(words[i : i + n]) in self.phrases:
                    out.append((tokens[i].start, tokens[i + n - 1].end))
        return out

    def _cjk_hits(self, text: str, f: Folded) -> list[tuple[int, int]]:
        assert self.cjk is not None
        bare = folded_letters(text)
        allowed = (
            Within(m.span() for m in self.allow_cjk.finditer(bare.text)) if self.allow_cjk else None
        )
        out = []
        for m in self.cjk.finditer(bare.text):
            s, e = m.span()
            if allowed is not None and allowed(s, e):
                continue
            # back to the folded text's indices through the original positions (in order:
            # a binary search, not a scan per match)
            o_start, o_end = bare.origin(s, e)
            out.append((bisect_left(f.starts, o_start), bisect_right(f.ends, o_end)))
        return out


class Within:
    """Whether [start, end) lies inside one of some spans: a binary search over their
    starts and the furthest end reached so far, not a scan of every span per question
    (a long text can have hundreds of each)."""

    def __init__(self, spans: Iterable[tuple[int, int]]) -> None:
        ordered = sorted(spans)
        self._starts = [s for s, _ in ordered]
        self._reach: list[int] = []
        for _, e in ordered:
            self._reach.append(max(e, self._reach[-1]) if self._reach else e)

    def __call__(self, start: int, end: int) -> bool:
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and self._reach[i] >= end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]))
        else:
            out.append((s, e))
    return out


# -- list files ------------------------------------------------------------------------------


@dataclass
class ListFile:
    """A parsed list file: terms and allowed words per language ("*": every language)."""

    terms: dict[str, list[str]]
    allow: dict[str, list[str]]


def parse_list(text: str) -> ListFile:
    """One term per line; `#` starts a comment; `!word` allows a word; a line `[xx]`
    scopes the lines after it to language xx (`[*]`: every language, the default)."""
    terms: dict[str, list[str]] = {}
    allow: dict[str, list[str]] = {}
    lang = "*"
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("[") and line.endswith("]"):
            lang = line[1:-1].strip().lower() or "*"
        elif line.startswith("!"):
            allow.setdefault(lang, []).append(line[1:].strip())
        else:
            terms.setdefault(lang, []).append(line)
    return ListFile(terms, allow)


def load_list(path: Path) -> ListFile:
    return parse_list(path.read_text("utf-8"))
