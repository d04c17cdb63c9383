"""Folding text for matching, with a map back to the original characters.

What an obfuscator changes, folding undoes: case, width and styled letters (NFKC),
accents, zero-width and other format characters, Hangul typed as separate jamo
(ㅅㅣㅂㅏㄹ -> 시발), and leetspeak digits and symbols inside words. Every folded character
remembers the [start, end) of the original characters it came from, so a match on the
folded text masks exactly those characters of what was sent.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import compress

# Hangul Compatibility Jamo (what keyboards type) -> index as choseong / jungseong /
# jongseong in the syllable formula (U+AC00 + (L*21 + V)*28 + T).
_L = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_V = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_T = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"  # index 0: no final
_LEAD = {c: i for i, c in enumerate(_L)}
_VOWEL = {c: i for i, c in enumerate(_V)}
_TAIL = {c: i for i, c in enumerate(_T) if i}
_LEADS = frozenset(_LEAD)
# Conjoining jamo (U+1100.., U+1161.., U+11A8..) fold onto the compatibility ones.
_CONJ = {
    **{chr(0x1100 + i): c for i, c in enumerate(_L)},
    **{chr(0x1161 + i): c for i, c in enumerate(_V)},
    **{chr(0x11A7 + i): c for i, c in enumerate(_T) if i},
}

# Inside a word, these stand for letters (better-profanity's table, and common additions).
LEET = {
    "0": "o", "1": "i", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b",
    "9": "g", "@": "a", "$": "s", "!": "i", "|": "l", "+": "t", "€": "e", "£": "l", "¡": "i",
}  # fmt: skip
SYMBOLS = frozenset(c for c in LEET if not c.isalnum())
_LEET_TABLE = str.maketrans(LEET)
_STRETCH = re.compile(r"(.)\1\1", re.DOTALL)


def is_hangul(c: str) -> bool:
    o = ord(c)
    return 0xAC00 <= o <= 0xD7A3 or 0x3131 <= o <= 0x318E


def is_cjk(c: str) -> bool:
    """Scripts written without spaces between words: matched as substrings."""
    o = ord(c)
    return (
        is_hangul(c)
        or 0x3040 <= o <= 0x30FF  # kana
        or 0x4E00 <= o <= 0x9FFF  # CJK ideographs
        or 0x3400 <= o <= 0x4DBF
    )


@lru_cache(maxsize=4096)
def _fold_char(c: str) -> str:
    """One original character -> its folded form ('' when it carries nothing)."""
    if c in _CONJ:
        return _CONJ[c]
    if is_hangul(c):
        return c
    cat = unicodedata.category(c)
    if cat == "Cf" or cat == "Mn":  # zero-width joiners, soft hyphens, stray accents
        return ""
    out = unicodedata.normalize("NFKC", c).casefold()
    if out == "ñ":  # a letter of its own in Spanish (coño is not cono, a cone)
        return out
    # strip accents: é -> e (words are compared with and without them alike)
    return "".join(
        ch for ch in unicodedata.normalize("NFD", out) if unicodedata.category(ch) != "Mn"
    )


@dataclass(frozen=True)
class Folded:
    """`text` folded; text[i] stands for the original [starts[i], ends[i]). Plain int
    sequences (ranges when one to one), not a tuple per character: a long text's view is
    then a few objects, not thousands for the garbage collector to trace."""

    text: str
    starts: Sequence[int]
    ends: Sequence[int]

    @classmethod
    def same(cls, text: str) -> Folded:
        """The view of text that is text itself."""
        return cls(text, range(len(text)), range(1, len(text) + 1))

    def origin(self, start: int, end: int) -> tuple[int, int]:
        """The original [start, end) behind folded [start, end)."""
        return self.starts[start], self.ends[end - 1]


def fold(text: str) -> Folded:
    """The folded view of text (the last few are kept: every engine of a screen asks for
    the same text's view, and a long text is folded once, not once per engine)."""
    return _fold(text)


@lru_cache(maxsize=8)
def _fold(text: str) -> Folded:
    if text.isascii():  # the common case: lower case is all folding does, one to one
        return Folded(text.lower(), range(len(text)), range(1, len(text) + 1))
    folded = list(map(_fold_char, text))
    starts: Sequence[int]
    ends: Sequence[int]
    if set(map(len, folded)) == {1}:  # one for one (Hangul, most scripts): no map to build
        chars = folded
        starts, ends = range(len(text)), range(1, len(text) + 1)
    else:
        chars, starts, ends = [], [], []
        for i, f in enumerate(folded):
            for c in f:
                chars.append(c)
                starts.append(i)
                ends.append(i + 1)
    if not _LEADS.isdisjoint(chars):
        chars, starts, ends = _compose_jamo(chars, starts, ends)
    return Folded("".join(chars), starts, ends)


def _compose_jamo(
    chars: list[str], starts: Sequence[int], ends: Sequence[int]
) -> tuple[list[str], list[int], list[int]]:
    """ㅅㅣㅂㅏㄹ -> 시발 (spaces between the jamo are not skipped: ㅅ ㅂ stays). One pass
    into new lists: replacing in place would move the rest of the text at every syllable."""
    out: list[str] = []
    out_starts: list[int] = []
    out_ends: list[int] = []
    n = len(chars)
    i = 0
    while i < n:
        lead = _LEAD.get(chars[i])
        vowel = _VOWEL.get(chars[i + 1]) if lead is not None and i + 1 < n else None
        if lead is None or vowel is None:
            out.append(chars[i])
            out_starts.append(starts[i])
            out_ends.append(ends[i])
            i += 1
            continue
        end = i + 2
        tail = 0
        # a following consonant closes the syllable unless a vowel comes after it
        if end < n and chars[end] in _TAIL:
            nxt = chars[end + 1] if end + 1 < n else ""
            if nxt not in _VOWEL:
                tail = _TAIL[chars[end]]
                end += 1
        out.append(chr(0xAC00 + (lead * 21 + vowel) * 28 + tail))
        out_starts.append(starts[i])
        out_ends.append(ends[end - 1])
        i = end
    return out, out_starts, out_ends


def word_char(c: str) -> bool:
    return c.isalnum() or c in SYMBOLS or c == "*"


def deleet(token: str) -> str:
    """Leetspeak letters back (only inside a token that has at least one letter)."""
    if token.isalpha() or not any(map(str.isalpha, token)):
        return token
    return token.translate(_LEET_TABLE)


def squeeze(token: str) -> str:
    """Runs of one letter cut to one: fuuuuck -> fuck (used only on stretched tokens)."""
    out: list[str] = []
    for c in token:
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def stretched(token: str) -> bool:
    """Three or more of one letter in a row: a deliberate stretch, not spelling."""
    return _STRETCH.search(token) is not None


def letters_only(f: Folded) -> Folded:
    """Only letters (what spacing, punctuation and digits split apart comes back together):
    for substring matching of Hangul and CJK terms."""
    keep = list(map(str.isalpha, f.text))  # map and compress: no Python step per character
    if all(keep):
        return f
    text = "".join(compress(f.text, keep))
    return Folded(text, list(compress(f.starts, keep)), list(compress(f.ends, keep)))


@lru_cache(maxsize=8)
def folded_letters(text: str) -> Folded:
    """letters_only(fold(text)), kept like fold's for the engines that share it."""
    return letters_only(fold(text))
