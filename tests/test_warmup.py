"""Warm spares: recognizers fed speech before anyone speaks, kept in the model's pool.

Real Vosk, real espeak-ng speech, a real hub; the assertions are about what the mechanism
did (speech found or made, spares kept and refilled at low priority, a speaker given a warm
one), never about speed (scripts/bench_captions.py measures what warming saves).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from commhub.config import Settings, SettingsError
from commhub.speech import SpeechModel
from commhub.speech.vosk import VoskModel
from commhub.speech.warmup import TEXT, Warmable, Warmer, warmup_audio
from tests.conftest import StartHub
from tests.helpers.audio import (
    KO_SENTENCE,
    espeak,
    korean_speech,
    require,
    silence,
    wav_pcm,
    write_wav,
)
from tests.helpers.media import LOOPBACK
from tests.helpers.metrics import metric
from tests.helpers.wait import wait_for

WARM = "commhub_captions_warm_recognizers"


def test_speech_is_synthesised_once_then_read_from_the_folder(tmp_path: Path) -> None:
    require("espeak-ng")
    pcm = warmup_audio("ko", tmp_path)
    assert pcm is not None and len(pcm) / 32000 > 2.0 * len(TEXT["ko"])  # every sentence
    cached = tmp_path / "ko.wav"
    made = cached.stat().st_mtime_ns
    assert warmup_audio("ko", tmp_path) == pcm
    assert cached.stat().st_mtime_ns == made  # read, not made again


def test_an_operators_recording_in_any_format_is_used_as_it_is(tmp_path: Path) -> None:
    sox = require("sox")
    speech = write_wav(tmp_path / "speech.wav", korean_speech())
    # stereo 44.1 kHz Ogg Vorbis under the expected name: decoded to 16 kHz mono
    out = tmp_path / "ko.wav"
    subprocess.run([sox, str(speech), "-r", "44100", "-c", "2", "-t", "ogg", str(out)], check=True)
    pcm = warmup_audio("ko-KR", tmp_path)  # a regional tag finds the language's file
    assert pcm is not None
    assert abs(len(pcm) - len(wav_pcm(speech))) / 32000 < 0.1


def test_no_speech_means_cold_starts_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "commhub.speech.warmup")
    assert warmup_audio("xx", tmp_path) is None  # no sentences for it, no recording
    assert any("start cold" in r.message and "xx" in r.message for r in caplog.records)
    (tmp_path / "en.wav").write_bytes(b"RIFF this is not audio")
    assert warmup_audio("en", tmp_path) is None
    assert any("unreadable" in r.message for r in caplog.records)


def test_the_setting_is_checked() -> None:
    assert Settings().caption_warm_recognizers > 0  # on by default: what users run
    with pytest.raises(SettingsError, match="caption_warm_recognizers"):
        Settings.load({"caption_warm_recognizers": -1}, env={})


@pytest.fixture
def pool(ko: SpeechModel) -> Iterator[VoskModel]:
    """The session's Korean model, its pool emptied and its size restored after."""
    assert isinstance(ko, VoskModel) and isinstance(ko, Warmable)
    size = ko.idle_max
    ko.clear_idle()
    yield ko
    ko.clear_idle()
    ko.idle_max = size


async def test_spares_are_kept_warm_at_low_priority_and_refilled_up_to_the_cap(
    pool: VoskModel,
) -> None:
    speech = silence(0.3) + espeak(KO_SENTENCE) + silence(0.3)
    base = pool.lent  # other tests' streams may hold some
    warmer = Warmer(pool, speech, spares=2, cap=3 + base)
    assert pool.idle_max >= 2  # recognizers given back may fill the pool too
    warmer.start()
    try:
        await wait_for(lambda: pool.idle == 2, 120, "two warm spares")
        assert warmer.warmed == 2 and warmer.cpu_seconds > 0
        assert warmer._thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, warmer._thread.native_id) == 19
        # a speaker takes one: it has decoded the warm-up already, and the pool refills
        first = pool.recognizer()
        assert first._fed == pytest.approx(len(speech) / 32000)
        await wait_for(lambda: warmer.warmed == 3 and pool.idle == 2, 120, "the refill")
        # a second speaker: three recognizers live, the cap; no more are made
        second = pool.recognizer()
        assert pool.lent == base + 2 and pool.idle == 1 and not warmer.wanted
        second.close()  # given back: a spare again
        first.close()  # the pool is full: freed, not kept
        assert pool.lent == base and pool.idle == 2 and warmer.warmed == 3
    finally:
        warmer.stop()
    assert not warmer._thread.is_alive()


def test_a_recognizer_dropped_without_close_is_not_counted_as_lent(pool: VoskModel) -> None:
    base = pool.lent  # other tests' streams may hold some
    rec = pool.recognizer()
    kept = pool.recognizer()
    assert pool.lent == base + 2
    del rec  # a stream's task cancelled mid-job leaves its recognizer to the collector
    gc.collect()
    assert pool.lent == base + 1
    kept.close()  # closed the normal way: counted back once, not twice
    del kept
    gc.collect()
    assert pool.lent == base


async def test_a_hub_keeps_spares_and_a_speaker_takes_one(
    start_hub: StartHub, settings: Settings, tmp_path: Path
) -> None:
    from aiortc.contrib.media import MediaPlayer

    from commhub.app import shared_models
    from commhub.sdk import RoomClient
    from commhub.server.keys import CAPTIONS

    require("espeak-ng")
    # the process's model, which earlier tests' streams may have left idle recognizers in
    models = shared_models(settings.models_dir, tuple(sorted(settings.speech_engines.items())))
    model = await models.load("ko")
    assert isinstance(model, VoskModel)
    await asyncio.to_thread(model.clear_idle)
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), caption_preload=["ko"], caption_warm_recognizers=2,
        translation=False,
    )  # fmt: skip
    captions = hub.server.app[CAPTIONS]
    labels = {"language": "ko", "preset": "default"}
    await wait_for_metric(hub.url, labels, 2)
    assert (hub.hub.settings.data_dir / "warmup" / "ko.wav").exists()
    (warmer,) = [w for w in captions._warmers.values() if w is not None]
    assert warmer.warmed == 2
    token = hub.token("desk", "speaker", speak="ko", read="ko")
    speaker = RoomClient(hub.url, token, ice_hosts=LOOPBACK)
    listener = RoomClient(hub.url, hub.token("desk", "listener", read="ko"), ice_hosts=LOOPBACK)
    player: Any = None
    try:
        await speaker.connect()
        await listener.connect()
        final = listener.expect("caption", timeout=120, final=True, speaker=speaker.pid)
        # the microphone stays open after the sentence: the stream keeps its recognizer
        wav = write_wav(tmp_path / "ko.wav", korean_speech(0.5, 1.5) + silence(60))
        player = MediaPlayer(str(wav))
        await speaker.publish(player.audio)
        got = await final
        assert got["text"]  # open vocabulary: espeak Korean is not understood, but heard
        # the stream took a spare (its recognizer) and the warmer made another
        await wait_for(lambda: warmer.warmed == 3, 50, "the refill")
        await wait_for_metric(hub.url, labels, 2)
        assert len(captions.active) == 1  # still speaking: the refill was not its recognizer
    finally:
        await speaker.close()
        await listener.close()
        if player is not None and player.audio is not None:
            player.audio.stop()


async def wait_for_metric(url: str, labels: dict[str, str], value: float) -> None:
    for _ in range(600):
        if await metric(url, WARM, **labels) == value:
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"{WARM}{labels} never reached {value}")
