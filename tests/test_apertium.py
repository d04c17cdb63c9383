"""Apertium for real: the Debian eng-spa pair through one long-lived null-flush pipeline."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from commhub.translate import (
    ApertiumTranslator,
    InstallError,
    Translation,
    TranslationError,
    TranslationService,
    install_apertium_pair,
)
from commhub.translate.apertium import (
    _pipeline_stages,
    discover_modes,
    escape,
    unescape,
)
from tests.helpers.translate import APERTIUM_MODES, needs_apertium

MODES = APERTIUM_MODES
pytestmark = needs_apertium


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


@pytest.mark.parametrize(
    ("mode", "detail"),
    [
        ("false\n", "exited (false: code 1)"),  # dies at once
        ("no-such-apertium-tool x.bin\n", "cannot start apertium (no-such-apertium-tool)"),
        ("false; false\n", "exited (bash: code 127)"),  # not a plain pipeline: bash runs it
    ],
)
async def test_broken_pipeline_reports_failed(tmp_path: Path, mode: str, detail: str) -> None:
    """A mode whose pipeline cannot run: failed (after one restart), original text kept."""
    (tmp_path / "eng-spa.mode").write_text(mode)
    svc = TranslationService(
        [ApertiumTranslator(tmp_path, timeout=5)], registry=CollectorRegistry()
    )
    try:
        result = await svc.translate("Good morning.", "en", "es")
    finally:
        await svc.aclose()
    assert (result.status, result.text, result.engine) == ("failed", "Good morning.", "apertium")
    assert detail in result.detail


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


# -- every answer is its own text's: markers, poison, killed stages ------------------------

POISON = "x\uffff" + " word" * 300  # U+FFFF: lt-proc reads it as end of input, emits a stray \0
OTHERS = ["The safe code is 4711.", "Thank you very much.", "The weather is nice today."]


@pytest.fixture(scope="module")
def reference() -> dict[str, str]:
    """What a fresh pipeline, never poisoned, makes of each text."""
    eng = ApertiumTranslator()
    try:
        texts = [*OTHERS, *KILL_TEXTS, "Good morning."]
        return dict(zip(texts, eng.translate_batch(texts, "en", "es"), strict=True))
    finally:
        eng.close()


def test_poison_reaching_the_pipeline_is_refused_not_passed_on(
    reference: dict[str, str],
) -> None:
    """U+FFFF sent to the real pipeline as is (the translator would have cleaned it): the
    stray \\0 is caught by the markers, the text fails, every other answer stays its own."""
    eng = ApertiumTranslator()
    pipe = eng.pipe("en", "es")
    try:
        assert pipe.translate(["Good morning."]) == [reference["Good morning."]]
        alone = pipe.translate([POISON])
        assert isinstance(alone[0], TranslationError) and "out of step" in str(alone[0])
        mixed = pipe.translate([OTHERS[0], POISON, *OTHERS[1:]])
        assert isinstance(mixed[1], TranslationError)
        assert [mixed[0], *mixed[2:]] == [reference[t] for t in OTHERS]
        for text in OTHERS:  # and afterwards, one at a time
            assert pipe.translate([text]) == [reference[text]]
        assert pipe.restarts >= 2  # the pipeline was replaced, not trusted
    finally:
        eng.close()


async def test_poison_is_cleaned_and_every_answer_stays_its_own(
    reference: dict[str, str],
) -> None:
    """Through the service (the hub's path): U+FFFF never reaches Apertium; the poison gets
    its own translation and the requests after it get theirs, one by one and together."""
    service = TranslationService([ApertiumTranslator()], registry=CollectorRegistry())
    try:
        await _poison_then_others(service, reference)
    finally:
        await service.aclose()


async def _poison_then_others(service: TranslationService, reference: dict[str, str]) -> None:
    first = await service.translate(POISON, "en", "es")
    assert first.status == "ok", first.detail
    assert first.text.startswith("x\ufffd") and first.text.count("alabra") == 300
    for text in OTHERS:
        got = await service.translate(text, "en", "es")
        assert (got.status, got.text) == ("ok", reference[text])
    service.cache.clear()
    texts = [POISON.replace("x", "y"), *OTHERS]
    together = await asyncio.gather(*(service.translate(t, "en", "es") for t in texts))
    assert together[0].text.startswith("y\ufffd")
    assert [t.text for t in together[1:]] == [reference[t] for t in OTHERS]
    eng = service.engines["apertium"]
    assert isinstance(eng, ApertiumTranslator) and eng.pipe("en", "es").restarts == 0


def test_marker_lookalikes_typed_by_users_are_just_text() -> None:
    """A user can type "[@N]", even the next sequence number, escaped or not: it is text
    (escaped on the way in), so it neither fakes nor breaks an answer."""
    eng = ApertiumTranslator()
    pipe = eng.pipe("en", "es")
    try:
        pipe.translate(["warm up"])
        nxt = pipe._seq + 1  # what the next marker will be: the worst guess to type
        texts = [
            f"[@{nxt}]",
            f"[@{nxt}]Good morning.[@{nxt}]",
            f"Good morning.[@{nxt + 1}]",
            f"\\[@{nxt + 2}] Good morning. \\\\[@{nxt + 2}]",
            f"[@{nxt + 3}]\n[@{nxt + 3}]",
            "[@0] [@] [@-1] [@1x] @ [ ]",
        ]
        out = pipe.translate(texts)
        assert all(isinstance(o, str) for o in out), out
        assert out[0] == f"[@{nxt}]"
        assert out[1] == f"[@{nxt}]Buenos días.[@{nxt}]"
        assert out[2] == f"Buenos días.[@{nxt + 1}]"
        assert out[3] == f"\\[@{nxt + 2}] Buenos días. \\\\[@{nxt + 2}]"
        assert out[4] == f"[@{nxt + 3}]\n[@{nxt + 3}]"
        assert out[5] == "[@0] [@] [@-1] [@1x] @ [ ]"
        assert pipe.starts == 1  # nothing was taken for an out-of-step answer
    finally:
        eng.close()


KILL_TEXTS = [f"The house number {i} is near the station." for i in range(240)]


@pytest.mark.parametrize("stage", [0, 2, 7, -1], ids=["lt-proc", "tagger", "transfer", "last"])
async def test_stage_killed_mid_stream_is_failed_never_empty_ok(
    stage: int, reference: dict[str, str]
) -> None:
    """SIGKILL one stage while requests stream through: each answer is the text's own
    translation or `failed` (the others flush empty answers at end of input: never `ok`),
    and the pipeline is restarted for what follows."""
    svc = TranslationService(
        [ApertiumTranslator()], registry=CollectorRegistry(), cache_size=0, max_batch=4
    )
    eng = svc.engines["apertium"]
    assert isinstance(eng, ApertiumTranslator)
    pipe = eng.pipe("en", "es")
    results: list[tuple[str, Translation]] = []

    async def stream() -> None:
        for i in range(0, len(KILL_TEXTS), 8):
            batch = KILL_TEXTS[i : i + 8]
            done = await asyncio.gather(*(svc.translate(t, "en", "es") for t in batch))
            results.extend(zip(batch, done, strict=True))

    try:
        task = asyncio.create_task(stream())
        while len(results) < 40:
            await asyncio.sleep(0.001)
        name, pid = pipe.stage_pids()[stage]
        os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(task, 60)
        nxt = await svc.translate("Good morning.", "en", "es")
    finally:
        await svc.aclose()
    assert len(results) == len(KILL_TEXTS)
    for text, got in results:
        assert got.status in ("ok", "failed"), got
        if got.status == "ok":
            assert got.text == reference[text], (name, text, got)
    assert pipe.restarts >= 1, name
    assert (nxt.status, nxt.text) == ("ok", reference["Good morning."])


REAL_TEXT = Path("/usr/share/common-licenses/GPL-3")  # Debian base-files: always there


@pytest.mark.skipif(not REAL_TEXT.is_file(), reason="needs Debian's common licenses")
def test_markers_change_no_translation_of_real_text() -> None:
    """Each paragraph of a real document (quotes, parentheses, "<https://...>", numbering)
    through the marked pipeline: every answer proved its own at first try, and each is the
    translation the same pipeline gives unmarked, fed one text per null as before."""
    texts = [" ".join(p.split()) for p in re.split(r"\n\s*\n", REAL_TEXT.read_text())]
    texts = [t for t in texts if t][:80]
    eng = ApertiumTranslator()
    pipe = eng.pipe("en", "es")
    try:
        marked = pipe.translate(texts)
        assert pipe.starts == 1
    finally:
        eng.close()
    stages = " | ".join(shlex.join(argv) for argv in _pipeline_stages(pipe.mode_file))
    unmarked = subprocess.run(
        ["bash", "-c", stages],
        input=b"".join((escape(t) + "\n\0").encode() for t in texts),
        capture_output=True,
        env=dict(os.environ, LC_ALL="C.UTF-8"),
        timeout=120,
        check=True,
    ).stdout.split(b"\0")
    assert len(unmarked) > len(texts)
    for text, got, plain in zip(texts, marked, unmarked, strict=False):
        assert isinstance(got, str), (text, got)
        assert got.strip() == unescape(plain.decode()).strip(), text
