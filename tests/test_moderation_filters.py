"""The text filters on their own: real engines (korcen, better-profanity's list,
alt-profanity-check's model), the curated lists shipped in the package, operators' lists."""

from __future__ import annotations

from pathlib import Path

import pytest

from commhub.moderation.filters import RoomList, Screen, WordList, load_screen, parse_list
from commhub.moderation.filters.english import ProfanityModel
from commhub.moderation.filters.normalise import fold
from commhub.moderation.text import mask, shared_screen
from tests.helpers.sentences import EN, ES, KO


@pytest.fixture(scope="module")
def screen() -> Screen:
    return shared_screen("", 0.9)


def masked(screen: Screen, text: str, lang: str, room: RoomList | None = None) -> str:
    return mask(text, screen.find(text, lang, room))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("시발놈아", "**놈아"),  # korcen
        ("씨발", "**"),  # korcen 1.0.3 misses it: the curated ko list has it
        ("씨 발 뭐야", "* * 뭐야"),  # spacing
        ("ㅅㅣㅂㅏㄹ 뭐야", "***** 뭐야"),  # jamo typed apart
        ("시1발", "***"),  # a digit between the syllables
        ("병.신", "***"),  # punctuation between them
        ("이 개새끼야", "이 ***야"),
        ("꺼져 이 병신아", "** 이 **아"),
    ],
)
def test_korean_insults_are_masked_however_written(
    screen: Screen, text: str, expected: str
) -> None:
    assert masked(screen, text, "ko") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("you stupid bastard", "you ****** *******"),
        ("You BASTARD", "You *******"),  # case
        ("ｂａｓｔａｒｄ", "*******"),  # full width
        ("sh1t happens", "**** happens"),  # leetspeak
        ("$hit happens", "**** happens"),
        ("b!tch", "*****"),
        ("f*ck this", "**** this"),  # a star for a letter
        ("f u c k you", "* * * * you"),  # spelled out
        ("f.u.c.k you", "******* you"),
        ("fu ck you", "** ** you"),  # split in two
        ("fuuuuck off", "******* off"),  # stretched
        ("bas\u200btard", "********"),  # a zero-width space inside
        ("you are an idiot", "you are an *****"),  # the model: not on the list
    ],
)
def test_english_insults_are_masked_however_written(
    screen: Screen, text: str, expected: str
) -> None:
    assert masked(screen, text, "en") == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("eres un idiota", "eres un ******"),
        ("eres un IDIOTA", "eres un ******"),
        ("eres un imbecil", "eres un *******"),  # without the accent
        ("hijo de puta", "**** ** ****"),  # a phrase
        ("p.u.t.a", "*******"),
        ("qué gilipollas", "qué **********"),  # a stem (gilipoll*)
        ("que coño", "que ****"),
        ("un cono de helado", "un cono de helado"),  # ñ is not n
    ],
)
def test_spanish_list_from_the_package(screen: Screen, text: str, expected: str) -> None:
    assert masked(screen, text, "es") == expected


@pytest.mark.parametrize(("lang", "sentences"), [("en", EN), ("ko", KO), ("es", ES)])
def test_ordinary_sentences_pass_untouched(screen: Screen, lang: str, sentences: list[str]) -> None:
    assert len(sentences) >= 50
    flagged = {s: [(s[h.start : h.end], h.rule) for h in hits]
               for s in sentences if (hits := screen.find(s, lang))}  # fmt: skip
    assert flagged == {}


def test_a_language_without_engines_is_not_screened_by_others(screen: Screen) -> None:
    # an English list word in a French sentence is not an English hit (per language)
    assert screen.find("le bastard de la famille", "fr") == []
    assert screen.find("bastard", "en") != []


def test_the_model_matches_alt_profanity_check() -> None:
    from profanity_check import predict_prob

    model = ProfanityModel(0.9)
    texts = ["have a nice day", "you are an idiot", "I will kill you", "what the hell", *EN[:10]]
    for text, expected in zip(texts, predict_prob(texts), strict=True):
        assert model.score(text) == pytest.approx(float(expected), abs=1e-9)


def test_the_word_list_agrees_with_better_profanity() -> None:
    from better_profanity import profanity

    from commhub.moderation.filters.english import better_profanity_list

    words = better_profanity_list()
    texts = [*EN, "you stupid bastard", "sh1t happens", "what the hell", "go to hell",
             "damn it", "you moron", "$hit", "blow job", "class assessment"]  # fmt: skip
    for text in texts:
        assert bool(words.find(text, "en")) == profanity.contains_profanity(text), text


def test_list_files_scope_terms_and_allow_words(tmp_path: Path) -> None:
    lf = parse_list("# the hub's list\nbanana\n!bananas\n[es]\nplátano # fruit\n[*]\n바나나\n")
    assert lf.terms == {"*": ["banana", "바나나"], "es": ["plátano"]}
    assert lf.allow == {"*": ["bananas"]}
    path = tmp_path / "words.txt"
    path.write_text("banana\n!banana split\n[es]\nplátano\n", "utf-8")
    s = load_screen(wordlist=path, model_threshold=None)
    assert masked(s, "a banana!", "fr") == "a ******!"
    assert masked(s, "un platano", "es") == "un *******"
    assert masked(s, "un plátano", "en") == "un plátano"  # scoped to es
    assert masked(s, "a banana split", "en") == "a banana split"  # allowed


def test_room_list_matches_in_every_language_and_allows(screen: Screen) -> None:
    room = RoomList.build(["pineapple", "파인애플", "ananas*"], ["pineapples"])
    assert masked(screen, "no PINEAPPLE here", "en", room) == "no ********* here"
    assert masked(screen, "파인애플을 먹었어요", "ko", room) == "****을 먹었어요"
    assert masked(screen, "파 인 애 플", "ko", room) == "* * * *"
    assert masked(screen, "des ananassen", "nl", room) == "des *********"
    assert masked(screen, "two pineapples", "en", room) == "two pineapples"
    assert masked(screen, "no pineapple here", "en") == "no pineapple here"  # other rooms


def test_words_that_hold_a_term_are_not_hits() -> None:
    w = WordList("t", ["ass", "cunt", "puta"])
    for text in ["Scunthorpe", "class assessment", "assassin", "disputa", "computadora"]:
        assert w.find(text, "en") == [], text
    assert [(h.start, h.end) for h in w.find("kiss my a$$", "en")] == [(8, 11)]


def test_folding_maps_back_to_what_was_sent() -> None:
    f = fold("ＡｂＣ ㅅㅣㅂㅏㄹ")
    assert f.text == "abc 시발"
    assert f.origin(4, 6) == (4, 9)


@pytest.mark.parametrize("lang", ["ko", "en", "es", "fr"])
def test_hostile_text_is_screened_within_bounds(screen: Screen, lang: str) -> None:
    odd = [
        "\u202eesrever\u202c", "e\u0301\u0301\u0301", "﷽" * 50, "ﬀ" * 100, "𝐟𝐮𝐜𝐤", "🖕🏻" * 20,
        "\ufeff\u200b\u2060", "ㅅ" * 500, "a" * 4000, "$" * 300, "*" * 300, "1" * 300,
        "x\u0000y", "\t\n\r", "ǅ", "İstanbul", "ß" * 10, "シバ 犬",
    ]  # fmt: skip
    for text in odd:
        hits = screen.find(text, lang)
        for h in hits:
            assert 0 <= h.start < h.end <= len(text), (text[:20], h)
        assert len(mask(text, hits)) == len(text)


def test_styled_letters_are_caught(screen: Screen) -> None:
    assert masked(screen, "𝐟𝐮𝐜𝐤 off", "en") == "**** off"


def test_cli_check(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    caught = run_cli("moderation", "check", "--lang", "en", "you stupid bastard")
    assert (caught.returncode, caught.stdout) == (3, "you ****** *******\n")
    assert "better-profanity" in caught.stderr
    clean = run_cli("moderation", "check", "--lang", "ko", stdin="이번 사업의 시발점은\n")
    assert (clean.returncode, clean.stdout) == (0, "이번 사업의 시발점은\n")
    words = tmp_path / "w.txt"
    words.write_text("broccoli\n", "utf-8")
    mine = run_cli("moderation", "check", "--lang", "fr", "--wordlist", str(words), "du broccoli")
    assert (mine.returncode, mine.stdout) == (3, "du ********\n")
    gone = str(tmp_path / "no")
    missing = run_cli("moderation", "check", "--lang", "fr", "--wordlist", gone, "x")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_a_run_of_one_letter_is_no_word(screen: Screen) -> None:
    # better-profanity lists "xxx": squeezed, every run of x would be it
    assert masked(screen, "0 " + "x" * 3900, "en") == "0 " + "x" * 3900
    assert masked(screen, "xxx", "en") == "***"
    assert masked(screen, "fuuuuck off", "en") == "******* off"  # a stretch still is


KORCEN_CORPUS = [
    "시발놈아", "이 개새끼야", "꺼져 이 병신아", "이번 사업의 시발점은", "미친년", "니미 씨발",
    "보g 같은", "느금마", "tq", "qt", "10발 뭐야", "www.example.com 시발", "흑형님", "좆같네",
    "안녕하세요 반갑습니다", "병신 " * 30, "ㅅㅂ", "🖕🏻", "존나 좋아", "엠창",
]  # fmt: skip


@pytest.mark.parametrize("text", KORCEN_CORPUS)
def test_korcen_patterns_agree_with_korcen(screen: Screen, text: str) -> None:
    """The engine runs korcen's pipeline once per level for every match: its first match
    is what korcen's own check reports."""
    from commhub.moderation.filters.korean import LEVELS, KorcenFilter

    engine = next(f for f in screen.filters if isinstance(f, KorcenFilter))
    k = engine._k  # korcen's module
    for level in LEVELS:
        expected = k.check_and_report_profanity_pattern(text, level)
        found = engine.matches(text, level)
        assert (found[0] if found else None) == expected, level


def test_every_hit_of_a_long_korean_text_is_masked(screen: Screen) -> None:
    text = "꺼져 이 병신아 " * 10
    assert masked(screen, text, "ko") == "** 이 **아 " * 10


@pytest.mark.parametrize("lang", ["ko", "en", "es"])
def test_hostile_long_texts_stay_in_bounds(screen: Screen, lang: str) -> None:
    from tests.helpers.hostile import HOSTILE_CHATS

    for text in HOSTILE_CHATS:
        hits = screen.find(text, lang)
        for h in hits:
            assert 0 <= h.start < h.end <= len(text), (text[:20], h)
        assert len(mask(text, hits)) == len(text)


def test_within_agrees_with_a_scan() -> None:
    import random

    from commhub.moderation.filters.wordlist import Within

    rng = random.Random(7)
    for _ in range(200):
        spans = [(s, s + rng.randint(1, 9)) for s in (rng.randint(0, 40) for _ in range(6))]
        within = Within(spans)
        for start in range(45):
            for end in range(start + 1, start + 8):
                expected = any(s <= start and end <= e for s, e in spans)
                assert within(start, end) == expected, (spans, start, end)
    assert not Within([])(0, 1)
