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
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .base import Hit
from .normalise import Folded, deleet, fold, is_cjk, letters_only, squeeze, stretched, word_char

MAX_TERM = 64  # characters of one term
MAX_PHRASE_WORDS = 4
_GAP = re.compile(r"[\s.\-_,·•/\\]{1,2}")  # what may separate spelled-out letters


@dataclass(frozen=True)
class _Token:
    text: str  # folded
    start: int  # folded indices
    end: int


_EDGE = "!¡|+"  # leet inside a word (b!tch), punctuation at its edges (damn!)


def _tokens(f: Folded) -> list[_Token]:
    out: list[_Token] = []
    start = -1
    for i, c in enumerate([*f.text, " "]):
        if word_char(c) and not is_cjk(c):
            if start < 0:
                start = i
        elif start >= 0:
            s, e = start, i
            while s < e and f.text[s] in _EDGE:
                s += 1
            while e > s and f.text[e - 1] in _EDGE:
                e -= 1
            if e > s:
                out.append(_Token(f.text[s:e], s, e))
            start = -1
    return out


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
                self.words["".join(words)] = term  # blowjob as well as blow job
            else:
                self.words[key] = term
                self.squeezed.setdefault(squeeze(key), term)
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
        if token in self.allow or not any(c.isalpha() for c in token):
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
        known = [(i, c) for i, c in enumerate(token) if c != "*"]
        if len(known) < 2:
            return False
        return any(len(w) == len(token) and all(w[i] == c for i, c in known) for w in self.words)

    def find(self, text: str, lang: str) -> list[Hit]:
        f = fold(text)
        hits: list[tuple[int, int]] = []
        tokens = _tokens(f)
        for t in tokens:
            if self._word_hit(t.text):
                hits.append((t.start, t.end))
        hits.extend(self._joined(f, tokens))
        if self.phrases:
            hits.extend(self._phrase_hits(tokens))
        if self.cjk is not None:
            hits.extend(self._cjk_hits(f))
        return [Hit(*f.origin(s, e), self.name) for s, e in _merge(hits)]

    def _joined(self, f: Folded, tokens: list[_Token]) -> list[tuple[int, int]]:
        """Letters spelled out one by one (f u c k), and a word split in two (fu ck)."""
        out: list[tuple[int, int]] = []
        run: list[_Token] = []

        def close() -> None:
            if len(run) >= 3 and self._word_hit("".join(t.text for t in run)):
                out.append((run[0].start, run[-1].end))

        for i, t in enumerate(tokens):
            near = i > 0 and _GAP.fullmatch(f.text[tokens[i - 1].end : t.start]) is not None
            if len(t.text) == 1 and run and near:
                run.append(t)
            else:
                close()
                run = [t] if len(t.text) == 1 else []
            if near and 1 < len(t.text) <= 3 and 1 < len(tokens[i - 1].text) <= 3:
                a = tokens[i - 1]
                if self._word_hit(a.text + t.text):
                    out.append((a.start, t.end))
        close()
        return out

    def _phrase_hits(self, tokens: list[_Token]) -> list[tuple[int, int]]:
        out = []
        words = [deleet(t.text) for t in tokens]
        for n in range(2, MAX_PHRASE_WORDS + 1):
            for i in range(len(words) - n + 1):
                if " ".join(words[i : i + n]) in self.phrases:
                    out.append((tokens[i].start, tokens[i + n - 1].end))
        return out

    def _cjk_hits(self, f: Folded) -> list[tuple[int, int]]:
        assert self.cjk is not None
        bare = letters_only(f)
        allowed = [m.span() for m in self.allow_cjk.finditer(bare.text)] if self.allow_cjk else []
        out = []
        for m in self.cjk.finditer(bare.text):
            s, e = m.span()
            if any(a <= s and e <= b for a, b in allowed):
                continue
            # back to the folded text's indices through the original positions
            o_start, o_end = bare.origin(s, e)
            fs = next(i for i, sp in enumerate(f.spans) if sp[0] >= o_start)
            fe = max(i for i, sp in enumerate(f.spans) if sp[1] <= o_end) + 1
            out.append((fs, fe))
        return out


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
