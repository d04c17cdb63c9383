"""Headless Debian Chromium driven by Playwright, with the flags WebRTC on loopback needs.

A single page (`chromium_page`), or for the call page a browser with a page per person (its
own context, `chromium`), what its connections receive (inbound RTP via getStats), and every
connection state it shows.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


def chromium_flags(
    fake_audio: Path | None = None, loop: bool = True, hide_ips_with_mdns: bool = False
) -> list[str]:
    """Flags for a test browser. With `fake_audio`, getUserMedia is granted and the microphone
    plays that WAV (16-bit PCM; once unless `loop`). From FIELD-NOTES: without mDNS hiding
    turned off and loopback allowed, ICE never completes on loopback; with hiding on, the page
    behaves as one never granted a device. Playwright gives every launch a fresh profile
    itself (it refuses --user-data-dir)."""
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--autoplay-policy=no-user-gesture-required", "--allow-loopback-in-peer-connection",
    ]  # fmt: skip
    if fake_audio is not None:
        flags += [
            "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={fake_audio}{'' if loop else '%noloop'}",
        ]  # fmt: skip
    if not hide_ips_with_mdns:
        flags.append("--disable-features=WebRtcHideLocalIpsWithMdns")
    return flags


def wav48k(src: Path, out: Path) -> Path:
    """Chrome's fake capture wants 16-bit PCM: 48 kHz mono, loudness kept."""
    subprocess.run(["sox", str(src), "-r", "48000", "-c", "1", "-b", "16", str(out)], check=True)
    return out


# Runs in every page before its scripts: remembers each state the page showed, and any
# moment it showed "connected" while its signalling socket was not open.
WATCH_STATE = """
window.__shown = [];
window.__lies = [];
setInterval(() => {
  const conn = document.getElementById("conn");
  const shown = conn ? conn.dataset.state : "";
  if (window.__shown[window.__shown.length - 1] !== shown) window.__shown.push(shown);
  const hub = window.commhub;
  if (shown === "connected" && !(hub && hub.ws && hub.ws.readyState === 1))
    window.__lies.push(Date.now());
}, 20);
"""

# What a page receives from the person named `name`: totals over its remote tracks of a kind.
INBOUND = """async ([name, kind]) => {
  const h = window.commhub;
  if (!h) return {n: 0, bytes: 0, frames: 0, via: []};
  let bytes = 0, frames = 0, n = 0; const via = [];
  for (const r of h.remote.values()) {
    const p = h.participants.get(r.participant);
    if (r.kind !== kind || !p || p.name !== name) continue;
    const s = await h.inbound(r);
    n += 1; bytes += s.bytes; frames += s.frames; via.push(r.via);
  }
  return {n, bytes, frames, via, mode: h.mode};
}"""


class Browser:
    def __init__(self, browser: Any) -> None:
        self.browser = browser
        self.pages: list[Any] = []

    async def page(
        self, url: str, viewport: dict[str, int] | None = None, lang: str = "en-US"
    ) -> Any:
        ctx = await self.browser.new_context(viewport=viewport or DESKTOP, locale=lang)
        page = await ctx.new_page()
        page.errors = []
        page.logs = []
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        page.on("console", lambda m: page.logs.append(f"{m.type}: {m.text}"))
        await page.add_init_script(WATCH_STATE)
        self.pages.append(page)
        if url:
            await page.goto(url)
        return page


@asynccontextmanager
async def _launched(flags: list[str]) -> AsyncIterator[Any]:
    """A new headless browser; skips the test when Playwright or Chromium is missing."""
    playwright_api = pytest.importorskip("playwright.async_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian chromium is not installed")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=flags)
        try:
            yield browser
        finally:
            await browser.close()


@asynccontextmanager
async def chromium(fake_audio: Path, loop: bool = True) -> AsyncIterator[Browser]:
    async with _launched(chromium_flags(fake_audio, loop)) as browser:
        yield Browser(browser)


@asynccontextmanager
async def chromium_page(flags: list[str]) -> AsyncIterator[Any]:
    """One page in a new browser."""
    async with _launched(flags) as browser:
        yield await browser.new_page()


async def inbound(page: Any, name: str, kind: str) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(INBOUND, [name, kind])
    return result


async def flowing(page: Any, name: str, kind: str, via: str, timeout: float = 30.0) -> None:
    """The page receives `kind` from `name` over `via` (hub|direct), and it keeps coming:
    bytes (audio) or decoded frames (video) rise between two readings."""
    key = "frames" if kind == "video" else "bytes"
    last: dict[str, Any] = {}
    try:
        async with asyncio.timeout(timeout):
            while True:
                first = await inbound(page, name, kind)
                if first["n"] and via in first["via"]:
                    await asyncio.sleep(0.7)
                    last = await inbound(page, name, kind)
                    if last[key] > first[key] and via in last["via"]:
                        return
                await asyncio.sleep(0.3)
    except TimeoutError:
        state = await page.evaluate(
            "({state: commhub.state, mode: commhub.mode, ...commhub.mediaState(),"
            " remote: [...commhub.remote.values()].map(r => [r.via, r.kind, r.participant,"
            " r.mid, r.meta.id]), slots: [...commhub.slots.values()].map(s => [s.mid,"
            " s.participant, s.track.kind, s.track.id]), tx: commhub.pc?.getTransceivers()"
            ".map(t => [t.mid, t.direction, t.currentDirection, t.receiver.track.kind])})"
        )
        raise AssertionError(
            f"no {kind} from {name} over {via}: {last} {state} {page.logs[-30:]}"
        ) from None


async def wait_state(page: Any, state: str, timeout: float = 30.0) -> None:
    await page.wait_for_function(
        f"document.getElementById('conn').dataset.state === '{state}'", timeout=timeout * 1000
    )


async def wait_mode(page: Any, mode: str, timeout: float = 30.0) -> None:
    await page.wait_for_function(
        f"window.commhub?.mode === '{mode}' && window.commhub.state === 'connected'",
        timeout=timeout * 1000,
    )
