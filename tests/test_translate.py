"""The service over both real engines: routing, preferences, failures, the CLI helper."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from commhub.translate import (
    ApertiumTranslator,
    ArgosTranslator,
    TranslationError,
    TranslationService,
    argos_dir,
    install_argos_package,
    translate_cli,
)
from commhub.translate.cache import TranslationCache, normalise
from commhub.translate.languages import to_iso1, to_iso3
from tests.helpers import translate as translate_helpers

argos_archives = translate_helpers.argos_archives  # the session fixture, used by name

MODES = translate_helpers.APERTIUM_MODES
needs_apertium = translate_helpers.needs_apertium


@pytest.fixture
def models(tmp_path: Path, argos_archives: dict[str, Path]) -> Path:
    for pair in ("en-es", "en-yy"):
        install_argos_package(argos_archives[pair], tmp_path, progress=False)
    return tmp_path


def both(models: Path, **kw: object) -> TranslationService:
    engines = [ArgosTranslator(argos_dir(models), max_decoding_length=16), ApertiumTranslator()]
    return TranslationService(engines, registry=CollectorRegistry(), **kw)  # type: ignore[arg-type]


def calls(svc: TranslationService, engine: str) -> float:
    name = "commhub_translation_engine_calls_total"
    return svc.metrics.registry.get_sample_value(name, {"engine": engine}) or 0.0


def test_language_codes() -> None:
    assert [to_iso1(c) for c in ("eng", "spa", "cat", "fra", "por", "en-US", "pt_BR", "ko")] == [
        "en", "es", "ca", "fr", "pt", "en", "pt", "ko",
    ]  # fmt: skip
    assert [to_iso3(c) for c in ("en", "es", "ca", "fr", "pt", "eng")] == [
        "eng", "spa", "cat", "fra", "por", "eng",
    ]  # fmt: skip


def test_cache_is_lru_on_normalised_text() -> None:
    assert normalise("  Hello \t  world \n  again  ") == "Hello world\nagain"
    cache = TranslationCache(2)
    cache.put(("e", "en", "es", "a"), "A")
    cache.put(("e", "en", "es", "b"), "B")
    assert cache.get(("e", "en", "es", "a")) == "A"  # a is now the most recent
    cache.put(("e", "en", "es", "c"), "C")
    assert cache.get(("e", "en", "es", "b")) is None and len(cache) == 2
    assert (cache.hits, cache.misses) == (1, 1)


@needs_apertium
async def test_best_engine_first_and_preferences(models: Path) -> None:
    auto = both(models)
    preferred = both(models, preferences={"eng-spa": "apertium", "en-yy": "apertium"})
    try:
        assert auto.engine_for("en", "es") == "argos"  # neural beats rule-based
        assert auto.engine_for("es", "en") == "apertium"  # only Apertium has it
        assert auto.engine_for("es", "yy") == "apertium+argos via en"
        assert auto.matrix()[("es", "yy")] == "apertium+argos via en"
        assert preferred.engine_for("en", "es") == "apertium"
        assert preferred.engine_for("en", "yy") == "argos"  # preference for a missing pair ignored
        result = await preferred.translate("Where is the city hall?", "en", "es")
        assert (result.engine, result.status) == ("apertium", "ok") and "ciudad" in result.text
        pivot = await auto.translate("¿Dónde está el ayuntamiento?", "es", "yy")
        assert (pivot.engine, pivot.status) == ("apertium+argos via en", "ok"), pivot.detail
        assert pivot.text.strip()
    finally:
        await auto.aclose()
        await preferred.aclose()


@needs_apertium
async def test_translate_many_one_call_per_engine_pair(models: Path) -> None:
    svc = both(models, preferences={"en-es": "apertium"})
    try:
        out = await svc.translate_many("Good morning.", "en", ["es", "yy", "es", "yy", "en", "es"])
    finally:
        await svc.aclose()
    assert list(out) == ["es", "yy", "en"]
    assert out["es"].text.startswith("Buenos") and out["yy"].status == "ok"
    assert (calls(svc, "apertium"), calls(svc, "argos")) == (1, 1)


@needs_apertium
async def test_pivot_leg_is_shared_and_cached(models: Path) -> None:
    svc = both(models)
    try:
        await svc.translate_many("Buenos días.", "es", ["yy", "en"])
        # es->en ran once for both targets; asking again is all cache.
        assert calls(svc, "apertium") == 1
        again = await svc.translate("Buenos días.", "es", "yy")
        assert again.cached and (calls(svc, "apertium"), calls(svc, "argos")) == (1, 1)
    finally:
        await svc.aclose()


@needs_apertium
async def test_timeout_is_failed_with_original_text() -> None:
    # A cold pipeline needs ~0.1 s to start; 1 ms cannot be enough.
    svc = TranslationService([ApertiumTranslator()], registry=CollectorRegistry(), timeout=0.001)
    try:
        result = await svc.translate("Good morning.", "en", "es")
        assert (result.status, result.text) == ("failed", "Good morning.")
        assert "timed out" in result.detail
        svc.timeout = 10.0
        ok = await svc.translate("Good morning.", "en", "es")  # the call it shared went on
        assert ok.status == "ok" and ok.text.startswith("Buenos")
    finally:
        await svc.aclose()


async def test_event_loop_stays_free(models: Path) -> None:
    """Engine calls run in worker threads: the loop keeps ticking while Argos decodes."""
    eng = ArgosTranslator(argos_dir(models), max_decoding_length=256)
    svc = TranslationService([eng], registry=CollectorRegistry())
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    try:
        texts = [f"a long caption number {i} about the weather" for i in range(24)]
        results = await asyncio.gather(*(svc.translate(t, "en", "es") for t in texts))
    finally:
        done.set()
        await task
        await svc.aclose()
    assert all(r.status == "ok" for r in results)
    assert len(gaps) > 3 and max(gaps) < 0.25, max(gaps)


async def test_translate_cli(models: Path) -> None:
    out = await translate_cli("Where is the city hall?", "en", "es", models)
    assert isinstance(out, str) and out.strip()
    assert await translate_cli("same", "en", "en", models) == "same"
    with pytest.raises(TranslationError, match="unavailable: no en->ko"):
        await translate_cli("Hello", "en", "ko", models)
