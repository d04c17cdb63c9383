"""A room's transcript as WebVTT, SubRip, JSON or plain text, in one language or two.

Input is the Store's `transcript(room)` rows: `participant, identity, name, lang, start, end,
ts, text, translations {lang: text}, kind ("caption" | "chat")`, with `start`/`end` in Unix
seconds (a chat line's `end` may equal its `start`). Output times are seconds since the
room's first line. With `lang`, each line is shown in that language where a translation
exists, else as said and marked `[xx]` (its own language); `bilingual` shows the original
with the translation beneath.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from commhub.rooms import base_language
from commhub.timecode import timecode

Format = Literal["vtt", "srt", "json", "txt"]
FORMATS: tuple[Format, ...] = ("vtt", "srt", "json", "txt")
CONTENT_TYPES: dict[Format, str] = {
    "vtt": "text/vtt",
    "srt": "application/x-subrip",
    "json": "application/json",
    "txt": "text/plain",
}
MIN_CUE = 0.5  # seconds a cue is shown at least (a zero-length cue is never displayed)
CHAT_CUE = 3.0  # seconds a chat line is shown (chat has no duration of its own)
_BLANK_LINES = re.compile(r"\n\s*\n+")
SRT_GUARD = "\u2060"  # before a SubRip text line that starts with a digit
_DIGIT_FIRST = re.compile(r"\s*[0-9]")
_SURROGATES = re.compile("[\ud800-\udfff]")
_VTT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})


@dataclass(frozen=True)
class Cue:
    """One line of the transcript as it is shown."""

    start: float  # seconds since the room's first line
    end: float
    at: float  # Unix time the line started
    kind: str
    participant: str
    identity: str
    name: str
    lang: str  # the language it was said (or written) in
    text: str  # what was said
    shown_lang: str  # the language of `shown`
    shown: str  # `text`, or its translation into the language asked for
    translation: str | None  # the translation into the language asked for, if there is one
    untranslated: bool  # a language was asked for, the line is in another and has none


def cues(rows: Iterable[Mapping[str, Any]], lang: str | None = None) -> list[Cue]:
    """The rows in start order, timed from the first, each in `lang` where it can be."""
    spans = [(_start(r), r) for r in rows]
    spans.sort(key=lambda s: s[0])
    origin = spans[0][0] if spans else 0.0
    want = base_language(lang) if lang else None  # translations are kept per base language
    made: list[Cue] = []
    for at, row in spans:
        start = at - origin
        end = _end(row, at) - origin
        own = str(row.get("lang") or "")
        text = _clean(str(row.get("text") or ""))
        translations = row.get("translations") or {}
        foreign = want is not None and want != base_language(own)
        translated = translations.get(want) if foreign else None
        translation = _clean(translated) if isinstance(translated, str) and translated else None
        made.append(
            Cue(
                start=start,
                end=max(end, start + MIN_CUE),
                at=at,
                kind=str(row.get("kind") or "caption"),
                participant=str(row.get("participant") or ""),
                identity=str(row.get("identity") or ""),
                name=_one_line(str(row.get("name") or row.get("identity") or "")),
                lang=own,
                text=text,
                shown_lang=lang if translation is not None and lang else own,
                shown=translation if translation is not None else text,
                translation=translation,
                untranslated=foreign and translation is None,
            )
        )
    return made


def render(
    rows: Iterable[Mapping[str, Any]],
    fmt: Format,
    *,
    lang: str | None = None,
    bilingual: bool = False,
    room: str = "",
) -> str:
    """The transcript of `rows` in `fmt` (see the module's docstring)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    made = cues(rows, lang)
    if fmt == "vtt":
        return vtt(made, bilingual=bilingual, room=room, lang=lang)
    if fmt == "srt":
        return srt(made, bilingual=bilingual)
    if fmt == "json":
        return as_json(made, room=room, lang=lang, bilingual=bilingual)
    return txt(made, bilingual=bilingual)


def vtt(
    made: list[Cue], *, bilingual: bool = False, room: str = "", lang: str | None = None
) -> str:
    """WebVTT: one cue per line, the speaker as a voice span, each text in a `lang` span."""
    head = "WEBVTT"
    if room:  # the header line's text may not contain "-->"; room names cannot
        head += f" - {room}" + (f" ({lang})" if lang else "")
    out = [head + "\n"]
    for i, c in enumerate(made, 1):
        body = "\n".join(
            f"<lang {_vtt_tag(code)}>{_vtt_text(text)}</lang>"
            for code, text in _shown(c, bilingual)
        )
        out.append(f"\n{i}\n{timecode(c.start, '.')} --> {timecode(c.end, '.')}\n")
        out.append(f"<v {_vtt_text(c.name)}>{body}</v>\n")
    return "".join(out)


def srt(made: list[Cue], *, bilingual: bool = False) -> str:
    """SubRip: cues numbered from 1 without gaps, "Name: text", no blank line inside a cue."""
    out = []
    for i, c in enumerate(made, 1):
        lines = [text for _, text in _shown(c, bilingual)]
        lines[0] = f"{c.name}: {lines[0]}"
        lines = [_srt_text(x) for x in lines]
        out.append(
            f"{i}\n{timecode(c.start, ',')} --> {timecode(c.end, ',')}\n"
            + "\n".join(lines)
            + "\n\n"
        )
    return "".join(out)


def txt(made: list[Cue], *, bilingual: bool = False) -> str:
    """Plain text: "[hh:mm:ss] Name: text", a translation beneath, indented."""
    out = []
    for c in made:
        shown = _shown(c, bilingual)
        out.append(f"[{timecode(c.start, '.')[:8]}] {c.name}: {_indent(shown[0][1])}\n")
        out.extend(f"    {_indent(text)}\n" for _, text in shown[1:])
    return "".join(out)


def as_json(
    made: list[Cue], *, room: str = "", lang: str | None = None, bilingual: bool = False
) -> str:
    lines = []
    for c in made:
        line: dict[str, Any] = {
            "kind": c.kind,
            "participant": c.participant,
            "identity": c.identity,
            "name": c.name,
            "start": round(c.start, 3),
            "end": round(c.end, 3),
            "at": round(c.at, 3),
            "lang": c.lang,
            "text": c.text,
        }
        if lang:
            line["shown"] = {"lang": c.shown_lang, "text": c.shown}
            line["translated"] = c.translation is not None
            line["untranslated"] = c.untranslated
        lines.append(line)
    doc = {
        "room": room,
        "lang": lang,
        "bilingual": bilingual,
        "started_at": round(made[0].at, 3) if made else None,
        "lines": lines,
    }
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


def _shown(c: Cue, bilingual: bool) -> list[tuple[str, str]]:
    """(language, text) pairs to show for a cue: one, or the original and its translation."""
    if bilingual and c.translation is not None:
        return [(c.lang, c.text), (c.shown_lang, c.translation)]
    if c.untranslated:
        return [(c.lang, f"[{c.lang}] {c.text}")]
    return [(c.shown_lang, c.shown)]


def _start(row: Mapping[str, Any]) -> float:
    for key in ("start", "ts"):
        value = row.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    return 0.0


def _end(row: Mapping[str, Any], start: float) -> float:
    if row.get("kind") == "chat":
        return start + CHAT_CUE
    value = row.get("end")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > start:
        return float(value)
    return start


def _clean(text: str) -> str:
    """No blank line inside a cue (it would end the cue), no surrounding whitespace."""
    text = _encodable(text).replace("\r\n", "\n").replace("\r", "\n").strip()
    return _BLANK_LINES.sub("\n", text)


def _encodable(text: str) -> str:
    """Lone surrogates (which the hub refuses at its edge anyway) as U+FFFD."""
    return _SURROGATES.sub("\ufffd", text)


def _one_line(text: str) -> str:
    return " ".join(_encodable(text).split()) or "?"


def _indent(text: str) -> str:
    return text.replace("\n", "\n    ")


def _vtt_text(text: str) -> str:
    """Cue text escaped: `&`, `<`, `>` as entities (which also makes any `-->` harmless)."""
    return text.translate(_VTT_ESCAPES)


def _srt_text(text: str) -> str:
    """SubRip has no escapes, and parsers take a number line followed by a line starting with
    a time for the next cue: a word joiner (invisible) before each line that starts with a
    digit keeps the text as it reads and the cue whole."""
    return "\n".join(SRT_GUARD + x if _DIGIT_FIRST.match(x) else x for x in text.split("\n"))


def _vtt_tag(code: str) -> str:
    """A language tag as a `lang` span annotation (tags never hold these, but be sure)."""
    return _vtt_text(code).replace(" ", "") or "und"
