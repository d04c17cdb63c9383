"""The call page says when the room records (joined.recording, then `recording`), in the
reader's interface language."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from commhub import auth
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.audio import silence, write_wav
from tests.helpers.browser import Browser, chromium, wait_state, wav48k
from tests.helpers.http import admin_headers, call

pytestmark = pytest.mark.e2e


@pytest.fixture
async def browser(tmp_path: Path) -> AsyncIterator[Browser]:
    quiet = wav48k(write_wav(tmp_path / "quiet.wav", silence(1.0)), tmp_path / "quiet48.wav")
    async with chromium(quiet) as b:
        yield b


def url(hub: Running, identity: str, **claims: object) -> str:
    token = auth.issue(SECRET, room="desk", identity=identity, **claims)  # type: ignore[arg-type]
    return f"{hub.url}/?token={token}&autojoin=1&mic=0&cam=0&processing=off"


async def test_the_page_shows_whether_the_room_records(
    start_hub: StartHub, browser: Browser, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(captions=False, translation=False)
    ko = await browser.page(url(hub, "minji", record=True), lang="ko-KR")
    await wait_state(ko, "connected")
    badge = ko.locator("#recording")
    await badge.wait_for(state="visible", timeout=20_000)
    assert await badge.inner_text() == "이 방은 기록됩니다"
    hint = "이 방은 말한 내용과 채팅, 그 번역을 기록합니다."
    assert await badge.get_attribute("aria-label") == hint

    en = await browser.page(url(hub, "tom"))
    await wait_state(en, "connected")
    await en.locator("#recording").wait_for(state="visible", timeout=20_000)
    assert await en.locator("#recording").inner_text() == "This room records"

    status, _ = await call(
        http, "PUT", f"{hub.url}/v1/rooms/desk/policy", json={"recording": False},
        headers=admin_headers(),
    )  # fmt: skip
    assert status == 200
    for page in (ko, en):  # told at once, no rejoin
        await page.locator("#recording").wait_for(state="hidden", timeout=20_000)
    assert not ko.errors and not en.errors
