"""Real headless Chromium with its mDNS hiding ON connects to the hub.

A page that was never granted a camera or microphone hides its host addresses behind
random `<uuid>.local` names. The hub never resolves them; it learns the browser's address
from the browser's own connectivity checks (a peer-reflexive candidate). This page
publishes a Web Audio oscillator (no getUserMedia, so the names stay hidden) with the
embeddable client, commhub.js.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.conftest import Running, StartHub
from tests.helpers.browser import chromium_flags, chromium_page
from tests.helpers.media import count_mdns_lookups, media_settings
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

PUBLISH = """async ([token]) => {
    const { CommHub } = await import("/static/commhub.js");
    const hub = new CommHub({ token, p2p: false });
    window.hub = hub;
    await hub.join();
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    const dest = ctx.createMediaStreamDestination();
    osc.connect(dest);
    osc.start();
    await hub.setMicrophone(dest.stream.getAudioTracks()[0]);
}"""

# the browser's own candidates, as its latest description carries them
CANDIDATES = """() => window.hub.pc.localDescription.sdp.split(/\\r?\\n/)
    .filter((l) => l.startsWith("a=candidate:")).map((l) => l.slice(2))"""


@pytest.fixture
async def page() -> AsyncIterator[Any]:
    async with chromium_page(chromium_flags(hide_ips_with_mdns=True)) as page:
        yield page


@pytest.fixture
async def media_hub(start_hub: StartHub) -> Running:
    return await start_hub(**media_settings())


async def test_chromium_hiding_behind_mdns_publishes_to_the_hub(
    media_hub: Running, page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = count_mdns_lookups(monkeypatch)
    logs: list[str] = []
    page.on("console", lambda m: logs.append(f"{m.type}: {m.text}"))
    await page.goto(f"{media_hub.url}/")
    token = media_hub.token("lobby", "browser")
    await page.evaluate(PUBLISH, [token])
    media = media_hub.hub.media
    await wait_for(lambda: len(media.sessions) == 1, timeout=20)
    session = next(iter(media.sessions.values()))
    await page.wait_for_function("window.hub.pc.connectionState === 'connected'", timeout=30000)
    candidates: list[str] = await page.evaluate(CANDIDATES)
    hosts = [c.split()[4] for c in candidates if " typ host" in c]
    assert hosts and all(h.endswith(".local") for h in hosts), candidates  # hiding is on
    assert session.named_candidates >= 1
    pub = next(iter(session.publications.values()))
    await wait_for(lambda: pub.frames > 25, timeout=20)  # half a second of the oscillator
    assert lookups == []
    # (the page's missing favicon is the one resource error there is)
    errors = [m for m in logs if m.startswith("error") and "Failed to load resource" not in m]
    assert not errors, errors
