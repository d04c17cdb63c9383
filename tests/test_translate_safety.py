"""Hostile text and load: what reaches an engine is clean, and waiting work is bounded."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from commhub.translate import (
    ApertiumTranslator,
    ArgosTranslator,
    TranslationService,
    argos_dir,
    install_argos_package,
)
from commhub.translate.cache import normalise
from commhub.translate.text import REPLACEMENT, clean_text
from tests.helpers import translate as translate_helpers

argos_archives = translate_helpers.argos_archives  # the session fixture, used by name

MODES = translate_helpers.APERTIUM_MODES
needs_apertium = translate_helpers.needs_apertium

NONCHARACTERS = ["\ufdd0", "\ufdef", "\ufffe", "\uffff", "\U0001fffe", "\U0010ffff"]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udfff"]
CONTROLS = ["\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]
BAD = set(NONCHARACTERS + SURROGATES + CONTROLS)


@pytest.mark.parametrize("char", NONCHARACTERS + SURROGATES)
def test_noncharacters_and_unpaired_surrogates_become_replacement(char: str) -> None:
    assert clean_text(f"a{char}b") == f"a{REPLACEMENT}b"


@pytest.mark.parametrize("char", CONTROLS)
def test_controls_become_spaces(char: str) -> None:
    assert clean_text(f"a{char}b") == "a b"


def test_newline_tab_and_ordinary_text_are_kept() -> None:
    kept = "Line one\n\tLine two: 안녕하세요 ¿Dónde? 😀 \ufffd \ufdcf \ufdf0 \ufffd \u2028 [@1] \\"
    assert clean_text(kept) == kept
    assert clean_text("a\r\nb\rc") == "a\nb\nc"  # CR and CRLF are line breaks
    assert clean_text("") == ""
    # A surrogate pair arriving as one code point (the JSON "\ud83d\ude00") is an emoji.
    assert clean_text("\U0001f600") == "\U0001f600"


def test_cache_key_text_is_clean() -> None:
    """The service keys its cache (and feeds engines) with normalise(): clean first."""
    dirty = " x\uffff\ud800 \x1b[31m red\r\nnext\tline "
    key = normalise(dirty)
    assert key == f"x{REPLACEMENT}{REPLACEMENT} [31m red\nnext line"
    assert not BAD & set(key)
    assert normalise(key) == key


@pytest.fixture
def argos_models(tmp_path: Path, argos_archives: dict[str, Path]) -> Path:
    install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    return tmp_path


def test_argos_engine_cleans_what_it_is_given(argos_models: Path) -> None:
    """A lone surrogate cannot be UTF-8-encoded for SentencePiece: cleaned, it translates."""
    eng = ArgosTranslator(argos_dir(argos_models), max_decoding_length=8)
    try:
        out = eng.translate_batch(["the weather \ud800 is nice\uffff today\x00"], "en", "es")
    finally:
        eng.close()
    assert len(out) == 1 and isinstance(out[0], str)


async def test_argos_through_the_service_sees_only_clean_text(argos_models: Path) -> None:
    svc = TranslationService(
        [ArgosTranslator(argos_dir(argos_models), max_decoding_length=8)],
        registry=CollectorRegistry(),
    )
    try:
        result = await svc.translate("good \ud800morning\uffff \x07all", "en", "es")
        assert result.status == "ok", result.detail
        again = await svc.translate(f"good {REPLACEMENT}morning{REPLACEMENT} all", "en", "es")
        assert again.cached and again.text == result.text  # the same clean key
        keys = list(svc.cache._data)
    finally:
        await svc.aclose()
    assert keys == [("argos", "en", "es", f"good {REPLACEMENT}morning{REPLACEMENT} all")]


def requests(svc: TranslationService, status: str) -> float:
    labels = {"engine": "apertium", "status": status}
    return svc.metrics.registry.get_sample_value("commhub_translation_requests_total", labels) or 0


@needs_apertium
@pytest.mark.parametrize("queue", [1, 4])
async def test_queue_bound_refuses_overflow_at_once(queue: int) -> None:
    """translate_queue: at most `queue` texts wait for (or are in) an engine; the rest are
    answered at once, failed (busy), counted, and nothing hangs."""
    svc = TranslationService([ApertiumTranslator()], registry=CollectorRegistry(), queue=queue)
    texts = [f"The house number {i} is big." for i in range(40)]
    try:
        results = await asyncio.wait_for(
            asyncio.gather(*(svc.translate(t, "en", "es") for t in texts)), 30
        )
        ok = [r for r in results if r.status == "ok"]
        busy = [r for r in results if r.status == "failed"]
        assert 1 <= len(ok) <= queue and len(ok) + len(busy) == len(texts)
        for r in ok:
            assert "casa" in r.text, r
        for r in busy:
            assert r.detail.startswith("translator busy") and "translate_queue" in r.detail
            assert r.text in texts  # the original stands
        assert requests(svc, "failed") == len(busy) and requests(svc, "ok") == len(ok)
        # Identical requests join the one waiting call instead of queueing beside it.
        same = await asyncio.gather(*(svc.translate("Good morning.", "en", "es") for _ in range(9)))
        assert all(r.status == "ok" and r.text == "Buenos días." for r in same), same
        # Once the queue drains, requests are served again.
        later = await svc.translate("Thank you very much.", "en", "es")
        assert (later.status, later.text) == ("ok", "Muchas gracias.")
    finally:
        await svc.aclose()
