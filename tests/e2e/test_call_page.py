"""The call page in Chromium against a real hub: media both ways whatever the order,
recovery, refusals in words.

Every page is a separate person (its own browser context, fake camera and microphone).
"Heard" means the page's inbound RTP bytes from that person keep rising (getStats);
"seen" means decoded video frames keep rising.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest

from commhub import auth
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.audio import LIBRIVOX, speech_wav
from tests.helpers.browser import (
    DESKTOP,
    PHONE,
    Browser,
    chromium,
    flowing,
    wait_mode,
    wait_state,
    wav48k,
)
from tests.helpers.hubproc import HubProcess, free_port
from tests.helpers.media import LOOPBACK

pytestmark = pytest.mark.e2e
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    raw = speech_wav(folder / "raw.wav", "Hello from the call page. One two three four five six.")
    return wav48k(raw, folder / "speech48.wav")


@pytest.fixture
async def browser(speech: Path) -> AsyncIterator[Browser]:
    async with chromium(speech) as b:
        yield b


@pytest.fixture
async def media_hub(start_hub: StartHub) -> Running:
    # imagery off: `auto` then puts a pair p2p (with it on, every room stays sfu)
    return await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False, imagery=False
    )


def page_url(base: str, token: str, **query: str) -> str:
    q = "&".join(
        f"{k}={v}" for k, v in {"autojoin": "1", "processing": "off", "debug": "1", **query}.items()
    )
    return f"{base}/?token={token}&{q}"


async def join(browser: Browser, hub_url: str, room: str, who: str, **query: str) -> Any:
    token = auth.issue(SECRET, room=room, identity=who.lower(), name=who)
    page = await browser.page(page_url(hub_url, token, **query))
    await wait_state(page, "connected")
    assert token not in page.url  # the token left the address bar
    return page


async def test_p2p_pair_then_a_third_joins_and_leaves(media_hub: Running, browser: Browser) -> None:
    # Alice's microphone is granted before she joins (pre-join preview), Bob's after.
    alice = await join(browser, media_hub.url, "desk", "Alice", mic="1", cam="0")
    bob = await join(browser, media_hub.url, "desk", "Bob", mic="0", cam="0")
    await wait_mode(alice, "p2p")
    await wait_mode(bob, "p2p")
    await bob.click("#btn-mic")
    await flowing(alice, "Bob", "audio", "direct")
    await flowing(bob, "Alice", "audio", "direct")
    # Alice's camera comes on mid-call: the direct connection renegotiates
    await alice.click("#btn-cam")
    await flowing(bob, "Alice", "video", "direct")
    await bob.wait_for_selector("#tiles .tile.has-video:not(.me)")

    # A third person: the room moves to sfu, the direct connection closes, all flows go
    # through the hub, Alice's camera included.
    carol = await join(browser, media_hub.url, "desk", "Carol", mic="1", cam="0")
    for page in (alice, bob, carol):
        await wait_mode(page, "sfu")
    await flowing(alice, "Bob", "audio", "hub")
    await flowing(bob, "Alice", "audio", "hub")
    await flowing(bob, "Alice", "video", "hub")
    await flowing(carol, "Alice", "audio", "hub")
    await flowing(carol, "Bob", "audio", "hub")
    await flowing(carol, "Alice", "video", "hub")
    await flowing(alice, "Carol", "audio", "hub")
    assert await carol.locator("#tiles .tile").count() == 3

    # Carol leaves: her microphone stops and her room view is cleared; the pair is p2p again.
    await carol.evaluate("window.__mic = window.commhubApp.local.audio")
    await carol.click("#btn-leave")
    await carol.wait_for_selector("#ended:not([hidden])")
    assert (
        await carol.evaluate("document.querySelectorAll('#tiles .tile, #audio-sink audio').length")
        == 0
    )
    assert await carol.evaluate("window.__mic.readyState") == "ended"
    assert await carol.text_content("#conn-text") == "Not connected"
    await wait_mode(alice, "p2p")
    await wait_mode(bob, "p2p")
    await flowing(alice, "Bob", "audio", "direct")
    await flowing(bob, "Alice", "audio", "direct")
    await flowing(bob, "Alice", "video", "direct")

    # Camera off: Bob's tile of Alice falls back to her initials.
    await alice.click("#btn-cam")
    await bob.wait_for_function(
        "!document.querySelector('#tiles .tile:not(.me)').classList.contains('has-video')"
    )
    for page in (alice, bob, carol):
        assert page.errors == []
        assert await page.evaluate("window.__lies") == []


async def test_sfu_other_order_and_recovery_after_a_stall(
    start_hub: StartHub, browser: Browser
) -> None:
    # stalls are found after 3 s (not 10) so that the recovery below stays short
    media_hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False,
        media_stall_timeout=3.0,
    )  # fmt: skip
    # Bob first, with no microphone until after joining; Alice second, camera and
    # microphone from the pre-join screen.
    await media_hub.hub.media.set_mode("front", "sfu")
    bob = await join(browser, media_hub.url, "front", "Bob", mic="0", cam="0")
    alice = await join(browser, media_hub.url, "front", "Alice", mic="1", cam="1")
    await wait_mode(bob, "sfu")
    await bob.click("#btn-mic")
    await flowing(alice, "Bob", "audio", "hub")
    await flowing(bob, "Alice", "audio", "hub")
    await flowing(bob, "Alice", "video", "hub")
    # Device switching without renegotiation: a new microphone track replaces the old one.
    await alice.evaluate(
        """async () => {
            const s = await navigator.mediaDevices.getUserMedia({audio: {echoCancellation: false}});
            await window.commhub.setMicrophone(s.getAudioTracks()[0]);
        }"""
    )
    await flowing(bob, "Alice", "audio", "hub")
    # Camera off and on again mid-call (the hub's copy is muted meanwhile, not removed).
    await alice.click("#btn-cam")
    await bob.wait_for_function(
        "!document.querySelector('#tiles .tile:not(.me)').classList.contains('has-video')"
    )
    await alice.click("#btn-cam")
    await flowing(bob, "Alice", "video", "hub")
    await bob.wait_for_selector("#tiles .tile.has-video:not(.me)")
    # Bob's camera comes on for the first time mid-call: a new section to the hub
    await bob.click("#btn-cam")
    await flowing(alice, "Bob", "video", "hub")

    # The hub stops hearing Bob (his sender goes silent behind the library's back): it
    # closes his media as stalled; his page says so and publishes again by itself.
    await bob.evaluate(
        "window.commhub.pc.getTransceivers().find(t => t.sender.track?.kind === 'audio')"
        ".sender.replaceTrack(null)"
    )
    await bob.wait_for_selector("#notices .notice", timeout=20000)
    notice = await bob.text_content("#notices .notice")
    assert notice is not None and "stalled" in notice
    await flowing(alice, "Bob", "audio", "hub")
    await flowing(bob, "Alice", "audio", "hub")
    for page in (alice, bob):
        assert page.errors == []
        assert await page.evaluate("window.__lies") == []


# -- recovery: the hub goes away and comes back ------------------------------------------------


@pytest.fixture
async def hub_process(tmp_path: Path) -> AsyncIterator[HubProcess]:
    """`commhub serve` as a user runs it, on a fixed port so that it comes back there."""
    env = {
        "COMMHUB_SECRET": SECRET,
        "COMMHUB_ICE_HOST_ADDRESSES": '["127.0.0.1"]',
        "COMMHUB_CAPTIONS": "off",
        "COMMHUB_TRANSLATION": "off",
        "COMMHUB_IMAGERY": "off",  # the pages pair up p2p (imagery would keep them on sfu)
    }
    hub = HubProcess(tmp_path / "data", free_port(), env)
    await hub.start()
    yield hub
    await hub.close()


async def test_pages_reconnect_after_the_hub_is_killed_and_after_a_shutdown(
    hub_process: HubProcess, browser: Browser, tmp_path: Path
) -> None:
    url = hub_process.url
    alice = await join(browser, url, "desk", "Alice", mic="1", cam="0")
    bob = await join(browser, url, "desk", "Bob", mic="1", cam="0")
    for page in (alice, bob):
        await wait_mode(page, "p2p")
    await flowing(bob, "Alice", "audio", "direct")

    # Killed: no goodbye. Both pages show that they are reconnecting, chat pauses.
    await hub_process.stop(signal.SIGKILL)
    assert hub_process.proc is not None and hub_process.proc.returncode is not None
    for page in (alice, bob):
        await wait_state(page, "reconnecting")
        assert await page.is_disabled("#chat-input")
    # A message sent while the hub is away is kept and shown as waiting, not lost.
    await alice.evaluate("window.commhub.chat('sent while the hub was down')")
    await alice.wait_for_selector("#chat-log li.pending.queued")
    await alice.screenshot(path=artifacts(tmp_path) / "reconnecting-desktop.png")
    await hub_process.start()
    for page in (alice, bob):
        await wait_state(page, "connected", timeout=60)
    await bob.wait_for_function(
        "[...document.querySelectorAll('#chat-log li:not(.pending)')]"
        ".some(li => li.textContent.includes('sent while the hub was down'))"
    )
    assert await alice.locator("#chat-log li.pending").count() == 0
    for page in (alice, bob):
        await wait_mode(page, "p2p")
    await flowing(bob, "Alice", "audio", "direct")
    await flowing(alice, "Bob", "audio", "direct")

    # Stopped cleanly: the hub says when to come back (server_shutdown), the pages wait that
    # long (plus jitter) and come back by themselves.
    await hub_process.stop(signal.SIGTERM)
    for page in (alice, bob):
        await wait_state(page, "reconnecting")
    await hub_process.start()
    for page in (alice, bob):
        await wait_state(page, "connected", timeout=60)
        await wait_mode(page, "p2p")
    await flowing(bob, "Alice", "audio", "direct")
    await flowing(alice, "Bob", "audio", "direct")
    for page in (alice, bob):
        shown = await page.evaluate("window.__shown")
        assert shown.count("reconnecting") >= 2, shown
        assert await page.evaluate("window.__lies") == [], "showed connected while it was not"
        assert page.errors == []


# -- refusals in words -------------------------------------------------------------------------


def expired_token() -> str:
    token = auth.issue(SECRET, room="desk", identity="late")
    claims = jwt.decode(token, options={"verify_signature": False})
    now = int(time.time())
    claims.update(iat=now - 7200, nbf=now - 7200, exp=now - 3600)
    return jwt.encode(claims, SECRET, algorithm="HS256")


# What the library answers when an embedding page joins with a refused token.
LIBRARY_JOIN = """async ([token, room]) => {
    const {CommHub} = await import('/static/commhub.js');
    try { await new CommHub({token, room}).join(); } catch (reason) { return reason.code; }
}"""


async def test_refused_joins_say_why(
    media_hub: Running, start_hub: StartHub, browser: Browser
) -> None:
    desk = auth.issue(SECRET, room="desk", identity="x")
    cases = [  # token, room asked for, words on the page, the hub's code
        (expired_token(), None, "expired", "token_expired"),
        (desk, "other", "another room", "token_wrong_room"),
        ("not-a-token", None, "not a valid access token", "token_malformed"),
        (auth.issue("another-" + SECRET, room="desk", identity="x"), None, "not issued by this hub",
         "token_bad_signature"),
    ]  # fmt: skip
    page = await browser.page("")
    for token, room, words, code in cases:
        await page.goto(page_url(media_hub.url, token) + (f"&room={room}" if room else ""))
        await page.wait_for_selector("#landing-error:not([hidden])", timeout=15000)
        text = await page.text_content("#landing-error")
        assert text is not None and words in text, (code, text)
        assert token not in page.url and token not in (await page.content())
        # the library says the same when a page that embeds it joins with that token
        assert await page.evaluate(LIBRARY_JOIN, [token, room]) == code

    # A full room is refused in-band (a fatal `error`), after the upgrade.
    small = await start_hub(ice_host_addresses=list(LOOPBACK), captions=False,
                            translation=False, room_capacity=1)  # fmt: skip
    await join(browser, small.url, "desk", "Alice", mic="0", cam="0")
    bob = auth.issue(SECRET, room="desk", identity="bob", name="Bob")
    await page.goto(page_url(small.url, bob, mic="0", cam="0"))
    await page.wait_for_selector("#prejoin-error:not([hidden])", timeout=15000)
    assert "The room is full" in (await page.text_content("#prejoin-error") or "")


# -- a join link, keyboard only; captions in the reader's language; screenshots -----------------


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $COMMHUB_E2E_ARTIFACTS if set (e.g. bench-results/), else tmp."""
    folder = Path(os.environ.get("COMMHUB_E2E_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def english_speech(tmp_path: Path) -> Path:
    """A real English recording (LibriVox, pocketsphinx-testdata) with a pause after it."""
    src = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"  # "he was not an ill..."
    if not src.is_file():
        pytest.skip("pocketsphinx-testdata is not installed")
    out = tmp_path / "english48.wav"
    subprocess.run(
        ["sox", str(src), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0.5", "2.5"],
        check=True,
    )
    return out


# Visible controls without an accessible name (label, aria-label or text).
UNLABELLED = """() => [...document.querySelectorAll('button, input, select, meter, [role=tab]')]
  .filter(e => e.offsetParent !== null)
  .filter(e => !(e.getAttribute('aria-label') || (e.labels && e.labels.length)
                 || e.textContent.trim()))
  .map(e => e.outerHTML.slice(0, 80))"""


async def tab_to(page: Any, element_id: str, limit: int = 20) -> None:
    for _ in range(limit):
        if await page.evaluate("document.activeElement?.id") == element_id:
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"#{element_id} is not reachable with Tab")


async def test_invite_link_keyboard_only_and_captions_in_the_readers_language(
    start_hub: StartHub, english_speech: Path, tmp_path: Path
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), caption_preload=["en"])
    shots = artifacts(tmp_path)
    admin = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {admin}"}) as http,
        http.post(f"{hub.url}/v1/admin/invites", json={"room": "city-hall"}) as r,
    ):
        assert r.status == 201, await r.text()
        invite = await r.json()
    async with chromium(english_speech) as browser:
        # An English-speaking agent with a token.
        agent = await join(browser, hub.url, "city-hall", "Agent", mic="1", cam="0")

        # A resident opens the link: the room's name, languages from the hub, a preview.
        page = await browser.page(f"{hub.url}{invite['url']}")
        await page.wait_for_selector(
            "#prejoin:not([hidden]) #speak-select option", state="attached"
        )
        assert await page.text_content("#room-name") == "city-hall"
        options = await page.locator("#read-select option").all_inner_texts()
        assert any(o.startswith("Spanish") for o in options), options
        # Korean is offered, marked: nothing here translates English into it
        korean = next(o for o in options if o.startswith("Korean"))
        assert "no translation from English" in korean, options
        await page.wait_for_function("document.getElementById('mic-level').value > 0")
        assert await page.evaluate(UNLABELLED) == []
        await page.screenshot(path=shots / "prejoin-desktop.png")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=shots / "prejoin-phone.png", full_page=True)
        await page.set_viewport_size(DESKTOP)

        # Keyboard only: the name field has the focus; languages by type-ahead; Tab to Join.
        assert await page.evaluate("document.activeElement.id") == "name-input"
        await page.keyboard.type("Resident")
        await tab_to(page, "speak-select")
        await page.keyboard.type("Spa")
        await tab_to(page, "read-select")
        await page.keyboard.type("Spa")
        assert await page.input_value("#speak-select") == "es"
        assert await page.input_value("#read-select") == "es"
        await tab_to(page, "join-button")
        await page.keyboard.press("Enter")
        await wait_state(page, "connected")
        assert invite["code"] not in page.url  # the used link left the address bar

        # The agent's English, captioned and translated into Spanish, original beneath.
        final = page.locator("#caption-log li .main[lang='es']").first
        await final.wait_for(timeout=90000, state="attached")  # in the (closed) history tab
        spanish = await final.text_content()
        original = await page.locator("#caption-log li .orig[lang='en']").first.text_content()
        assert spanish and original and spanish != original, (spanish, original)
        assert "Agent" in (await page.locator("#caption-log li").first.text_content() or "")
        # the agent's tile lights up while the agent speaks
        await page.wait_for_selector("#tiles .tile.speaking:not(.me)", timeout=20000)
        # screen readers get finals, in the reader's language
        announced = await page.text_content("#sr-captions")
        assert announced is not None and spanish in announced
        # the resident's own Spanish cannot be captioned here: the page tells them
        await page.wait_for_selector("#notices .notice:has-text('Your speech cannot be captioned')")
        await agent.fill("#chat-input", "Where is the city hall?")
        await agent.press("#chat-input", "Enter")
        chat = page.locator("#chat-log li:not(.pending) .main").last
        await page.wait_for_function(
            "document.querySelector('#chat-log li:last-child .main')?.lang === 'es'"
        )
        assert "Dónde" in (await chat.text_content() or "")
        await page.wait_for_selector("#caption-bar:not([hidden]) .line")
        await page.screenshot(path=shots / "call-desktop.png")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=shots / "call-phone.png")

        # Every control has a name a screen reader can say.
        assert await page.evaluate(UNLABELLED) == []
        # The history downloads as WebVTT, as it was shown: Spanish, the original beneath.
        await page.click("#tab-captions")
        async with page.expect_download() as download:
            await page.click("#dl-vtt")
        vtt = await asyncio.to_thread(Path(await (await download.value).path()).read_text)
        assert vtt.startswith("WEBVTT") and f"<v Agent>{spanish}" in vtt and original in vtt

        # Reading English instead: what was received is shown as it was said.
        await page.select_option("#read-select-call", "en")
        assert await page.locator("#caption-log li .main").first.get_attribute("lang") == "en"
        assert await page.locator("#chat-log li .main").last.text_content() == (
            "Where is the city hall?"
        )
        # Korean: nothing was received in it, and the page says so rather than guessing.
        await page.select_option("#read-select-call", "ko")
        note = await page.locator("#caption-log li .orig.note").first.text_content()
        assert note and "Korean" in note
        await page.set_viewport_size(DESKTOP)

        # The interface follows the browser's language: Korean words on a Korean browser.
        ko = await browser.page(f"{hub.url}{invite['url']}", viewport=PHONE, lang="ko-KR")
        await ko.wait_for_selector("#prejoin:not([hidden]) #speak-select option", state="attached")
        assert await ko.text_content("#join-button") == "지금 참여"
        await ko.screenshot(path=shots / "prejoin-phone-ko.png", full_page=True)
        for p in (agent, page, ko):
            assert p.errors == []
