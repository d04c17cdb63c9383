"""The store under a real hub: chat history and its translations across a restart, the
recording policy (setting, admin API, token claim) and joined.recording, caption finals in
the transcript only when the room records, a locked database in /readyz."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from typing import Any

import aiohttp
import pytest

from commhub import auth, protocol
from commhub.rooms import Room
from tests.conftest import SECRET, Running, StartHub, run_cli
from tests.helpers.http import admin_headers, call
from tests.helpers.translate import needs_apertium
from tests.helpers.wait import barrier


def without_ref(msg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in msg.items() if k != "ref"}


async def stop(hub: Running) -> None:
    """A graceful stop, as on SIGTERM (the fixture's teardown closes it again: harmless)."""
    await hub.server.close()


@needs_apertium
async def test_history_and_translations_survive_a_restart(start_hub: StartHub) -> None:
    hub = await start_hub(chat_history=5)
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    texts = ["Good morning.", "Where is the city hall?", "Thank you"]
    for text in texts:
        await a.send({"type": "chat", "text": text, "id": text})
        await a.expect("chat", ref=text)
        await b.expect("chat", text=text)
    before_es = (await hub.joined(identity="late-es", speak="es")).joined
    before_en = (await hub.joined(identity="late-en", speak="en")).joined
    assert before_es is not None and before_en is not None
    assert [m["translation"]["text"] for m in before_es["chat"]][-1] == "Gracias"
    await stop(hub)

    again = await start_hub(chat_history=5)
    after_es = (await again.joined(identity="late-es", speak="es")).joined
    after_en = (await again.joined(identity="late-en", speak="en")).joined
    assert after_es is not None and after_en is not None
    assert [m["text"] for m in after_es["chat"]] == texts
    assert after_es["chat"] == before_es["chat"]  # translated exactly as before
    assert after_en["chat"] == before_en["chat"]
    # and the next message keeps going on top of what came back
    await again.clients[0].send({"type": "chat", "text": "Thank you", "id": "x"})
    await again.clients[0].expect("chat", ref="x")
    late = await again.joined(identity="later", speak="es")
    assert late.joined is not None
    assert [m["text"] for m in late.joined["chat"]] == [*texts, "Thank you"]


async def test_recording_policy_setting_admin_api_and_token(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub()
    a = await hub.joined("desk", "a")
    assert a.joined is not None and a.joined["recording"] is False
    url = f"{hub.url}/v1/rooms/desk/policy"
    status, body = await call(http, "GET", url, headers=admin_headers("desk"))
    assert (status, body["recording"], body["policy"]) == (200, False, {"recording": None})

    status, body = await call(http, "PUT", url, json={"recording": True}, headers=admin_headers())
    assert (status, body["recording"]) == (200, True)
    assert (await a.expect("recording"))["recording"] is True  # the live room is told
    b = await hub.joined("desk", "b")
    assert b.joined is not None and b.joined["recording"] is True

    for bad in ({"recording": "yes"}, {}, {"recording": True, "more": 1}):
        status, body = await call(http, "PUT", url, json=bad, headers=admin_headers())
        assert (status, body["error"]) == (400, "invalid_request")
    status, body = await call(http, "PUT", url, json={"recording": False})
    assert (status, body["error"]) == (401, "token_missing")
    status, body = await call(
        http, "PUT", url, json={"recording": False}, headers=admin_headers("other")
    )
    assert (status, body["error"]) == (403, "forbidden")

    # a token's record claim sets the policy when its holder joins; minted by the admin API
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/tokens", headers=admin_headers(),
        json={"room": "desk", "identity": "c", "record": False},
    )  # fmt: skip
    assert status == 201 and auth.verify(SECRET, body["token"]).record is False
    c = await hub.client("desk", "c", record=False)
    assert (await c.join())["recording"] is False
    for p in (a, b):
        assert (await p.expect("recording"))["recording"] is False
    status, body = await call(http, "GET", url, headers=admin_headers())
    assert body["policy"] == {"recording": False}

    # null: back to the hub's setting, which a restart keeps too
    status, body = await call(http, "PUT", url, json={"recording": None}, headers=admin_headers())
    assert (status, body["recording"]) == (200, False)
    await stop(hub)
    again = await start_hub(recording=True)
    d = await again.joined("desk", "d")
    assert d.joined is not None and d.joined["recording"] is True


async def test_without_a_store_nothing_records(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(store=False, recording=True)
    a = await hub.joined("desk", "a", record=True)
    assert a.joined is not None and a.joined["recording"] is False
    status, body = await call(
        http, "PUT", f"{hub.url}/v1/rooms/desk/policy", json={"recording": True},
        headers=admin_headers(),
    )  # fmt: skip
    assert (status, body["error"]) == (409, "store_disabled")
    status, body = await call(http, "GET", f"{hub.url}/readyz")
    assert status == 200 and "store" not in body


def final(speaker: str, text: str, start: float) -> dict[str, Any]:
    return protocol.caption(
        segment=f"SG_{start}", speaker=speaker, lang="en", final=True, text=text,
        start=start, end=start + 1.5, track_start=1_795_000_000.0, words=[], confidence=0.9,
    )  # fmt: skip


async def publish_caption(hub: Running, room: Room, msg: dict[str, Any]) -> None:
    """What LiveCaptions does with a final: the hub's outbox port, translated per reader."""
    listeners = {p.id for p in room.participants.values()}
    await hub.hub.publish_text(room, msg, msg["text"], "en", lane=msg["speaker"], to=listeners)


@needs_apertium
async def test_caption_finals_recorded_only_when_the_room_records(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub()
    speaker = await hub.joined("desk", "speaker", speak="en", name="Speaker")
    reader = await hub.joined("desk", "reader", speak="es", read="es")
    room = hub.hub.rooms.get("desk")
    assert room is not None and hub.hub.store is not None
    await publish_caption(hub, room, final(speaker.pid, "Good morning.", 1.0))
    await reader.expect("caption", text="Good morning.")
    await speaker.send({"type": "chat", "text": "not recorded", "id": "c1"})
    await speaker.expect("chat", ref="c1")

    await call(
        http, "PUT", f"{hub.url}/v1/rooms/desk/policy", json={"recording": True},
        headers=admin_headers(),
    )  # fmt: skip
    await publish_caption(hub, room, final(speaker.pid, "Thank you", 3.0))
    got = await reader.expect("caption", text="Thank you")
    await speaker.send({"type": "chat", "text": "recorded", "id": "c2"})
    await speaker.expect("chat", ref="c2")
    assert got["translation"]["text"] == "Gracias"
    partial = {**final(speaker.pid, "Thank", 5.0), "final": False}
    await publish_caption(hub, room, partial)
    await reader.expect("caption", text="Thank")
    await barrier(speaker, reader)

    async def captions() -> list[dict[str, Any]]:
        assert hub.hub.store is not None
        return [x for x in await hub.hub.store.transcript("desk") if x["kind"] == "caption"]

    lines: list[dict[str, Any]] = []

    async def recorded() -> bool:
        lines[:] = await captions()
        return bool(lines)

    deadline = time.monotonic() + 20
    while not await recorded() and time.monotonic() < deadline:
        await barrier(reader)
    assert len(lines) == 1, lines  # not the one before recording, not the partial
    line = lines[0]
    assert (line["text"], line["identity"], line["name"]) == ("Thank you", "speaker", "Speaker")
    assert line["translations"] == {"es": "Gracias"}
    assert (line["start"], line["end"]) == (1_795_000_003.0, 1_795_000_004.5)
    chat = [x["text"] for x in await hub.hub.store.transcript("desk") if x["kind"] == "chat"]
    assert chat == ["recorded"]  # the chat before is history, not transcript


async def test_a_locked_database_refuses_chat_and_shows_in_readyz(
    start_hub: StartHub, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "commhub.store")
    hub = await start_hub(store_busy_timeout=0.3)
    a = await hub.joined(identity="a")
    b = await hub.joined(identity="b")
    status, body = await call(http, "GET", f"{hub.url}/readyz")
    assert (status, body["status"], body["store"]) == (200, "ready", "ok")
    holder = sqlite3.connect(hub.hub.settings.data_dir / "commhub.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        await a.send({"type": "chat", "text": "lost?", "id": "c1"})
        err = await a.expect("error", ref="c1", timeout=20)
        assert err["code"] == "store_unavailable" and "locked" in err["message"]
        status, body = await call(http, "GET", f"{hub.url}/readyz")
        assert (status, body["status"]) == (503, "store_unavailable")
        assert "database is locked" in body["store"]
        await barrier(a, b)
        assert not b.received("chat")  # nobody got what was not saved
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    async def ready() -> bool:
        status, _ = await call(http, "GET", f"{hub.url}/readyz")
        return status == 200

    deadline = time.monotonic() + 30
    while not await ready():
        assert time.monotonic() < deadline, "the store did not recover"
        await barrier(a)
    await a.send({"type": "chat", "text": "saved", "id": "c2"})
    await a.expect("chat", ref="c2")
    assert (await b.expect("chat"))["text"] == "saved"
    errors = [r.getMessage() for r in caplog.records if r.name == "commhub.store"]
    assert any("database is locked" in e for e in errors), errors


@pytest.mark.parametrize("record", [True, False])
def test_record_claim_round_trips(record: bool) -> None:
    token = auth.issue(SECRET, room="r", identity="i", record=record)
    assert auth.verify(SECRET, token).record is record
    assert auth.verify(SECRET, auth.issue(SECRET, room="r", identity="i")).record is None


def test_cli_token_sets_the_record_claim() -> None:
    env = {**os.environ, "COMMHUB_SECRET": SECRET}
    for flag, want in (("--record", True), ("--no-record", False), (None, None)):
        args = ["token", "--room", "r", "--identity", "i"] + ([flag] if flag else [])
        done = run_cli(*args, env=env)
        assert done.returncode == 0, done.stderr
        assert auth.verify(SECRET, done.stdout.strip()).record is want
