"""Moderation on the call page, in Chromium against a real hub with the real text filters:
the sender of an insult is told (masked, strike count), readers see it masked, and a
"Report" from the People tab reaches a moderator as `report_filed`."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from commhub import auth
from tests.conftest import SECRET, Running, StartHub
from tests.e2e.test_call_page import page_url
from tests.helpers.audio import speech_wav
from tests.helpers.browser import DESKTOP, PHONE, Browser, chromium, wait_state, wav48k
from tests.helpers.media import LOOPBACK

pytestmark = pytest.mark.e2e

INSULT = "you are a stupid idiot"  # better-profanity and profanity-check both catch it
MOD = ["publish", "subscribe", "chat", "moderate"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("speech")
    return wav48k(speech_wav(folder / "raw.wav", "Hello."), folder / "speech48.wav")


@pytest.fixture
async def browser(speech: Path) -> AsyncIterator[Browser]:
    async with chromium(speech) as b:
        yield b


def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: $COMMHUB_E2E_ARTIFACTS if set (e.g. bench-results/e2e), else tmp."""
    folder = Path(os.environ.get("COMMHUB_E2E_ARTIFACTS") or tmp_path / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


async def join(browser: Browser, hub: Running, who: str, viewport: dict[str, int]) -> Any:
    token = auth.issue(SECRET, room="town", identity=who.lower(), name=who, speak="en", read="en")
    page = await browser.page(page_url(hub.url, token, mic="0", cam="0"), viewport=viewport)
    await wait_state(page, "connected")
    return page


async def notices(page: Any) -> list[str]:
    texts: list[str] = await page.eval_on_selector_all(
        "#notices .notice span", "n => n.map(x => x.textContent)"
    )
    return texts


async def test_the_page_shows_moderation_and_reports(
    start_hub: StartHub, browser: Browser, tmp_path: Path
) -> None:
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False, imagery=False
    )  # the text filters are on (the default)
    shots = artifacts(tmp_path)
    mod = await hub.joined("town", "mod", name="Moderator", grants=MOD)
    alice = await join(browser, hub, "Alice", PHONE)
    bob = await join(browser, hub, "Bob", DESKTOP)

    # Alice's insult: Bob reads it masked, Alice is told why and how many strikes she has.
    await alice.fill("#chat-input", INSULT)
    await alice.click("#chat-send")
    await bob.wait_for_selector("#chat-log li:has-text('you are a ****** *****')", timeout=20000)
    assert "idiot" not in (await bob.text_content("#chat-log") or "")
    await alice.wait_for_selector(
        "#notices .notice:has-text('Your message was masked')", timeout=20000
    )
    told = " ".join(await notices(alice))
    assert "code of conduct" in told and "Strike 1 of 3." in told, told
    assert not [n for n in await notices(bob) if "masked" in n]  # only the sender is told
    # her own copy is the masked one the room got; nothing is left "sending"
    await alice.wait_for_selector("#chat-log li:not(.pending):has-text('you are a ****** *****')")
    await alice.wait_for_function("!document.querySelector('#chat-log li.pending')", timeout=20000)
    assert "idiot" not in (await alice.text_content("#chat-log") or "")
    await alice.screenshot(path=shots / "moderated-phone.png")

    # Two more: the strike limit (3) mutes her chat, and the page says so when it is refused.
    for strike in (2, 3):
        await alice.fill("#chat-input", INSULT)
        await alice.click("#chat-send")
        await alice.wait_for_selector(
            f"#notices .notice:has-text('Strike {strike} of 3.')", timeout=20000
        )
    told = " ".join(await notices(alice))
    assert "You can no longer chat" in told and "Strike 2" not in told  # the newest one only
    await alice.fill("#chat-input", "hello?")
    await alice.click("#chat-send")
    await alice.wait_for_selector("#notices .notice:has-text('You cannot chat')", timeout=20000)
    await alice.wait_for_selector("#chat-log li.failed:has-text('strike limit reached')")

    # Bob reports Alice from the People tab; the moderator gets report_filed.
    await bob.click("#tab-people")
    assert await bob.locator("#people button.report").count() == 2  # Alice and the moderator
    await bob.get_by_role("button", name="Report Alice").click()
    await bob.select_option("#report-reason", "harassment")
    await bob.screenshot(path=shots / "report-desktop.png")
    filed = mod.expect("report_filed", timeout=20)
    await bob.get_by_role("button", name="Send report").click()
    report = (await filed)["report"]
    assert report["reason"] == "harassment"
    assert report["participant"]["name"] == "Alice" and report["reporter"]["name"] == "Bob"
    assert report["evidence"] >= 1  # her masked chat was kept as evidence
    await bob.wait_for_selector("#notices .notice:has-text('your report was sent')", timeout=20000)
    assert await bob.locator("#report-reason").count() == 0  # the form closed

    # The moderator mutes Alice's microphone: she is told, Bob is not.
    await mod.request(
        {
            "type": "moderate",
            "action": "mute",
            "participant": report["participant"]["id"],
            "kind": "audio",
        }
    )
    await alice.wait_for_selector(
        "#notices .notice:has-text('A moderator muted your microphone')", timeout=20000
    )
    assert not [n for n in await notices(bob) if "muted" in n]

    # On the phone the People tab and its report form fit the screen.
    await alice.click("#tab-people")
    await alice.get_by_role("button", name="Report Bob").click()
    await alice.wait_for_selector("#report-reason")
    box = await alice.locator(".report-form").bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    await alice.locator(".report-form").scroll_into_view_if_needed()
    await alice.screenshot(path=shots / "report-phone.png")
    await bob.screenshot(path=shots / "moderation-desktop.png")
    for page in (alice, bob):
        assert page.errors == []
