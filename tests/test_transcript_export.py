"""Transcript rendering: every format read back by a real parser (webvtt-py, srt, json)."""

from __future__ import annotations

import html
import json
from datetime import timedelta
from typing import Any

import pytest
import srt
import webvtt
from hypothesis import given, settings
from hypothesis import strategies as st

from commhub.store import export

T0 = 1_795_000_000.0


def row(
    kind: str, who: str, start: float, text: str, lang: str = "ko", **kw: Any
) -> dict[str, Any]:
    return {
        "kind": kind,
        "participant": f"PA_{who}xxxxxx",
        "identity": who,
        "name": kw.pop("name", who.title()),
        "lang": lang,
        "start": T0 + start,
        "end": T0 + kw.pop("end", start),
        "ts": T0 + start,
        "text": text,
        "translations": kw.pop("translations", {}),
    }


ROWS = [
    # out of order on purpose: the export sorts by start
    row("chat", "bob", 5.0, "where is <the> hall? a && b --> c", lang="en",
        translations={"ko": "홀은 어디에 있나요?"}),
    row("caption", "minji", 1.25, "안녕하세요 서울 시청 입니다", end=3.5,
        translations={"en": "Hello, this is Seoul City Hall", "es": None}),
    row("caption", "minji", 7.0, "감사합니다", end=7.8),  # no translation at all
]  # fmt: skip


def vtt_cues(text: str) -> list[webvtt.Caption]:
    return list(webvtt.from_string(text))


def test_vtt_has_voices_relative_times_and_escapes() -> None:
    out = export.render(ROWS, "vtt", room="desk-1")
    assert out.startswith("WEBVTT - desk-1\n")
    cues = vtt_cues(out)
    assert [c.voice for c in cues] == ["Minji", "Bob", "Minji"]
    assert [(c.start, c.end) for c in cues] == [
        ("00:00:00.000", "00:00:02.250"),  # from the room's first line
        ("00:00:03.750", "00:00:06.750"),  # chat: shown for export.CHAT_CUE seconds
        ("00:00:05.750", "00:00:06.550"),
    ]
    texts = [html.unescape(c.text) for c in cues]
    assert texts == [ROWS[1]["text"], ROWS[0]["text"], ROWS[2]["text"]]
    assert "-->" not in "".join(c.raw_text for c in cues)  # escaped in the cue payload
    assert [c.identifier for c in cues] == ["1", "2", "3"]


def test_vtt_in_a_language_marks_lines_without_translation() -> None:
    cues = vtt_cues(export.render(ROWS, "vtt", lang="en"))
    texts = [html.unescape(c.text) for c in cues]
    assert texts == [
        "Hello, this is Seoul City Hall",
        ROWS[0]["text"],  # already English
        "[ko] 감사합니다",  # no English: the original, marked
    ]
    assert "<lang en>" in cues[0].raw_text and "<lang ko>" in cues[2].raw_text


def test_vtt_bilingual_gives_original_and_translation() -> None:
    cues = vtt_cues(export.render(ROWS, "vtt", lang="en", bilingual=True))
    assert (
        html.unescape(cues[0].text) == "안녕하세요 서울 시청 입니다\nHello, this is Seoul City Hall"
    )
    assert cues[0].raw_text.count("<lang ") == 2
    assert html.unescape(cues[2].text) == "[ko] 감사합니다"


def test_srt_numbers_from_one_and_parses() -> None:
    out = export.render(ROWS, "srt", lang="ko", bilingual=True)
    subs = list(srt.parse(out))
    assert [s.index for s in subs] == [1, 2, 3]
    assert subs[0].start == timedelta(0) and subs[0].end == timedelta(seconds=2.25)
    assert subs[1].start == timedelta(seconds=3.75)
    assert subs[0].content == "Minji: 안녕하세요 서울 시청 입니다"
    assert subs[1].content == f"Bob: {ROWS[0]['text']}\n홀은 어디에 있나요?"
    assert srt.compose(subs) == out  # nothing a strict composer would have to repair


def test_blank_lines_cannot_split_a_cue() -> None:
    rows = [row("chat", "eve", 0, "one\n\n2\n00:00:00,000 --> 00:00:09,000\n\r\n  \nthree")]
    subs = list(srt.parse(export.render(rows, "srt")))
    assert len(subs) == 1
    guard = export.SRT_GUARD
    assert subs[0].content == f"Eve: one\n{guard}2\n{guard}00:00:00,000 --> 00:00:09,000\nthree"
    cues = vtt_cues(export.render(rows, "vtt"))
    assert len(cues) == 1
    assert html.unescape(cues[0].text) == "one\n2\n00:00:00,000 --> 00:00:09,000\nthree"


def test_names_are_escaped_in_the_voice_span() -> None:
    rows = [row("chat", "eve", 0, "hi", name="<b>Eve & co</b>\nline")]
    out = export.render(rows, "vtt")
    assert "<v &lt;b&gt;Eve &amp; co&lt;/b&gt; line>" in out
    assert html.unescape(vtt_cues(out)[0].voice) == "<b>Eve & co</b> line"


def test_json_carries_every_field_and_the_shown_language() -> None:
    doc = json.loads(export.render(ROWS, "json", lang="en", room="desk-1"))
    assert (doc["room"], doc["lang"], doc["started_at"]) == ("desk-1", "en", T0 + 1.25)
    first, chat, last = doc["lines"]
    assert first["kind"] == "caption" and first["identity"] == "minji"
    assert (first["start"], first["end"], first["at"]) == (0.0, 2.25, T0 + 1.25)
    assert first["shown"] == {"lang": "en", "text": "Hello, this is Seoul City Hall"}
    assert first["translated"] and not first["untranslated"]
    assert chat["shown"]["lang"] == "en" and not chat["translated"] and not chat["untranslated"]
    assert last["untranslated"] and last["shown"] == {"lang": "ko", "text": "감사합니다"}
    assert "shown" not in json.loads(export.render(ROWS, "json"))["lines"][0]


def test_txt_is_one_line_per_utterance() -> None:
    out = export.render(ROWS, "txt", lang="en", bilingual=True)
    assert out.splitlines() == [
        "[00:00:00] Minji: 안녕하세요 서울 시청 입니다",
        "    Hello, this is Seoul City Hall",
        f"[00:00:03] Bob: {ROWS[0]['text']}",
        "[00:00:05] Minji: [ko] 감사합니다",
    ]


def test_an_empty_transcript_is_still_valid() -> None:
    assert vtt_cues(export.render([], "vtt")) == []
    assert list(srt.parse(export.render([], "srt"))) == []
    assert json.loads(export.render([], "json"))["lines"] == []
    assert export.render([], "txt") == ""


def test_lone_surrogates_never_reach_the_output() -> None:
    rows = [row("chat", "eve", 0, "bad \udc80 text", name="E\ud800ve")]
    for fmt in export.FORMATS:
        export.render(rows, fmt).encode("utf-8")  # raises if one got through


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        export.render(ROWS, "doc")  # type: ignore[arg-type]


texts = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(texts, texts), min_size=1, max_size=6))
def test_any_text_keeps_one_cue_per_line(said: list[tuple[str, str]]) -> None:
    rows = [
        row("chat" if i % 2 else "caption", "p", i * 2.0, text, end=i * 2.0 + 1, name=name)
        for i, (text, name) in enumerate(said)
    ]
    made = export.cues(rows)
    subs = list(srt.parse(export.render(rows, "srt")))
    assert [s.index for s in subs] == list(range(1, len(rows) + 1))
    unguarded = [s.content.replace(export.SRT_GUARD, "") for s in subs]
    assert unguarded == [f"{c.name}: {c.shown}".replace(export.SRT_GUARD, "") for c in made]
    cues = vtt_cues(export.render(rows, "vtt"))
    assert [html.unescape(c.text) for c in cues] == [c.shown for c in made]
    assert [html.unescape(c.voice) for c in cues] == [c.name for c in made]


def test_regional_tags_read_their_base_language() -> None:
    """Readers are grouped, and translations kept, by base language: en-GB reads "en"."""
    cues = vtt_cues(export.render(ROWS, "vtt", lang="en-GB"))
    assert [html.unescape(c.text) for c in cues] == [
        "Hello, this is Seoul City Hall",
        ROWS[0]["text"],  # English, though not British: not marked
        "[ko] 감사합니다",
    ]
