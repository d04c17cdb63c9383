"""Headless Chromium (the page at /, commhub.js) and an aiortc SDK client in one room.

Audio flows both ways through the hub: the browser's fake microphone (a known WAV) reaches
the aiortc client and matches the file; the aiortc client's WAV reaches the browser.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiortc.contrib.media import MediaPlayer

from commhub.sdk import RoomClient
from tests.conftest import Running, StartHub
from tests.helpers.audio import read_wav_mono, speech_wav
from tests.helpers.browser import chromium_flags, chromium_page, wav48k
from tests.helpers.media import (
    LOOPBACK,
    best_correlation,
    collect_audio,
    media_settings,
    resample,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
async def browser_page(tmp_path: Path) -> AsyncIterator[Any]:
    src = speech_wav(
        tmp_path / "raw.wav",
        "The browser is speaking to the hub. One two three four five six seven.",
    )
    fake = await asyncio.to_thread(wav48k, src, tmp_path / "browser.wav")
    async with chromium_page(chromium_flags(fake, loop=False)) as page:
        page.fake_wav = fake
        yield page


@pytest.fixture
async def media_hub(start_hub: StartHub) -> Running:
    return await start_hub(**media_settings())


async def test_browser_and_aiortc_exchange_audio(
    media_hub: Running, browser_page: Any, tmp_path: Path
) -> None:
    page = browser_page
    await media_hub.hub.media.set_mode("lobby", "sfu")
    logs: list[str] = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))

    wav = speech_wav(
        tmp_path / "sdk.wav", "Hello from the python client. Can you hear me? Eight nine ten."
    )
    sdk = RoomClient(media_hub.url, media_hub.token("lobby", "python"), ice_hosts=LOOPBACK)
    await sdk.connect()
    await sdk.negotiate()  # receive-only until it publishes below
    try:
        token = media_hub.token("lobby", "browser", name="Browser")
        await page.goto(f"{media_hub.url}/?token={token}&autojoin=1&processing=off")
        await page.wait_for_function("document.body.dataset.media === 'connected'", timeout=20000)
        # the browser's microphone arrives at the SDK client through the hub
        async with asyncio.timeout(20):
            while not any(r.meta["kind"] == "audio" for r in sdk.remote.values()):
                await asyncio.sleep(0.05)
        heard = next(r for r in sdk.remote.values() if r.meta["kind"] == "audio")
        assert heard.meta["source"] == "microphone"
        got = await collect_audio(heard.track, 5.0)
        src, rate = read_wav_mono(page.fake_wav)
        corr = best_correlation(got, resample(src, rate, 48000))
        assert corr >= 0.8, corr

        # and the SDK client's WAV reaches the browser
        player = MediaPlayer(str(wav))
        assert player.audio is not None
        await sdk.publish(player.audio)
        await page.wait_for_function(
            "[...window.commhub.remote.values()].some(r => r.track.kind === 'audio')",
            timeout=20000,
        )
        energy = 0.0
        for _ in range(60):
            energy = await page.evaluate(
                """async () => {
                    let e = 0;
                    for (const t of window.commhub.pc.getReceivers()) {
                        const stats = await t.getStats();
                        stats.forEach(s => {
                            if (s.type === 'inbound-rtp' && s.kind === 'audio')
                                e += s.totalAudioEnergy || 0;
                        });
                    }
                    return e;
                }"""
            )
            if energy > 0.01:
                break
            await asyncio.sleep(0.1)
        assert energy > 0.01, (energy, logs[-10:])
        names = await page.locator("#people li").all_text_contents()
        assert any("python" in n for n in names)
        player.audio.stop()
    finally:
        await sdk.close()


async def test_browser_shows_live_captions_and_translated_chat(
    start_hub: StartHub, browser_page: Any, tmp_path: Path
) -> None:
    from tests.helpers.audio import KO_PHRASES, korean_speech, write_wav
    from tests.wsclient import SignalClient

    hub = await start_hub(ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES})
    page = browser_page
    token = hub.token("desk", "visitor", name="Visitor", speak="es", read="es")
    await page.goto(f"{hub.url}/?token={token}&autojoin=1&processing=off")
    await page.wait_for_function("document.body.dataset.media === 'connected'", timeout=20000)

    # A Korean agent speaks over WebRTC: the page shows the live caption of the utterance.
    wav = write_wav(tmp_path / "ko.wav", korean_speech(0.5, 1.5))
    agent = RoomClient(hub.url, hub.token("desk", "agent", name="Agent", speak="ko", read="ko"),
                       ice_hosts=LOOPBACK)  # fmt: skip
    player = MediaPlayer(str(wav))
    try:
        await agent.connect()
        assert player.audio is not None
        await agent.publish(player.audio)
        await page.wait_for_function(
            "[...document.querySelectorAll('#caption-log li')]"
            ".some(li => li.textContent.includes('안녕하세요 서울 시청 입니다'))",
            timeout=60000,
        )
        assert await page.text_content("#caption-log li .meta strong") == "Agent"

        # English chat is shown in Spanish, the original beside it...
        writer = await SignalClient.connect(hub.url, hub.token("desk", "resident", speak="en"))
        await writer.join()
        await writer.send({"type": "chat", "text": "Where is the city hall?"})
        await page.wait_for_function(
            "document.querySelector('#chat-log li:last-child .main')"
            "?.textContent.includes('Dónde')",
            timeout=20000,
        )
        original = await page.text_content("#chat-log li:last-child .orig")
        assert original == "Where is the city hall?"
        # ...and after switching the page's reading language live, in English.
        await page.click("#tab-captions")
        await page.select_option("#read-select-call", "en")
        await writer.expect("participant_updated")
        await writer.send({"type": "chat", "text": "Thank you"})
        await page.wait_for_function(
            "document.querySelector('#chat-log li:last-child .body')?.textContent === 'Thank you'",
            timeout=20000,
        )
        await writer.close()
    finally:
        if player.audio is not None:
            player.audio.stop()
        await agent.close()
