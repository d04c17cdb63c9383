"""Transcripts through a real hub: chat from real clients, captions from the real captions
pipeline, stored by the real store (SQLite), exported through the HTTP API and the CLI and
read back with real parsers; the transcript grant; retention; erasure of one identity."""

from __future__ import annotations

import asyncio
import html
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import srt
import webvtt
from aiortc.contrib.media import MediaPlayer
from yarl import URL

from commhub import auth
from commhub.sdk import RoomClient
from commhub.server.transcript_api import RETENTION
from commhub.store.retention import identity_key
from tests.conftest import SECRET, LoopWatch, Running, StartHub, run_cli
from tests.helpers.audio import KO_PHRASES, KO_WORDS, korean_speech, write_wav
from tests.helpers.http import admin_headers, call
from tests.helpers.media import LOOPBACK
from tests.helpers.translate import needs_apertium
from tests.helpers.wait import barrier, wait_for

KO_TEXT = " ".join(KO_WORDS)
QUESTION = "Where is the city hall?"


def seconds(stamp: str) -> float:
    """A WebVTT timestamp (hh:mm:ss.mmm) in seconds."""
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def fetch(
    http: aiohttp.ClientSession, hub: Running, room: str, headers: dict[str, str] | None = None,
    **query: str,
) -> tuple[int, str, aiohttp.ClientResponse]:  # fmt: skip
    url = f"{hub.url}/v1/rooms/{room}/transcript"
    async with http.get(url, params=query, headers=headers or admin_headers()) as resp:
        return resp.status, await resp.text(), resp


async def lines(http: aiohttp.ClientSession, hub: Running, room: str) -> list[dict[str, Any]]:
    status, body, _ = await fetch(http, hub, room, format="json")
    if status == 404:
        return []
    assert status == 200, body
    found: list[dict[str, Any]] = json.loads(body)["lines"]
    return found


async def wait_lines(
    http: aiohttp.ClientSession, hub: Running, room: str, want: Any, what: str
) -> list[dict[str, Any]]:
    """Poll the transcript until want(lines) (the store writes captions asynchronously)."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(60):
        while not want(got := await lines(http, hub, room)):
            await asyncio.sleep(0.2)
    assert want(got), what
    return got


async def finals_saying(client: RoomClient, words: list[str]) -> list[dict[str, Any]]:
    """The caption finals a client received, once together they say `words` (a pause in
    the speech may end an utterance early: then two finals say it)."""

    def finals() -> list[dict[str, Any]]:
        return [m for m in client.received("caption") if m["final"]]

    def heard() -> list[str]:
        return " ".join(m["text"] for m in finals()).split()

    await wait_for(lambda: len(heard()) >= len(words), 90, f"captions saying {words}")
    assert heard() == words
    return finals()


async def say(client: Any, text: str) -> dict[str, Any]:
    """A chat through a signalling client; its echo comes once the store committed it."""
    reply: dict[str, Any] = await client.request({"type": "chat", "text": text})
    assert reply["type"] == "chat", reply
    return reply


# -- a recorded call ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def korean_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_wav(tmp_path_factory.mktemp("transcripts") / "ko.wav", korean_speech(0.5, 1.5))


class Call:
    """SDK clients in real WebRTC calls with the hub, playing files as microphones."""

    def __init__(self, hub: Running) -> None:
        self.hub = hub
        self.clients: list[RoomClient] = []
        self.players: list[MediaPlayer] = []

    async def join(self, room: str, identity: str, **kw: Any) -> RoomClient:
        c = RoomClient(self.hub.url, self.hub.token(room, identity, **kw), ice_hosts=LOOPBACK)
        self.clients.append(c)
        await c.connect()
        return c

    async def speak(self, client: RoomClient, path: Path) -> None:
        player = MediaPlayer(str(path))
        self.players.append(player)
        assert player.audio is not None
        await client.publish(player.audio)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for p in self.players:
            if p.audio is not None:
                p.audio.stop()


@pytest.fixture
async def hub(start_hub: StartHub) -> Running:
    """A hub whose rooms record (a transcript holds only what was said while recording)."""
    return await start_hub(recording=True)


@pytest.fixture
async def call_hub(start_hub: StartHub) -> Running:
    return await start_hub(
        ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES}, recording=True
    )


@pytest.fixture
async def calls(call_hub: Running) -> AsyncIterator[Call]:
    c = Call(call_hub)
    yield c
    await c.close()


@pytest.mark.e2e
@needs_apertium
async def test_a_recorded_call_exports_what_was_said(
    calls: Call, call_hub: Running, korean_wav: Path, http: aiohttp.ClientSession
) -> None:
    hub = call_hub
    minji = await calls.join("desk", "minji", name="Minji", speak="ko", read="es")
    carlos = await calls.join("desk", "carlos", name="Carlos", speak="en", read="es")
    await calls.speak(minji, korean_wav)
    captions = await finals_saying(carlos, KO_WORDS)  # one final, or two if it paused
    n = len(captions)
    translated = minji.expect("chat", timeout=30, text=QUESTION)
    await carlos.send({"type": "chat", "text": QUESTION})
    chat = await translated
    spanish = chat["translation"]
    assert spanish["status"] == "ok" and spanish["text"]

    stored = await wait_lines(
        http, hub, "desk",
        lambda ls: [line["kind"] for line in ls] == ["caption"] * n + ["chat"],
        "the caption finals and the chat line in the transcript",
    )  # fmt: skip
    assert [(line["kind"], line["identity"], line["text"]) for line in stored] == [
        *[("caption", "minji", c["text"]) for c in captions],
        ("chat", "carlos", QUESTION),
    ]
    said = [c["text"] for c in captions]

    # WebVTT: a voice per speaker, times from the first line, the text as said
    status, body, resp = await fetch(http, hub, "desk", format="vtt")
    assert status == 200 and resp.content_type == "text/vtt" and resp.charset == "utf-8"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="desk.vtt"'
    cues = list(webvtt.from_string(body))
    assert [c.voice for c in cues] == ["Minji"] * n + ["Carlos"]
    assert [html.unescape(c.text) for c in cues] == [*said, QUESTION]
    assert cues[0].start == "00:00:00.000"
    for cue, c in zip(cues, captions, strict=False):  # the captions' own times
        begin = c["start"] - captions[0]["start"]
        assert seconds(cue.start) == pytest.approx(begin, abs=0.002)
        assert seconds(cue.end) == pytest.approx(begin + c["end"] - c["start"], abs=0.002)

    # SubRip in Spanish: the chat as Minji read it; the Korean captions have no Spanish
    async with asyncio.timeout(30):  # the chat's translation is a later write than the chat
        while spanish["text"] not in (await fetch(http, hub, "desk", format="srt", lang="es"))[1]:
            await asyncio.sleep(0.2)
    status, body, resp = await fetch(http, hub, "desk", format="srt", lang="es")
    assert status == 200 and resp.content_type == "application/x-subrip"
    assert resp.headers["Content-Disposition"] == 'attachment; filename="desk.es.srt"'
    subs = list(srt.parse(body))
    assert [s.index for s in subs] == list(range(1, n + 2))
    assert subs[0].start == timedelta(0)
    assert [s.content for s in subs] == [
        *[f"Minji: [ko] {text}" for text in said],
        f"Carlos: {spanish['text']}",
    ]

    # bilingual WebVTT: the original above its translation
    status, body, _ = await fetch(http, hub, "desk", format="vtt", lang="es", bilingual="1")
    cues = list(webvtt.from_string(body))
    assert html.unescape(cues[-1].text) == f"{QUESTION}\n{spanish['text']}"

    # JSON: every field, the times as the hub sent them
    status, body, resp = await fetch(http, hub, "desk", format="json", lang="es")
    assert status == 200 and resp.content_type == "application/json"
    doc = json.loads(body)
    first, last = doc["lines"][0], doc["lines"][-1]
    wall = captions[0]["track_start"] + captions[0]["start"]
    assert doc["started_at"] == pytest.approx(wall, abs=0.002)
    assert (first["participant"], first["name"], first["lang"]) == (minji.pid, "Minji", "ko")
    assert first["untranslated"] and last["shown"] == {"lang": "es", "text": spanish["text"]}
    assert last["at"] == pytest.approx(chat["ts"], abs=0.002)  # the chat's own time
    assert last["start"] == pytest.approx(chat["ts"] - wall, abs=0.002)

    # plain text, also through the CLI (which calls the same API)
    status, body, resp = await fetch(http, hub, "desk", format="txt")
    assert status == 200 and resp.content_type == "text/plain"
    text = body.splitlines()
    assert text[0] == f"[00:00:00] Minji: {said[0]}" and len(text) == n + 1
    assert text[-1].endswith(f"] Carlos: {QUESTION}")
    token = auth.issue(SECRET, room="desk", identity="minji", grants=["transcript"])
    done = await asyncio.to_thread(
        run_cli, "transcript", "desk", "--base-url", hub.url, "--token", token, "--format", "txt"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == body


@pytest.mark.e2e
async def test_a_room_that_does_not_record_keeps_no_transcript(
    start_hub: StartHub, korean_wav: Path, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), caption_phrases={"ko": KO_PHRASES})
    calls = Call(hub)
    try:
        # the same speech in two rooms at once; only the one whose policy records keeps it
        status, body = await call(
            http, "PUT", f"{hub.url}/v1/rooms/on/policy", json={"recording": True},
            headers=admin_headers(),
        )  # fmt: skip
        assert status == 200, body
        speakers, listeners = [], []
        for room in ("on", "off"):
            speakers.append(await calls.join(room, "minji", name="Minji", speak="ko", read="ko"))
            listeners.append(await calls.join(room, "carlos", speak="ko", read="ko"))
        for speaker in speakers:
            await calls.speak(speaker, korean_wav)
        for listener in listeners:  # both rooms were captioned
            await finals_saying(listener, KO_WORDS)
        for speaker in speakers:
            await speaker.send({"type": "chat", "text": "chat is kept"})
        await wait_lines(
            http, hub, "on", lambda ls: {line["kind"] for line in ls} == {"caption", "chat"},
            "the recording room's caption and chat",
        )  # fmt: skip
        assert await lines(http, hub, "off") == []  # read after "on" had both: nothing kept
        # its chat is still history: a newcomer gets it, though no transcript has it
        joined = await (await hub.client("off", "newcomer")).join()
        assert [m["text"] for m in joined["chat"]] == ["chat is kept"]
    finally:
        await calls.close()


# -- who may read a transcript -------------------------------------------------------------


async def test_the_transcript_grant_reads_its_own_room_only(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    for room in ("a", "b"):
        await say(await hub.joined(room, "alice"), f"hello {room}")
    reader = bearer(auth.issue(SECRET, room="a", identity="auditor", grants=["transcript"]))
    status, body, _ = await fetch(http, hub, "a", reader, format="json")
    assert status == 200 and [line["text"] for line in json.loads(body)["lines"]] == ["hello a"]
    status, body, _ = await fetch(http, hub, "b", reader, format="json")
    assert (status, json.loads(body)["error"]) == (403, "forbidden")
    assert "another room" in json.loads(body)["message"]

    # a participant's ordinary token, and another room's admin, are refused
    plain = bearer(auth.issue(SECRET, room="a", identity="alice"))
    status, body, _ = await fetch(http, hub, "a", plain)
    assert (status, json.loads(body)["error"]) == (403, "forbidden")
    assert "transcript grant" in json.loads(body)["message"]
    status, body, _ = await fetch(http, hub, "b", admin_headers("a"))
    assert (status, json.loads(body)["error"]) == (403, "forbidden")
    status, _, _ = await fetch(http, hub, "a", admin_headers("a"))
    assert status == 200

    # no token, a forged one, an expired one
    status, body, _ = await fetch(http, hub, "a", {"X": "y"})
    assert (status, json.loads(body)["error"]) == (401, "token_missing")
    forged = auth.issue("another-secret-" + "y" * 40, room="a", identity="x", grants=["transcript"])
    status, body, _ = await fetch(http, hub, "a", bearer(forged))
    assert (status, json.loads(body)["error"]) == (401, "token_bad_signature")

    # the grant can be minted by the admin API and the CLI
    status, minted = await call(
        http, "POST", f"{hub.url}/v1/admin/tokens", headers=admin_headers(),
        json={"room": "a", "identity": "auditor2", "grants": ["transcript"]},
    )  # fmt: skip
    assert status == 201
    assert auth.verify(SECRET, minted["token"]).grants == frozenset({"transcript"})
    done = await asyncio.to_thread(
        run_cli, "token", "--room", "a", "--identity", "au", "--grant", "transcript",
        env={**os.environ, "COMMHUB_SECRET": SECRET},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    status, body, _ = await fetch(http, hub, "a", bearer(done.stdout.strip()), format="txt")
    assert status == 200 and body.endswith("] alice: hello a\n")

    # and a join link may carry it (never more than the invite's grants)
    status, made = await call(
        http, "POST", f"{hub.url}/v1/admin/invites", headers=admin_headers(),
        json={"room": "a", "grants": ["chat", "transcript"]},
    )  # fmt: skip
    assert status == 201, made
    status, got = await call(
        http, "POST", f"{hub.url}/v1/invites/{made['code']}/redeem", json={"name": "Visitor"}
    )
    assert status == 200, got
    assert auth.verify(SECRET, got["token"]).grants == frozenset({"chat", "transcript"})
    status, _, _ = await fetch(http, hub, "a", bearer(got["token"]), format="vtt")
    assert status == 200


async def test_unknown_room_and_bad_queries_get_precise_errors(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    await say(await hub.joined("a", "alice"), "hi")
    cases: list[tuple[dict[str, str], int, str, str]] = [
        ({"format": "docx"}, 400, "invalid_format", "vtt, srt, json, txt"),
        ({"format": "v" * 5000}, 400, "invalid_format", "format must be"),
        ({"format": "vtt\x00"}, 400, "invalid_format", "format must be"),
        ({"lang": "x" * 5000}, 400, "invalid_language", "language tag"),
        ({"lang": "en\ud800"}, 400, "invalid_language", "language tag"),
        ({"lang": "e n"}, 400, "invalid_language", "language tag"),
        ({"bilingual": "1"}, 400, "invalid_request", "bilingual needs lang"),
        ({"bilingual": "maybe", "lang": "en"}, 400, "invalid_request", "1 or 0"),
        ({"colour": "red"}, 400, "invalid_request", "unknown query parameter"),
        ({"\udc80": "x"}, 400, "invalid_request", "unknown query parameter"),
    ]
    for query, want, code, words in cases:
        url = f"{hub.url}/v1/rooms/a/transcript?" + "&".join(
            f"{_pct(k)}={_pct(v)}" for k, v in query.items()
        )
        async with http.get(URL(url, encoded=True), headers=admin_headers()) as r:
            body = await r.json()
            assert (r.status, body["error"]) == (want, code), (query, body)
            assert words in body["message"], (query, body)
            assert len(body["message"]) < 300  # never the hostile value echoed whole
    url = f"{hub.url}/v1/rooms/a/transcript?format=vtt&format=srt"
    status, body = await call(http, "GET", url, headers=admin_headers())
    assert (status, body["error"]) == (400, "invalid_request")
    assert "more than once" in body["message"]
    status, body, _ = await fetch(http, hub, "nowhere", format="vtt")
    assert (status, json.loads(body)["error"]) == (404, "room_not_found")
    status, body, _ = await fetch(http, hub, "bad%20room", format="vtt")
    assert (status, json.loads(body)["error"]) == (400, "room_invalid")
    # and the hub answers as before
    status, body, _ = await fetch(http, hub, "a", format="txt")
    assert status == 200 and body.endswith("] alice: hi\n")


def _pct(text: str) -> str:
    """Percent-encode text as UTF-8, lone surrogates as their (invalid) UTF-8 bytes."""
    raw = text.encode("utf-8", "surrogatepass")
    return "".join(chr(b) if chr(b).isascii() and chr(b).isalnum() else f"%{b:02X}" for b in raw)


# -- retention ---------------------------------------------------------------------------


def evidence_file(hub: Running, name: str, age_days: float, identity: str = "alice") -> Path:
    """A file where evidence frames of `identity` in room desk are kept."""
    path = hub.hub.settings.data_dir / "evidence" / "desk" / identity_key(identity) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xff\xd8 not a real jpeg")
    then = time.time() - age_days * 86400
    os.utime(path, (then, then))
    return path


async def test_retention_purges_lines_and_evidence_older_than_it(
    start_hub: StartHub, http: aiohttp.ClientSession, loop_watch: LoopWatch
) -> None:
    hub = await start_hub(retention_days=1, retention_interval=3600, recording=True)
    alice = await hub.joined("desk", "alice")
    await say(alice, "old news")
    await say(alice, "older news")
    middle = time.time()
    await asyncio.sleep(0.05)
    await say(alice, "fresh news")
    old = evidence_file(hub, "old.jpg", age_days=2)
    young = evidence_file(hub, "young.jpg", age_days=0)  # made after `middle`

    # a purge as if a day had passed since `middle`: what came before it goes
    counts = await hub.server.app[RETENTION].purge(now=middle + 86400)
    assert counts["chat"] == 2 and counts["evidence_files"] == 1 and counts["live_chat"] == 2
    assert [line["text"] for line in await lines(http, hub, "desk")] == ["fresh news"]
    newcomer = await hub.joined("desk", "bob")
    assert newcomer.joined is not None
    assert [m["text"] for m in newcomer.joined["chat"]] == ["fresh news"]
    assert not old.exists() and young.exists()


async def test_the_periodic_purge_runs_by_itself(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    # kept for about half a second, purged every 0.2 s
    hub = await start_hub(retention_days=0.5 / 86400, retention_interval=0.2)
    alice = await hub.joined("desk", "alice")
    await say(alice, "short-lived")
    old = evidence_file(hub, "frame.jpg", age_days=1)
    await wait_for(lambda: not old.exists(), 30, "the evidence file purged")
    await wait_lines(http, hub, "desk", lambda ls: ls == [], "the chat purged")


async def test_without_retention_nothing_is_purged(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    assert hub.hub.settings.retention_days == 0  # the default: keep forever
    await say(await hub.joined("desk", "alice"), "kept")
    old = evidence_file(hub, "ancient.jpg", age_days=3650)
    retention = hub.server.app[RETENTION]
    assert not retention.running
    assert await retention.purge(now=time.time() + 3650 * 86400) == {}
    assert old.exists() and [line["text"] for line in await lines(http, hub, "desk")] == ["kept"]


# -- erasure ------------------------------------------------------------------------------


async def test_erasing_an_identity_removes_its_data_only(
    hub: Running, http: aiohttp.ClientSession, loop_watch: LoopWatch
) -> None:
    alice = await hub.joined("desk", "alice")
    bob = await hub.joined("desk", "bob")
    await say(alice, "alice one")
    await say(bob, "bob one")
    await say(await hub.joined("other", "alice"), "alice elsewhere")
    await barrier(alice, bob)
    store = hub.hub.store
    assert store is not None
    await store.add_report({"room": "desk", "reporter": "bob", "subject": "alice", "reason": "x"})
    await store.add_report({"room": "desk", "reporter": "carol", "subject": "dave", "reason": "y"})
    hers = [evidence_file(hub, f"{i}.jpg", 0) for i in range(2)]
    hers.append(evidence_file(hub, "0.json", 0))
    his = evidence_file(hub, "0.jpg", 0, identity="bob")

    status, body = await call(http, "DELETE", f"{hub.url}/v1/identities/alice",
                              headers=admin_headers("desk"))  # fmt: skip
    assert (status, body["error"]) == (403, "forbidden")  # a room's admin may not
    status, body = await call(http, "DELETE", f"{hub.url}/v1/identities/alice",
                              headers=admin_headers())  # fmt: skip
    assert status == 200, body
    assert body["identity"] == "alice"
    assert body["erased"]["chat"] == 2 and body["erased"]["reports"] == 1
    assert body["erased"]["evidence_files"] == 3
    assert not any(p.exists() for p in hers) and his.exists()
    assert [line["identity"] for line in await lines(http, hub, "desk")] == ["bob"]
    assert await lines(http, hub, "other") == []  # every room's
    assert [r["reporter"] for r in await store.reports()] == ["carol"]
    assert body["erased"]["live_chat"] == 2  # desk's and other's history in memory
    newcomer = await hub.joined("desk", "erin")
    assert newcomer.joined is not None
    assert [m["text"] for m in newcomer.joined["chat"]] == ["bob one"]

    # again: nothing left; through the CLI
    done = await asyncio.to_thread(
        run_cli, "erase", "alice", "--base-url", hub.url, "--token",
        auth.issue(SECRET, room="*", identity="ops", grants=["admin"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "erased 0 item(s)" in done.stderr and "chat\t0" in done.stdout


async def test_erase_refuses_bad_identities(hub: Running, http: aiohttp.ClientSession) -> None:
    long = "x" * 129
    status, body = await call(http, "DELETE", f"{hub.url}/v1/identities/{long}",
                              headers=admin_headers())  # fmt: skip
    assert (status, body["error"]) == (400, "invalid_request")
    url = URL(f"{hub.url}/v1/identities/%ED%A0%80", encoded=True)
    async with http.delete(url, headers=admin_headers()) as r:
        assert r.status in (200, 400)  # decoded as U+FFFD (a valid identity) or refused
    status, body = await call(http, "DELETE", f"{hub.url}/v1/identities/nobody",
                              headers=admin_headers())  # fmt: skip
    assert status == 200 and sum(body["erased"].values()) == 0


async def test_a_hub_without_a_store_says_so(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(store=False)
    await hub.joined("desk", "alice")
    status, body, _ = await fetch(http, hub, "desk", format="vtt")
    assert (status, json.loads(body)["error"]) == (503, "store_unavailable")
    status, body = await call(http, "DELETE", f"{hub.url}/v1/identities/alice",
                              headers=admin_headers())  # fmt: skip
    assert (status, body["error"]) == (503, "store_unavailable")


async def test_the_cli_downloads_or_says_why_not(
    hub: Running, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    await say(await hub.joined("desk", "alice"), "hello there")
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMHUB_")}

    async def cli(*args: str, **extra: str) -> Any:
        return await asyncio.to_thread(run_cli, *args, env={**env, **extra})

    # no token given: one is signed with the hub's secret (here from the environment)
    out = tmp_path / "desk.json"
    done = await cli("transcript", "desk", "--base-url", hub.url, "--format", "json",
                     "-o", str(out), COMMHUB_SECRET=SECRET)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert [line["text"] for line in json.loads(out.read_text("utf-8"))["lines"]] == ["hello there"]

    plain = auth.issue(SECRET, room="desk", identity="alice")
    done = await cli("transcript", "desk", "--base-url", hub.url, "--token", plain)
    assert done.returncode == 1 and "HTTP 403: forbidden: " in done.stderr
    reader = auth.issue(SECRET, room="desk", identity="auditor", grants=["transcript"])
    done = await cli(
        "transcript", "desk", "--base-url", hub.url, "--lang", "e n", COMMHUB_TOKEN=reader
    )
    assert done.returncode == 1 and "HTTP 400: invalid_language: " in done.stderr
    done = await cli("transcript", "bad room", "--base-url", hub.url, "--token", plain)
    assert done.returncode == 2 and "invalid room name" in done.stderr
    done = await cli(
        "transcript", "desk", "--base-url", hub.url, "--data-dir", str(tmp_path / "none")
    )
    assert done.returncode == 2 and "no token" in done.stderr
    # (--url: the flag's earlier name, still accepted)
    done = await cli("transcript", "desk", "--url", "http://127.0.0.1:9", "--token", plain)
    assert done.returncode == 1 and "cannot reach the hub at http://127.0.0.1:9" in done.stderr


async def test_any_identity_can_be_erased_by_name(
    hub: Running, http: aiohttp.ClientSession
) -> None:
    odd = "org/민지 %2F?#"  # slashes, spaces, escapes and Hangul are all a token's to carry
    await say(await hub.joined("desk", odd), "mine")
    await say(await hub.joined("desk", "org"), "not mine")
    done = await asyncio.to_thread(
        run_cli, "erase", odd, "--base-url", hub.url, "--token",
        auth.issue(SECRET, room="*", identity="ops", grants=["admin"]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "chat\t1" in done.stdout.splitlines()
    assert [line["text"] for line in await lines(http, hub, "desk")] == ["not mine"]
