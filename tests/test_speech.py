"""Speech engines and the model registry, on real models (Vosk Korean, pocketsphinx en-US)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from commhub.speech import Hypothesis, ModelNotFound, SpeechModel, SpeechModels
from tests.helpers.audio import (
    KO_PHRASES,
    KO_WORDS,
    POCKETSPHINX_DATA,
    chunks,
    korean_speech,
)

GOFORWARD = POCKETSPHINX_DATA / "goforward.raw"  # "go forward ten meters", s16 16 kHz


@pytest.fixture(scope="module")
def ko_speech() -> bytes:
    return korean_speech(0.3)


def feed(recognizer: object, pcm: bytes, ms: int = 100) -> list[Hypothesis]:
    partials = []
    for chunk in chunks(pcm, ms):
        hyp = recognizer.accept(chunk)  # type: ignore[attr-defined]
        if hyp is not None:
            partials.append(hyp)
    return partials


def test_languages_prefer_vosk_and_list_bundled_models(models: SpeechModels) -> None:
    langs = models.languages()
    assert langs["ko"] == "vosk"
    assert langs["en"] == "pocketsphinx"


def test_model_not_found_says_what_and_how(models: SpeechModels) -> None:
    with pytest.raises(ModelNotFound) as info:
        models.get("de")
    message = str(info.value)
    assert info.value.language == "de"
    assert "'de'" in message and str(models.models_dir / "vosk" / "de") in message
    assert "commhub models install de" in message


def test_preference_for_an_engine_that_is_not_installed_falls_back(tmp_path: Path) -> None:
    registry = SpeechModels(tmp_path, preferences={"en": "vosk"})
    assert registry.languages()["en"] == "pocketsphinx"


def test_region_tags_resolve_to_the_language(models: SpeechModels, en: SpeechModel) -> None:
    assert models.get("en-US") is en
    assert models.get("EN_us") is en


def test_models_load_once_even_from_many_threads(models: SpeechModels, en: SpeechModel) -> None:
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(models.get, ["en"] * 8))
    assert all(m is en for m in loaded)


async def test_async_load_keeps_the_event_loop_running(tmp_path: Path) -> None:
    registry = SpeechModels(tmp_path)
    gaps: list[float] = []

    async def ticker() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    model = await registry.load("ko")  # ~2 s of loading
    task.cancel()
    assert model.engine == "vosk" and model.language == "ko"
    assert len(gaps) > 20
    assert max(gaps) < 0.5, f"event loop stalled {max(gaps):.2f} s during a model load"


def test_vosk_grammar_recognises_espeak_korean(ko: SpeechModel, ko_speech: bytes) -> None:
    recognizer = ko.recognizer(KO_PHRASES)  # "[unk]" is not in this model: dropped, logged
    partials = feed(recognizer, ko_speech)
    final = recognizer.finish()
    assert partials, "no partial results"
    assert len({p.text for p in partials}) == len(partials), "partials repeat unchanged text"
    assert final.text.split() == KO_WORDS
    assert [w.word for w in final.words] == KO_WORDS
    assert all(0 <= w.start < w.end <= len(ko_speech) / 32000 for w in final.words)
    assert final.confidence is not None and 0 < final.confidence <= 1
    recognizer.close()


def test_vosk_word_times_are_relative_to_each_utterance(ko: SpeechModel, ko_speech: bytes) -> None:
    recognizer = ko.recognizer(KO_WORDS)
    feed(recognizer, ko_speech)
    first = recognizer.finish()
    feed(recognizer, ko_speech)
    second = recognizer.finish()
    assert first.text and second.text == first.text
    for a, b in zip(first.words, second.words, strict=True):
        assert abs(a.start - b.start) < 0.15 and abs(a.end - b.end) < 0.15
    assert recognizer.finish().text == ""  # nothing heard since: empty final
    recognizer.close()


def test_vosk_open_vocabulary_gives_text_without_grammar(ko: SpeechModel, ko_speech: bytes) -> None:
    recognizer = ko.recognizer()
    feed(recognizer, ko_speech)
    # The open model does not understand espeak Korean (FIELD-NOTES), but it does decode.
    assert recognizer.finish().text.strip()
    recognizer.close()


def test_pocketsphinx_recognises_a_human_recording(en: SpeechModel) -> None:
    recognizer = en.recognizer()
    partials = feed(recognizer, GOFORWARD.read_bytes())
    final = recognizer.finish()
    assert any(p.text.startswith("go forward") for p in partials)
    assert final.text.startswith("go forward ten")
    assert [w.word for w in final.words][:3] == ["go", "forward", "ten"]
    assert 0.3 < final.words[0].start < final.words[-1].end < 3.0
    recognizer.close()


def test_pocketsphinx_grammar_and_decoder_reuse(en: SpeechModel) -> None:
    pcm = GOFORWARD.read_bytes()
    restricted = en.recognizer(["go", "forward", "back", "ten", "meters", "notaword"])
    feed(restricted, pcm)
    assert restricted.finish().text == "go forward ten meters"
    feed(restricted, pcm)  # the same recognizer again: the next utterance
    assert restricted.finish().text == "go forward ten meters"
    restricted.close()
    # The decoder went back to the pool: the next recognizer must be open-vocabulary again.
    again = en.recognizer()
    feed(again, pcm)
    assert again.finish().text.startswith("go forward ten")
    again.close()


def test_unusable_model_folder_is_named_in_the_error(tmp_path: Path) -> None:
    broken = tmp_path / "vosk" / "de" / "vosk-model-small-de"
    (broken / "conf").mkdir(parents=True)
    (broken / "conf" / "model.conf").write_text("--sample-frequency=16000\n")
    with pytest.raises(ModelNotFound) as info:
        SpeechModels(tmp_path).get("de")
    assert str(broken) in str(info.value) and "missing am/final.mdl" in str(info.value)


def test_corrupt_model_says_which_and_how_to_fix(tmp_path: Path) -> None:
    corrupt = tmp_path / "vosk" / "de" / "corrupt"
    for part in ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst"):
        (corrupt / part).parent.mkdir(parents=True, exist_ok=True)
        (corrupt / part).write_bytes(b"not a model")
    with pytest.raises(ModelNotFound) as info:
        SpeechModels(tmp_path).get("de")
    message = str(info.value)
    assert str(corrupt) in message and "failed to load" in message and "--force" in message


def test_a_pooled_pocketsphinx_decoder_forgets_the_last_speakers_channel(en: SpeechModel) -> None:
    first = en.recognizer()
    decoder = first._decoder
    assert decoder is not None
    initial = decoder.get_cmn()
    feed(first, GOFORWARD.read_bytes())
    first.finish()
    heard = decoder.get_cmn()
    assert heard != initial  # the cepstral mean followed the recording
    first.close()
    nxt = en.recognizer()
    assert nxt._decoder is decoder  # the same decoder, from the pool
    assert decoder.get_cmn() == initial  # as a new one starts, not as the last speaker left it
    nxt.close()
