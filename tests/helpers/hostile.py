"""Hostile chats of the largest size the protocol takes: what an abuser or a fuzzer pastes
to make the text filters slow (long runs of jamo, digits between syllables, separators that
alternate, letters spelled out, leetspeak and stars, format characters inside words)."""

from __future__ import annotations

import json
from importlib import resources


def max_chat_chars() -> int:
    """The longest chat text the client schema allows (characters)."""
    schema = json.loads(
        (resources.files("commhub") / "schemas" / "client" / "chat.json").read_text("utf-8")
    )
    return int(schema["properties"]["text"]["maxLength"])


MAX_CHAT = max_chat_chars()


def _fill(unit: str) -> str:
    """unit repeated to exactly MAX_CHAT characters."""
    return (unit * (MAX_CHAT // len(unit) + 1))[:MAX_CHAT]


# (name, text, languages whose filters catch abuse in it: its copies there are masked)
HOSTILE: list[tuple[str, str, frozenset[str]]] = [
    ("jamo typed apart", _fill("ㅅㅣㅂㅏㄹ"), frozenset({"ko"})),
    ("a run of one jamo", _fill("ㅅ"), frozenset()),
    ("conjoining jamo", _fill("\u1109\u1175\u1107\u1161\u11af "), frozenset({"ko"})),
    ("digits between syllables", _fill("시1발2병3신4 "), frozenset({"ko"})),
    ("clean syllables and digits", _fill("가1나2다3라4 "), frozenset()),
    ("alternating separators", _fill("f.u-c.k-"), frozenset()),
    ("separated letters then words", _fill("f.u.c.k you "), frozenset({"en"})),
    ("letters spelled out", _fill("s h i t "), frozenset()),
    ("spelled out then words", _fill("f u c k off "), frozenset({"en"})),
    ("stars for letters", _fill("f*ck sh*t "), frozenset({"en"})),
    ("stars alone", _fill("*"), frozenset()),
    ("zero-width inside words", _fill("bas\u200btard 시\u200b발 "), frozenset({"ko", "en"})),
    ("stretched", _fill("fuuuuuuck "), frozenset({"en"})),
    ("one letter", _fill("x"), frozenset()),
    ("mixed scripts", _fill("병신 bastard idiota 1 ㅂ @ "), frozenset({"ko", "en", "es"})),
]
HOSTILE_CHATS = [text for _, text, _ in HOSTILE]
