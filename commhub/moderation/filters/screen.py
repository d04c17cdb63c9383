"""The hub's filters together: engines per language, curated data files shipped in the
package (lists/<lang>.txt), the operator's hub list (a file), and per-room lists.

`Screen.find` gives the hits in one text in one language, less those inside a word an
allow list names (what an engine over-matches, said honestly in the data files).
`load_screen` builds it; it imports the engines and reads their data: call it off the loop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from .base import Filter, Hit
from .wordlist import ListFile, Within, WordList, load_list, parse_list


def data_lists() -> dict[str, ListFile]:
    """The curated lists shipped with commhub, by language."""
    out = {}
    root = resources.files("commhub.moderation.filters") / "lists"
    for entry in root.iterdir():
        if entry.name.endswith(".txt"):
            out[entry.name.removesuffix(".txt")] = parse_list(entry.read_text("utf-8"))
    return out


def lists_filters(name: str, lf: ListFile, default: str | None = None) -> list[WordList]:
    """One WordList per language section of a list file (`*` or `default`: as given)."""
    out = []
    for scope, terms in lf.terms.items():
        lang = default if scope == "*" else scope
        out.append(WordList(name, terms, languages=None if lang in (None, "*") else {lang}))
    return out


@dataclass(frozen=True)
class RoomList:
    """A room's own list (admin API): terms in every language, and words it allows."""

    words: tuple[str, ...]
    allowed: tuple[str, ...]
    terms: WordList
    allow: WordList | None

    @classmethod
    def build(cls, words: Sequence[str], allowed: Sequence[str] = ()) -> RoomList:
        allow = WordList("room-list:allow", allowed) if allowed else None
        return cls(tuple(words), tuple(allowed), WordList("room-list", words), allow)


class Screen:
    def __init__(self, filters: Sequence[Filter], allow: Mapping[str, Sequence[str]]) -> None:
        self.filters = list(filters)
        self._allow = {lang: WordList("allow", words) for lang, words in allow.items() if words}
        self._every = self._allow.pop("*", None)

    def languages(self) -> dict[str, list[str]]:
        """Engine names per language they are dedicated to (for logs and docs)."""
        out: dict[str, list[str]] = {}
        for f in self.filters:
            langs = getattr(f, "languages", None)
            for lang in sorted(langs) if langs else ["*"]:
                out.setdefault(lang, []).append(f.name)
        return out

    def find(self, text: str, lang: str, room: RoomList | None = None) -> list[Hit]:
        filters = self.filters if room is None else [*self.filters, room.terms]
        hits: list[Hit] = []
        judged: list[Hit] = []  # from contextual engines: allow lists do not overrule them
        for f in filters:
            if f.serves(lang):
                (judged if getattr(f, "contextual", False) else hits).extend(f.find(text, lang))
        if not hits:
            return judged
        allow = (self._allow.get(lang), self._every, room.allow if room else None)
        allowed = Within(
            (a.start, a.end) for w in allow if w is not None for a in w.find(text, lang)
        )
        kept = [h for h in hits if not allowed(h.start, h.end)]
        return kept + judged


def load_screen(*, wordlist: Path | None = None, model_threshold: float | None = 0.9) -> Screen:
    """Every engine this hub runs (blocking: imports, joblib, files)."""
    from .english import ProfanityModel, better_profanity_list
    from .korean import KorcenFilter

    data = data_lists()
    hub = load_list(wordlist) if wordlist is not None else None
    filters: list[Filter] = [KorcenFilter(), better_profanity_list()]
    if model_threshold is not None:
        filters.append(ProfanityModel(model_threshold))
    for lang, lf in sorted(data.items()):
        filters += lists_filters(f"list:{lang}", lf, default=lang)
    allow: dict[str, list[str]] = {}
    for lang, lf in data.items():
        for scope, words in lf.allow.items():
            allow.setdefault(lang if scope == "*" else scope, []).extend(words)
    if hub is not None:
        filters += lists_filters("hub-list", hub)
        for scope, words in hub.allow.items():
            allow.setdefault(scope, []).extend(words)
    return Screen(filters, allow)
