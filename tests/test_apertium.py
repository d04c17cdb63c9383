"""Apertium for real: the Debian eng-spa pair through one long-lived null-flush pipeline."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from commhub.translate import (
    ApertiumTranslator,
    InstallError,
    TranslationError,
    TranslationService,
    install_apertium_pair,
)
from commhub.translate.apertium import default_modes_dir, discover_modes

MODES = default_modes_dir()
pytestmark = pytest.mark.skipif(
    MODES is None or not (MODES / "eng-spa.mode").is_file(),
    reason="needs Debian packages apertium and apertium-eng-spa",
)


@pytest.fixture
async def service() -> AsyncIterator[TranslationService]:
    svc = TranslationService([ApertiumTranslator()], registry=CollectorRegistry(), max_chars=500)
    yield svc
    await svc.aclose()


def sample(svc: TranslationService, name: str, labels: dict[str, str] | None = None) -> float:
    return svc.metrics.registry.get_sample_value(name, labels or {}) or 0.0


def test_pairs_are_iso1_from_modes() -> None:
    assert {("en", "es"), ("es", "en")} <= ApertiumTranslator().pairs()
    assert all("_" not in s + t for s, t in discover_modes(MODES))  # spa-eng_US left out


@pytest.mark.parametrize(
    ("source", "target", "text", "words"),
    [
        ("en", "es", "Where is the city hall?", ["Dónde", "ciudad"]),
        ("en", "es", "The weather is nice today.", ["tiempo", "hoy"]),
        ("en", "es", "Good morning.", ["Buenos días"]),
        ("en", "es", "Thank you very much.", ["gracias"]),
        ("es", "en", "¿Dónde está el ayuntamiento?", ["city council"]),
    ],
)
async def test_known_sentences(
    service: TranslationService, source: str, target: str, text: str, words: list[str]
) -> None:
    result = await service.translate(text, source, target)
    assert (result.status, result.engine) == ("ok", "apertium"), result.detail
    for word in words:
        assert word in result.text, result.text


async def test_stream_format_characters_survive(service: TranslationService) -> None:
    result = await service.translate("It costs $5 [draft] a/b <b> @home {x} \\ ^", "en", "es")
    assert result.status == "ok", result.detail
    assert result.text.startswith("Cuesta")
    for token in ("$5", "[", "]", "/b", "<b>", "@", "{x}", "\\", "^"):
        assert token in result.text, result.text


def test_one_process_many_lines_and_batches() -> None:
    eng = ApertiumTranslator()
    try:
        out = eng.translate_batch(
            ["Good morning.", "Line one.\nLine two.", "", "Thank you."], "en", "es"
        )
        pipe = eng.pipe("en", "es")
        first = pipe.pid
        out2 = eng.translate_batch(
            [f"The house number {i} is big." for i in range(300)], "en", "es"
        )
        assert pipe.pid == first and pipe.starts == 1  # one long-lived pipeline
    finally:
        eng.close()
    assert out[0].startswith("Buenos") and "\n" in out[1] and out[2] == ""
    assert len(out2) == 300 and all("casa" in o and str(i) in o for i, o in enumerate(out2))


def test_killed_pipeline_is_restarted() -> None:
    eng = ApertiumTranslator()
    try:
        assert eng.translate_batch(["Good morning."], "en", "es")[0].startswith("Buenos")
        pipe = eng.pipe("en", "es")
        old = pipe.pid
        assert old is not None
        os.killpg(old, signal.SIGKILL)
        assert eng.translate_batch(["Good morning."], "en", "es")[0].startswith("Buenos")
        assert pipe.pid not in (None, old) and pipe.restarts == 1
    finally:
        eng.close()


def test_killed_mid_request_fails_or_retries_then_recovers() -> None:
    eng = ApertiumTranslator()
    pipe = eng.pipe("en", "es")
    eng.translate_batch(["warm up"], "en", "es")
    outcome: list[object] = []

    def long_request() -> None:
        try:
            outcome.append(
                eng.translate_batch([f"The cat {i} sleeps." for i in range(3000)], "en", "es")
            )
        except TranslationError as exc:
            outcome.append(exc)

    try:
        worker = threading.Thread(target=long_request)
        worker.start()
        old = pipe.pid
        assert old is not None
        threading.Event().wait(0.05)  # let the request get going
        os.killpg(old, signal.SIGKILL)
        worker.join(60)
        assert not worker.is_alive()
        got = outcome[0]
        # Retried on a fresh pipeline (full answer) or reported as a failure: never garbage.
        assert isinstance(got, TranslationError) or (isinstance(got, list) and len(got) == 3000)
        assert pipe.restarts >= 1
        assert eng.translate_batch(["Good morning."], "en", "es")[0].startswith("Buenos")
    finally:
        eng.close()


async def test_service_survives_a_kill(service: TranslationService) -> None:
    assert (await service.translate("Good morning.", "en", "es")).status == "ok"
    eng = service.engines["apertium"]
    assert isinstance(eng, ApertiumTranslator)
    pid = eng.pipe("en", "es").pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    result = await service.translate("Thank you very much.", "en", "es")
    assert result.status == "ok" and "gracias" in result.text, result


async def test_unavailable_too_long_same(service: TranslationService) -> None:
    missing = await service.translate("Hello", "en", "ko")
    assert (missing.status, missing.text, missing.engine) == ("unavailable", "Hello", None)
    long = "word " * 200
    too_long = await service.translate(long, "en", "es")
    assert (too_long.status, too_long.text) == ("too_long", long)
    same = await service.translate("Hello", "en", "eng")
    assert (same.status, same.text) == ("same", "Hello")
    assert sample(service, "commhub_translation_engine_calls_total", {"engine": "apertium"}) == 0
    assert sample(service, "commhub_translation_requests_total",
                  {"engine": "none", "status": "unavailable"}) == 1  # fmt: skip


async def test_repeat_is_a_cache_hit(service: TranslationService) -> None:
    first = await service.translate("Where is the city hall?", "en", "es")
    again = await service.translate("  Where is   the city hall? ", "en", "es")
    assert first.status == again.status == "ok"
    assert (first.cached, again.cached) == (False, True)
    assert again.text == first.text
    assert sample(service, "commhub_translation_cache_hits_total") == 1
    assert sample(service, "commhub_translation_cache_misses_total") == 1
    assert sample(service, "commhub_translation_engine_calls_total", {"engine": "apertium"}) == 1


async def test_translate_many_one_call_per_distinct_target(service: TranslationService) -> None:
    targets = ["es", "es", "spa", "es-MX", "en", "ko"]
    results = await service.translate_many("The weather is nice today.", "en", targets)
    assert set(results) == {"es", "en", "ko"}
    assert results["es"].status == "ok" and "tiempo" in results["es"].text
    assert results["en"].status == "same" and results["ko"].status == "unavailable"
    assert sample(service, "commhub_translation_engine_calls_total", {"engine": "apertium"}) == 1


async def test_concurrent_requests_are_batched(service: TranslationService) -> None:
    texts = [f"The house number {i} is big." for i in range(20)]
    results = await asyncio.gather(*(service.translate(t, "en", "es") for t in texts))
    assert all(r.status == "ok" and "casa" in r.text for r in results)
    calls = sample(service, "commhub_translation_engine_calls_total", {"engine": "apertium"})
    assert 1 <= calls < len(texts)


async def test_broken_pipeline_reports_failed(tmp_path: Path) -> None:
    """A mode whose pipeline dies at once: failed (after one restart), original text kept."""
    (tmp_path / "eng-spa.mode").write_text("exit 3\n")
    svc = TranslationService(
        [ApertiumTranslator(tmp_path, timeout=5)], registry=CollectorRegistry()
    )
    try:
        result = await svc.translate("Good morning.", "en", "es")
    finally:
        await svc.aclose()
    assert (result.status, result.text, result.engine) == ("failed", "Good morning.", "apertium")
    assert "exited" in result.detail


def test_install_pair_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InstallError, match="looks like"):
        install_apertium_pair("english")
    if shutil.which("apt-get") and os.geteuid() == 0:
        with pytest.raises(InstallError, match="apt-get install failed"):
            install_apertium_pair("qqq-zzz")  # no such Debian package
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(
        InstallError, match="needs root: run `sudo apt-get install apertium-eng-spa`"
    ):
        install_apertium_pair("en-es")
