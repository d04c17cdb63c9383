"""The call page on a hub of two nodes (signalling/PROTOCOL.md, "Several nodes"): a page
served by one node opens its socket at the room's owner (a cross-origin WebSocket), says so
in its `state` events, chats and is captioned there; when the owner stops it comes back
through the node that served it (its entry URL), where the room goes on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from commhub import auth
from commhub.sdk import RoomClient
from tests.conftest import SECRET, StartHub
from tests.e2e.test_call_page import artifacts, expired_token, page_url
from tests.helpers.audio import LIBRIVOX
from tests.helpers.browser import (
    DESKTOP,
    PHONE,
    chromium,
    chromium_flags,
    chromium_page,
    wait_state,
)
from tests.helpers.services import RedisServer
from tests.helpers.wait import wait_for
from tests.test_sdk_redirect import Misrouting, misrouting, owned_by, start_node

__all__ = ["misrouting"]  # the fixture, shared with the SDK's tests

pytestmark = pytest.mark.e2e

# Runs before the page's scripts: every `state` event the page's clients dispatch, with the
# node they say they are on.
RECORD_STATES = """
window.__states = [];
const dispatch = EventTarget.prototype.dispatchEvent;
EventTarget.prototype.dispatchEvent = function (e) {
  if (e.type === "state" && e.detail && "node" in e.detail)
    window.__states.push({state: e.detail.state, node: e.detail.node,
                          redirects: e.detail.redirects, reason: e.detail.reason?.code || null});
  return dispatch.call(this, e);
};
"""


@pytest.fixture
def english_speech(tmp_path: Path) -> Path:
    """A real English recording (LibriVox, pocketsphinx-testdata), looped by the browser."""
    src = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"
    if not src.is_file():
        pytest.skip("pocketsphinx-testdata is not installed")
    out = tmp_path / "english48.wav"
    subprocess.run(
        ["sox", str(src), "-r", "48000", "-c", "1", "-b", "16", str(out), "pad", "0.5", "2.5"],
        check=True,
    )
    return out


async def states(page: Any) -> list[dict[str, Any]]:
    shown: list[dict[str, Any]] = await page.evaluate("window.__states")
    return shown


async def test_a_page_served_by_one_node_calls_on_the_rooms_owner(
    start_hub: StartHub, redis_server: RedisServer, english_speech: Path, tmp_path: Path
) -> None:
    captioned = {"captions": True, "caption_preload": ["en"]}
    a = await start_node(start_hub, redis_server, "node-a", **captioned)
    b = await start_node(start_hub, redis_server, "node-b", **captioned)
    await owned_by(a, "plaza")
    owner, entry = a.url, b  # the room runs on A; B serves Bob's page
    alice_token = auth.issue(SECRET, room="plaza", identity="alice", name="Alice",
                             speak="en", read="en")  # fmt: skip
    alice = RoomClient(a.url, alice_token)
    try:
        await alice.connect()
        assert alice.node_url == owner
        await alice.negotiate()  # receive what Bob publishes (and be captioned ourselves)

        async with chromium(english_speech) as browser:
            bob_token = auth.issue(SECRET, room="plaza", identity="bob", name="Bob",
                                   speak="en", read="en")  # fmt: skip
            page = await browser.page("")
            await page.add_init_script(RECORD_STATES)
            await page.goto(page_url(entry.url, bob_token, mic="1", cam="0"))
            await wait_state(page, "connected", timeout=60)
            assert page.url.startswith(entry.url)  # the page is the entry node's
            hub = await page.evaluate(
                "({node: commhub.node, http: commhub.http, redirects: commhub.redirects})"
            )
            assert hub == {"node": owner, "http": entry.url, "redirects": 1}
            shown = await states(page)
            # connecting at the entry, a redirect (still connecting, never closed), then
            # connected at the owner
            assert "closed" not in [s["state"] for s in shown], shown
            assert shown[0] == {"state": "connecting", "node": entry.url, "redirects": 0,
                                "reason": None}  # fmt: skip
            moved = next(s for s in shown if s["reason"] == "redirect")
            assert moved["state"] == "connecting" and moved["node"] == owner, shown
            connected = [s for s in shown if s["state"] == "connected"]
            assert connected and all(s["node"] == owner for s in connected), shown

            # Chat both ways through the owner.
            heard = alice.expect("chat", timeout=30.0, text="Hello from the page")
            await page.fill("#chat-input", "Hello from the page")
            await page.press("#chat-input", "Enter")
            assert (await heard)["from"]["identity"] == "bob"
            await alice.chat("Hello from the SDK")
            await page.wait_for_selector("#chat-log li:has-text('Hello from the SDK')")

            # Bob's microphone reaches the owner: it captions him, Alice gets the finals.
            await wait_for(
                lambda: any(
                    m["final"] and m["text"].strip() and m["speaker"] != alice.pid
                    for m in alice.received("caption")
                ),
                timeout=120.0,
                what="a final caption of Bob's speech at Alice",
            )
            await page.wait_for_selector("#caption-bar:not([hidden]) .line", timeout=60000)
            await page.screenshot(path=artifacts(tmp_path) / "redirect-call.png")
            await page.set_viewport_size(PHONE)
            await page.screenshot(path=artifacts(tmp_path) / "redirect-call-phone.png")
            await page.set_viewport_size(DESKTOP)

            # The owner stops: the page comes back through its entry URL, where the room
            # now runs (the entry node takes it over).
            await a.server.close()
            await page.wait_for_function(
                f"commhub.state === 'connected' && commhub.node === '{entry.url}'",
                timeout=60000,
            )
            shown = await states(page)
            assert "closed" not in [s["state"] for s in shown], shown
            assert any(s["state"] == "reconnecting" for s in shown), shown
            assert await page.evaluate("window.__lies") == []  # never "connected" while closed
            carol = RoomClient(entry.url, entry.token("plaza", "carol"))
            try:
                await carol.connect()
                assert carol.node_url == entry.url
                heard = carol.expect("chat", timeout=30.0, text="Still here")
                await page.fill("#chat-input", "Still here")
                await page.press("#chat-input", "Enter")
                await heard
            finally:
                await carol.close()
            assert page.errors == []
    finally:
        await alice.close()


# The library in a page, at `entry` (another origin than the page's): every state it shows.
LIBRARY = """async ([entry, token]) => {
  const {CommHub} = await import('/static/commhub.js');
  const hub = new CommHub({url: entry, token, backoff: {base: 1000, max: 1000}});
  window.lib = hub;
  window.libStates = [];
  hub.addEventListener('state', (e) => window.libStates.push({state: e.detail.state,
    node: e.detail.node, redirects: e.detail.redirects, reason: e.detail.reason?.code || null,
    retryIn: e.detail.retryIn ?? null}));
  hub.join().then(() => { window.libJoined = true; }, (r) => { window.libRefused = r.code; });
}"""


async def test_the_library_probes_the_refusing_node_and_stops_a_redirect_loop(
    start_hub: StartHub, misrouting: Misrouting
) -> None:
    hub = await start_hub(captions=False, translation=False, imagery=False)
    async with chromium_page(chromium_flags()) as page:
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{hub.url}/")
        # Sent to the hub by the entry node, refused there (an expired token): why is asked
        # of the hub, which says so, never of the entry (which would take the token).
        misrouting.target = hub.url
        await page.evaluate(LIBRARY, [misrouting.url, expired_token()])
        await page.wait_for_function("window.libRefused !== undefined", timeout=30000)
        assert await page.evaluate("window.libRefused") == "token_expired"
        assert misrouting.probes == [] and len(misrouting.upgrades) == 1
        shown = await page.evaluate("window.libStates")
        assert shown[0]["node"] == misrouting.url and shown[-1]["state"] == "closed"
        assert any(s["reason"] == "redirect" and s["node"] == hub.url for s in shown), shown

        # A loop: three redirects followed, then a backoff, again and again, "connecting"
        # all along; once the entry routes to the hub, it joins there.
        misrouting.target = None
        misrouting.upgrades.clear()
        token = auth.issue(SECRET, room="plaza", identity="amy", name="Amy")
        await page.evaluate(LIBRARY, [misrouting.url, token])
        await wait_for(lambda: len(misrouting.upgrades) >= 9, 60.0, "two backoffs")
        times = [t for t, _ in misrouting.upgrades]
        for start in (4, 8):  # each burst of 1 + 3 follows a backoff (at least half a step)
            assert times[start] - times[start - 1] >= 0.5, times
        misrouting.target = hub.url
        await page.wait_for_function(
            f"window.libJoined === true && lib.node === '{hub.url}'", timeout=30000
        )
        shown = await page.evaluate("window.libStates")
        assert "closed" not in [s["state"] for s in shown], shown
        assert any(s["retryIn"] is not None for s in shown), shown  # it did back off
        # followed: three in each burst given up, then the one to the hub
        assert shown[-1]["redirects"] >= 7 and shown[-1]["state"] == "connected", shown
        assert await page.evaluate("lib.http") == misrouting.url  # the entry URL is kept
        assert misrouting.probes == []  # redirected sockets are not probed
        assert errors == [], errors


async def test_a_page_reads_why_another_node_refused(start_hub: StartHub) -> None:
    # The probe of a refused upgrade goes to the node the socket went to, which on a
    # cluster is often not the page's origin. A token that node would take reads as null
    # (426), not as "unreachable".
    page_node = await start_hub(captions=False, translation=False, imagery=False)
    owner = await start_hub(captions=False, translation=False, imagery=False)
    token = auth.issue(SECRET, room="plaza", identity="x")
    async with chromium_page(chromium_flags()) as page:
        await page.goto(f"{page_node.url}/")
        check = """async (url) => {
          const {CommHub} = await import('/static/commhub.js');
          return await CommHub.check(url);
        }"""
        assert await page.evaluate(check, f"{page_node.url}/v1/signal?access_token={token}") is None
        assert await page.evaluate(check, f"{owner.url}/v1/signal?access_token={token}") is None
