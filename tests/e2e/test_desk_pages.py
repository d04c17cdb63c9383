"""The desk pages in Chromium against a real hub: a visitor's pre-join and queue screens (the
place updates live, survives a dropped connection), the agent console (the queue with
languages and topics, taking a visitor, the call with audio both ways, ending with an
outcome), and a closed and a full desk in words.

Other visitors are SDK WebSocket clients (tests/helpers/desks.py); "heard" is as in
test_call_page: the page's inbound RTP bytes from that person keep rising.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.conftest import StartHub
from tests.e2e.test_call_page import UNLABELLED, artifacts
from tests.helpers.audio import speech_wav
from tests.helpers.browser import DESKTOP, PHONE, Browser, chromium, flowing, wav48k
from tests.helpers.desks import agent_token, make_desk, room_client, visitor
from tests.helpers.media import LOOPBACK

pytestmark = pytest.mark.e2e
QUIET = {"captions": False, "translation": False}


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("desk-speech")
    raw = speech_wav(folder / "raw.wav", "Hello, this is the support desk. One two three four.")
    return wav48k(raw, folder / "speech48.wav")


class InFrame:
    """The call page inside a desk page's frame, shaped like a page for the browser helpers."""

    def __init__(self, page: Any, frame: Any) -> None:
        self.frame, self.logs = frame, page.logs

    async def evaluate(self, expression: str, arg: Any = None) -> Any:
        return await self.frame.evaluate(expression, arg)

    async def wait_for_function(self, expression: str, **kw: Any) -> Any:
        return await self.frame.wait_for_function(expression, **kw)


async def call_frame(page: Any) -> InFrame:
    """The call in `page`, once it is connected to its room."""
    handle = await page.wait_for_selector("#call-frame", timeout=30000)
    frame = await handle.content_frame()
    assert frame is not None
    await frame.wait_for_function(
        "window.commhub?.state === 'connected' && window.commhub.participants.size === 2",
        timeout=45000,
    )
    return InFrame(page, frame)


async def position(page: Any, n: int) -> None:
    await page.wait_for_function(
        f"document.getElementById('position-number').textContent === '{n}'", timeout=30000
    )


async def test_visitor_waits_and_an_agent_takes_them_into_a_call(
    start_hub: StartHub, http: aiohttp.ClientSession, speech: Path, tmp_path: Path
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), recording=True, **QUIET)
    shots = artifacts(tmp_path)
    await make_desk(
        hub, http, "support", title="Support centre for foreigners",
        languages=["ko", "en", "es"], topics=["tax", "residence", "health insurance"],
        assign="manual",
    )  # fmt: skip
    # Ana (an SDK client) is first in the queue.
    ana, waiting = await visitor(hub, http, "support", "Ana", "es", topic="residence")
    assert waiting["position"] == 1
    async with chromium(speech) as browser:
        page = await visitor_prejoin(browser, hub.url, shots)

        # Name, languages, topic; then "join the queue": second, behind Ana.
        await page.get_by_label("Your name").fill("Resident")
        await page.get_by_label("I speak").select_option("en")
        await page.get_by_label("I read").select_option("en")
        await page.get_by_label("What is it about? (optional)").select_option("tax")
        await page.get_by_role("button", name="Join the queue").click()
        await position(page, 2)
        assert await page.text_content("#position-text") == "You are number 2 in the queue"
        await page.screenshot(path=shots / "desk-queue-desktop.png")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=shots / "desk-queue-phone.png")
        await page.set_viewport_size(DESKTOP)
        # no agent yet: the wait is not known, and the page says why
        assert "not known yet" in (await page.text_content("#wait-text") or "")
        assert await page.text_content("#conn") == "Connected"

        # The connection drops: the page says the place is kept, and gets it back.
        await page.evaluate("window.desklink.ws.close()")
        await page.wait_for_selector("#queue-reconnecting:not([hidden])", timeout=10000)
        assert "Your place is kept" in (await page.text_content("#queue-reconnecting") or "")
        await page.screenshot(path=shots / "desk-queue-reconnecting-desktop.png")
        await page.wait_for_selector(
            "#queue-notice:has-text('You are back in your place')", timeout=30000
        )
        assert await page.is_hidden("#queue-reconnecting")
        await position(page, 2)
        # a reload of the tab keeps the place too (the visitor token lives in the tab)
        await page.reload()
        await page.wait_for_selector("#queue-notice:has-text('You are back in your place')")
        await position(page, 2)
        assert "Ana" not in await page.content()  # nothing of the other visitor reaches it

        # The agent console: the queue with languages, topic, waiting time and what bridges
        # them to the agent's languages.
        token = agent_token("support", "agent-minji", ["en", "ko"], name="Minji")
        console = await browser.page(f"{hub.url}/desk/support/console?processing=off#token={token}")
        await console.wait_for_selector("#queue-list li.visitor >> nth=1", timeout=30000)
        assert (await console.title()).startswith("(2) Support centre for foreigners")
        assert token not in console.url  # the token left the address bar
        assert await console.text_content("#conn") == "Desk: Connected"
        rows = await console.locator("#queue-list li.visitor").all_inner_texts()
        assert "Ana" in rows[0] and "Spanish" in rows[0] and "residence" in rows[0], rows
        assert "Resident" in rows[1] and "tax" in rows[1], rows
        assert "speaks your language" in rows[1] and "speaks your language" not in rows[0]
        # this hub runs no captions and no translation: the console says so before taking
        assert "no captions for Spanish" in rows[0] and "no translation with Korean" in rows[0]
        assert await console.get_by_role("radio", name="Available").is_checked()
        # the visitor hears that an agent signed in: an estimate now
        await page.wait_for_function(
            "!document.getElementById('wait-text').textContent.includes('not known')",
            timeout=20000,
        )
        assert await console.evaluate(UNLABELLED) == []
        await console.screenshot(path=shots / "desk-console-queue-desktop.png")
        await console.set_viewport_size(PHONE)
        await console.screenshot(path=shots / "desk-console-queue-phone.png", full_page=True)
        await console.set_viewport_size(DESKTOP)

        # "Take this one": Ana. The resident moves up to first, live.
        await console.get_by_role("button", name="Take Ana").click()
        ana_assigned = await ana.expect("desk_assigned", timeout=20)
        assert ana_assigned["with"] == {"name": "Minji"}
        await position(page, 1)
        assert await page.text_content("#position-text") == "You are next"
        await console.wait_for_selector("#session:not([hidden])")
        assert await console.text_content("#session-title") == "Session with Ana"
        # Ana never joins her call: the agent ends it with an outcome.
        await console.get_by_label("Outcome").select_option("no_show")
        await console.get_by_role("button", name="End session").click()
        await ana.expect("desk_ended", timeout=20)
        await console.wait_for_selector("#last-outcome:has-text('Visitor did not respond')")

        # "Take next": the resident. Both pages are in the call, audio both ways.
        await console.get_by_role("button", name="Take next").click()
        await page.wait_for_selector("#session:not([hidden])", timeout=20000)
        agent_call, visitor_call = await call_frame(console), await call_frame(page)
        mode = await visitor_call.evaluate("window.commhub.mode")
        via = "direct" if mode == "p2p" else "hub"
        await flowing(visitor_call, "Minji", "audio", via)
        await flowing(agent_call, "Resident", "audio", via)
        assert await console.text_content("#session-title") == "Session with Resident"
        assert await console.evaluate(UNLABELLED) == []
        # The console's desk connection drops: it signs back in, the call stays up.
        await console.evaluate("window.__frame = document.getElementById('call-frame')")
        await console.evaluate("window.desklink.ws.close()")
        await console.wait_for_selector("#conn[data-state='reconnecting']", timeout=10000)
        await console.wait_for_selector("#conn[data-state='connected']", timeout=30000)
        assert await console.evaluate("window.__frame === document.getElementById('call-frame')")
        await flowing(agent_call, "Resident", "audio", via)
        assert "Topic: tax" in (await console.text_content("#session-visitor") or "")
        await page.wait_for_selector("#call-conn[data-state='connected']")
        # this hub records transcripts: both pages say so (the call's own bar is hidden)
        for p in (page, console):
            await p.wait_for_selector("#recording:not([hidden])")
        assert await page.title() == (
            "In a call with Minji · Support centre for foreigners · commhub"
        )
        assert await page.is_hidden("#conn")  # the call's state is shown, not the queue's
        await console.screenshot(path=shots / "desk-console-session-desktop.png")
        await page.screenshot(path=shots / "desk-call-desktop.png")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=shots / "desk-call-phone.png")
        await console.set_viewport_size(PHONE)
        await console.screenshot(path=shots / "desk-console-session-phone.png", full_page=True)
        await console.set_viewport_size(DESKTOP)

        # The end, with an outcome and a note: the visitor sees the session has ended (never
        # the note), the console the outcome; the call is gone from both.
        await console.get_by_label("Outcome").select_option("resolved")
        await console.get_by_label("Note").first.fill("explained the year-end tax settlement")
        await console.get_by_role("button", name="End session").click()
        await page.wait_for_selector("#ended:not([hidden])", timeout=20000)
        assert await page.text_content("#ended-title") == "Your session has ended"
        assert "tax settlement" not in (await page.content())
        await console.wait_for_selector("#last-outcome:has-text('Session ended: Resolved.')")
        assert await page.locator("#call-frame").count() == 0
        assert await console.locator("#call-frame").count() == 0
        assert await page.is_hidden("#recording")
        await page.screenshot(path=shots / "desk-ended-phone.png")
        # "join the queue again" works on the same connection
        await page.get_by_role("button", name="Join the queue again").click()
        await position(page, 1)
        for p in (page, console):
            assert p.errors == [], p.errors


async def visitor_prejoin(browser: Browser, url: str, shots: Path) -> Any:
    """The desk's public link: its title, open, the hub's languages, the desk's topics."""
    page = await browser.page(f"{url}/desk/support?processing=off")
    await page.wait_for_selector("#prejoin:not([hidden]) #speak-select option", state="attached")
    assert await page.text_content("#prejoin-title") == "Support centre for foreigners"
    assert await page.text_content("#desk-open") == "Open now"
    speak = await page.locator("#speak-select option").all_inner_texts()
    # the desk's languages first, then the rest of what the hub knows
    assert [o.split(" ")[0] for o in speak[:3]] == ["Korean", "English", "Spanish"], speak
    topics = await page.locator("#topic-select option").all_inner_texts()
    assert topics == ["Not sure / something else", "tax", "residence", "health insurance"]
    assert await page.evaluate("document.activeElement.id") == "name-input"
    assert await page.evaluate(UNLABELLED) == []
    await page.screenshot(path=shots / "desk-prejoin-desktop.png")
    await page.set_viewport_size(PHONE)
    await page.screenshot(path=shots / "desk-prejoin-phone.png", full_page=True)
    await page.set_viewport_size(DESKTOP)
    return page


async def test_closed_and_full_desks_say_so_in_words(
    start_hub: StartHub, http: aiohttp.ClientSession, speech: Path, tmp_path: Path
) -> None:
    hub = await start_hub(**QUIET)
    shots = artifacts(tmp_path)
    tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%a").lower()
    await make_desk(
        hub, http, "closed-desk", title="Tax office", hours=f"{tomorrow} 00:00-24:00",
        timezone="UTC", closed_message="We are open tomorrow, all day.",
    )  # fmt: skip
    await make_desk(
        hub, http, "support", title="Support centre for foreigners", max_queue=1, assign="manual"
    )
    await visitor(hub, http, "support", "Ana", "es")  # the one place there is
    async with chromium(speech) as browser:
        # Closed: the pre-join screen says so with the desk's message and its reopening.
        page = await browser.page(f"{hub.url}/desk/closed-desk")
        await page.wait_for_selector("#prejoin:not([hidden])")
        assert await page.text_content("#desk-open") == "Closed"
        assert "Opens again" in (await page.text_content("#desk-wait") or "")
        assert await page.text_content("#desk-closed-message") == "We are open tomorrow, all day."
        # nothing to join until it opens
        assert await page.get_by_role("button", name="Join the queue").is_disabled()
        await page.screenshot(path=shots / "desk-closed-desktop.png")

        # Full: "try later", in Korean on a Korean phone.
        ko = await browser.page(f"{hub.url}/desk/support", viewport=PHONE, lang="ko-KR")
        await ko.wait_for_selector("#prejoin:not([hidden])")
        assert await ko.text_content("#desk-wait") == "지금은 대기열이 가득 찼습니다."
        assert await ko.text_content("#desk-open") == "대기열 가득 참"
        await ko.screenshot(path=shots / "desk-prejoin-phone-ko.png", full_page=True)
        await ko.get_by_label("이름").fill("민수")
        await ko.get_by_role("button", name="대기열에 들어가기").click()
        await ko.wait_for_selector("#unavailable:not([hidden])")
        assert await ko.text_content("#unavailable-title") == "대기열이 가득 찼습니다"
        await ko.screenshot(path=shots / "desk-full-phone-ko.png")

        # The console in Korean: Ana waits to be taken.
        token = agent_token("support", "agent-minji", ["ko"], name="민지")
        console = await browser.page(
            f"{hub.url}/desk/support/console#token={token}", viewport=PHONE, lang="ko-KR"
        )
        await console.wait_for_selector("#conn[data-state='connected']", timeout=30000)
        await console.get_by_role("radio", name="자리 비움").check()  # away: Ana stays queued
        await console.wait_for_selector("#idle-text:has-text('자리 비움 상태')")
        await console.wait_for_selector("#queue-list li.visitor:has-text('Ana')")
        assert await console.get_by_role("button", name="Ana 님 받기").is_visible()
        assert await console.text_content("#take-next") == "다음 방문자 받기"
        await console.screenshot(path=shots / "desk-console-phone-ko.png", full_page=True)

        # An unknown desk: said so, nothing to join.
        missing = await browser.page(f"{hub.url}/desk/no-such-desk")
        await missing.wait_for_selector("#ended:not([hidden])")
        assert "does not exist" in (await missing.text_content("#ended-text") or "")
        assert await missing.is_hidden("#again")
        for p in (page, ko, console, missing):
            assert p.errors == [], p.errors


async def test_an_agent_adds_a_colleague_invites_an_interpreter_and_transfers(
    start_hub: StartHub, http: aiohttp.ClientSession, speech: Path, tmp_path: Path
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), **QUIET)
    shots = artifacts(tmp_path)
    await make_desk(hub, http, "support", title="Support centre", languages=["ko", "en"],
                    assign="manual")  # fmt: skip
    ana, _ = await visitor(hub, http, "support", "Ana", "es")
    async with chromium(speech) as browser:
        minji = await browser.page(
            f"{hub.url}/desk/support/console#token="
            + agent_token("support", "agent-minji", ["en"], name="Minji")
        )
        jiho = await browser.page(
            f"{hub.url}/desk/support/console#token="
            + agent_token("support", "agent-jiho", ["ko", "en"], name="Jiho")
        )
        await minji.wait_for_selector("#agents-list li >> nth=1", timeout=30000)
        await minji.get_by_role("button", name="Take Ana").click()
        ana_assigned = await ana.expect("desk_assigned", timeout=20)
        await minji.wait_for_selector("#session:not([hidden])")
        # Ana joins her call (a signalling client) and writes; Minji answers in the call page.
        ana_room = await room_client(hub, ana_assigned)
        await ana_room.send({"type": "chat", "text": "Hola, necesito ayuda"})
        handle = await minji.wait_for_selector("#call-frame")
        frame = await handle.content_frame()
        assert frame is not None
        await frame.wait_for_selector("#chat-log li:has-text('necesito ayuda')", timeout=30000)
        await frame.fill("#chat-input", "One moment please")
        await frame.press("#chat-input", "Enter")
        await ana_room.expect("chat", text="One moment please", timeout=20)
        # Jiho's console: Ana left the queue, Minji is in a session
        await jiho.wait_for_selector("#queue-list li.empty")
        assert "in a session" in (await jiho.text_content("#agents-list") or "")

        # A colleague: Jiho is invited into the call, and can join it from his console.
        await minji.locator("#add-box summary").click()
        await minji.get_by_label("Colleague").select_option("agent-jiho")
        await minji.get_by_role("button", name="Add", exact=True).click()
        await minji.wait_for_selector("#add-result:has-text('Jiho was invited to the call.')")
        await jiho.wait_for_selector(
            "#invites .invite:has-text('Minji invited you to their session with Ana')"
        )
        # An interpreter: a one-use join link to send.
        await minji.get_by_role("button", name="Invite an interpreter by link").click()
        link = minji.get_by_label("Send this one-use link to the interpreter:")
        assert (await link.input_value()).startswith(f"{hub.url}/join/")
        await jiho.get_by_role("button", name="Dismiss").click()

        # Transfer to Jiho with a note: Ana goes to the front, for Jiho only.
        await minji.locator("#transfer-box summary").click()
        await minji.get_by_label("To agent (optional)").select_option("agent-jiho")
        await minji.get_by_label("Note for the next agent").fill("needs help in Korean")
        await minji.locator("#transfer-button").click()
        await minji.wait_for_selector("#last-outcome:has-text('Session ended: Transferred.')")
        assert await minji.locator("#call-frame").count() == 0
        waiting = await ana.expect("desk_waiting", timeout=20)
        assert waiting["position"] == 1 and waiting["notice"]["code"] == "transferred"
        mine = jiho.locator("#queue-list li.visitor:has-text('transferred to you')")
        await mine.wait_for(timeout=20000)
        assert "transferred by Minji" in (await mine.text_content() or "")
        theirs = minji.locator("#queue-list li.visitor")
        await theirs.filter(has_text="waiting for another agent").wait_for(timeout=20000)
        assert await minji.get_by_role("button", name="Take Ana").is_disabled()
        await jiho.get_by_role("button", name="Take Ana").click()
        await jiho.wait_for_selector(
            "#session-transfer:has-text('Note from Minji: needs help in Korean')", timeout=20000
        )
        # the chat so far came with the visitor
        lines = await jiho.locator("#transcript li").all_text_contents()
        assert any("Ana" in x and "necesito ayuda" in x for x in lines), lines
        assert any("Minji" in x and "One moment please" in x for x in lines), lines
        await jiho.wait_for_selector("#call-conn[data-state='connected']", timeout=30000)
        # Minji steps away: the desk's agents see it, and her console says what it means.
        await minji.get_by_role("radio", name="Away").check()
        await minji.wait_for_selector("#idle-text:has-text('You are away')")
        await jiho.wait_for_selector("#agents-list li:has-text('Minji · Away')")
        # a reload of her console signs her back in as she was: away
        await minji.reload()
        await minji.wait_for_selector("#conn[data-state='connected']", timeout=30000)
        assert await minji.get_by_role("radio", name="Away").is_checked()
        await jiho.wait_for_selector("#agents-list li:has-text('Minji · Away')")
        await jiho.screenshot(path=shots / "desk-console-transferred-desktop.png")
        for p in (minji, jiho):
            assert p.errors == [], p.errors
