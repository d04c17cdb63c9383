"""`commhub moderation check`: what the text filters make of a line (for trying a list)."""

from __future__ import annotations

import sys
from pathlib import Path

from commhub.config import Settings
from commhub.rooms import base_language

from .filters import load_screen
from .text import mask, rules_of


def check_cli(text: str, lang: str, settings: Settings, wordlist: str | None = None) -> int:
    """Print the text as readers of `lang` would get it under `mask`, and the rules that
    fired on stderr; exit status 0 when nothing was caught, 3 when something was."""
    path = wordlist if wordlist is not None else settings.moderation_wordlist
    try:
        screen = load_screen(
            wordlist=Path(path) if path else None,
            model_threshold=settings.moderation_score or None,
        )
    except (OSError, UnicodeDecodeError) as exc:
        print(f"commhub moderation: cannot read the list {path}: {exc}", file=sys.stderr)
        return 2
    hits = screen.find(text, base_language(lang))
    print(mask(text, hits))
    if hits:
        print(f"caught by: {', '.join(rules_of(hits))}", file=sys.stderr)
    return 3 if hits else 0
