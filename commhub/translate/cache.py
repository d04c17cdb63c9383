"""LRU cache of finished translations, shared by every room of the process."""

from __future__ import annotations

import unicodedata
from collections import OrderedDict

from .text import clean_text

CacheKey = tuple[str, str, str, str]  # (engine, source, target, normalised text)


def normalise(text: str) -> str:
    """Same words, same key: safe code points only (clean_text), NFC, no edge blanks, inner
    runs of blanks collapsed per line. Used before the cache key, so before every engine."""
    text = unicodedata.normalize("NFC", clean_text(text))
    return "\n".join(" ".join(line.split()) for line in text.strip().splitlines())


class TranslationCache:
    """Plain LRU. Used only from the event loop thread, so it needs no lock."""

    def __init__(self, size: int) -> None:
        self.size = max(0, size)
        self.hits = 0
        self.misses = 0
        self._data: OrderedDict[CacheKey, str] = OrderedDict()

    def get(self, key: CacheKey) -> str | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
            return None
        self._data.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: CacheKey, value: str) -> None:
        if self.size == 0:
            return
        self._data[key] = value
        self._data.move_to_end(key)
        while len(self._data) > self.size:
            self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        self._data.clear()
