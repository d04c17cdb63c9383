"""The desk's visitor page on a hub of two nodes: the page and its queue connection come from
node B, the desk runs on node A. The desk connection (desklink.js) and then the call in the
page's frame (commhub.js) are both redirected to A with their query, and the visitor is
taken into a call with an agent there (signalling/PROTOCOL.md, "Several nodes")."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.conftest import StartHub
from tests.e2e.test_call_page import artifacts
from tests.e2e.test_desk_pages import call_frame
from tests.helpers.audio import speech_wav
from tests.helpers.browser import PHONE, chromium, wav48k
from tests.helpers.desks import agent, make_desk, room_client
from tests.helpers.services import RedisServer
from tests.test_sdk_redirect import owned_by, start_node

pytestmark = pytest.mark.e2e


@pytest.fixture
def speech(tmp_path: Path) -> Path:
    raw = speech_wav(tmp_path / "raw.wav", "Hello, I have a question about my residence card.")
    return wav48k(raw, tmp_path / "speech48.wav")


async def test_a_visitor_at_one_node_is_served_by_the_desks_node(
    start_hub: StartHub,
    redis_server: RedisServer,
    http: aiohttp.ClientSession,
    speech: Path,
    tmp_path: Path,
) -> None:
    a = await start_node(start_hub, redis_server, "node-a")
    b = await start_node(start_hub, redis_server, "node-b")
    await make_desk(a, http, "support", title="Support", languages=["en"], assign="auto")
    await owned_by(a, "desk.support")  # the desk (its queue and its calls) runs on A
    minji, _ = await agent(a, "support", "agent-minji", ["en"])

    async with chromium(speech) as browser:
        page = await browser.page(f"{b.url}/desk/support?processing=off")
        await page.wait_for_selector("#prejoin:not([hidden]) #speak-select option",
                                     state="attached")  # fmt: skip
        await page.get_by_label("Your name").fill("Resident")
        await page.get_by_label("I speak").select_option("en")
        await page.get_by_label("I read").select_option("en")
        await page.get_by_role("button", name="Join the queue").click()

        # An available agent on an auto desk: the visitor is taken at once, on A.
        assigned = await minji.expect("desk_assigned", timeout=30)
        await page.wait_for_function("window.desklink?.state === 'connected'", timeout=30000)
        link = await page.evaluate(
            "({node: desklink.node, http: desklink.http, redirects: desklink.redirects,"
            " state: desklink.state})"
        )
        assert link == {"node": a.url, "http": b.url, "redirects": 1, "state": "connected"}
        agent_call = await room_client(a, assigned)  # the session's room runs on A too
        call = await call_frame(page)  # the page's call: connected, both in it
        hub = await call.evaluate(
            "({node: commhub.node, http: commhub.http, redirects: commhub.redirects})"
        )
        assert hub == {"node": a.url, "http": b.url, "redirects": 1}
        assert b.hub.rooms.get(assigned["room"]) is None
        room = a.hub.rooms.get(assigned["room"])
        assert room is not None and len(room.participants) == 2

        await call.evaluate("commhub.chat('Where do I renew my residence card?')")
        said = await agent_call.expect("chat", timeout=20)
        assert said["text"] == "Where do I renew my residence card?"
        await page.screenshot(path=artifacts(tmp_path) / "desk-redirect.png")
        await page.set_viewport_size(PHONE)
        await page.screenshot(path=artifacts(tmp_path) / "desk-redirect-phone.png")
        assert page.errors == [], page.errors
