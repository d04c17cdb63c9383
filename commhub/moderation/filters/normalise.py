"""Folding text for matching, with a map back to the original characters.

What an obfuscator changes, folding undoes: case, width and styled letters (NFKC),
accents, zero-width and other format characters, Hangul typed as separate jamo
(ㅅㅣㅂㅏㄹ -> 시발), and leetspeak digits and symbols inside words. Every folded character
remembers the [start, end) of the original characters it came from, so a match on the
folded text masks exactly those characters of what was sent.
"""

from __future__ import annotations

import itertools
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

# Hangul Compatibility Jamo (what keyboards type) -> index as choseong / jungseong /
# jongseong in the syllable formula (U+AC00 + (L*21 + V)*28 + T).
_L = "ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ"
_V = "ㅏㅐㅑㅒㅓㅔㅕㅖㅗㅘㅙㅚㅛㅜㅝㅞㅟㅠㅡㅢㅣ"
_T = " ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ"  # index 0: no final
_LEAD = {c: i for i, c in enumerate(_L)}
_VOWEL = {c: i for i, c in enumerate(_V)}
_TAIL = {c: i for i, c in enumerate(_T) if i}
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
_SYMBOLS = frozenset(c for c in LEET if not c.isalnum())


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
    """`text` folded; `spans[i]` is the [start, end) of the original behind text[i]."""

    text: str
    spans: tuple[tuple[int, int], ...]

    def origin(self, start: int, end: int) -> tuple[int, int]:
        """The original [start, end) behind folded [start, end)."""
        return self.spans[start][0], self.spans[end - 1][1]


def fold(text: str) -> Folded:
    chars: list[str] = []
    spans: list[tuple[int, int]] = []
    for i, c in enumerate(text):
        for f in _fold_char(c):
            chars.append(f)
            spans.append((i, i + 1))
    _compose_jamo(chars, spans)
    return Folded("".join(chars), tuple(spans))


def _compose_jamo(chars: list[str], spans: list[tuple[int, int]]) -> None:
    """ㅅㅣㅂㅏㄹ -> 시발 in place (spaces between the jamo are not skipped: ㅅ ㅂ stays)."""
    i = 0
    while i < len(chars) - 1:
        lead, vowel = _LEAD.get(chars[i]), _VOWEL.get(chars[i + 1])
        if lead is None or vowel is None:
            i += 1
            continue
        end = i + 2
        tail = 0
        # a following consonant closes the syllable unless a vowel comes after it
        if end < len(chars) and chars[end] in _TAIL:
            nxt = chars[end + 1] if end + 1 < len(chars) else ""
            if nxt not in _VOWEL:
                tail = _TAIL[chars[end]]
                end += 1
        syllable = chr(0xAC00 + (lead * 21 + vowel) * 28 + tail)
        chars[i:end] = [syllable]
        spans[i:end] = [(spans[i][0], spans[end - 1][1])]
        i += 1


def word_char(c: str) -> bool:
    return c.isalnum() or c in _SYMBOLS or c == "*"


def deleet(token: str) -> str:
    """Leetspeak letters back (only inside a token that has at least one letter)."""
    if not any(c.isalpha() for c in token):
        return token
    return "".join(LEET.get(c, c) for c in token)


def squeeze(token: str) -> str:
    """Runs of one letter cut to one: fuuuuck -> fuck (used only on stretched tokens)."""
    out: list[str] = []
    for c in token:
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def stretched(token: str) -> bool:
    """Three or more of one letter in a row: a deliberate stretch, not spelling."""
    run = 1
    for a, b in itertools.pairwise(token):
        run = run + 1 if a == b else 1
        if run >= 3:
            return True
    return False


def letters_only(f: Folded) -> Folded:
    """Only letters (what spacing, punctuation and digits split apart comes back together):
    for substring matching of Hangul and CJK terms."""
    keep = [i for i, c in enumerate(f.text) if c.isalpha()]
    return Folded("".join(f.text[i] for i in keep), tuple(f.spans[i] for i in keep))
