"""Admin API and health/metrics endpoints, over real HTTP."""

from __future__ import annotations

import time

import aiohttp

from commhub import auth
from tests.conftest import SECRET, Running
from tests.helpers.http import admin_headers, call
from tests.helpers.wait import barrier


async def test_list_and_show_rooms(hub: Running, http: aiohttp.ClientSession) -> None:
    await hub.joined("desk-1", "agent", speak="ko", read="ko")
    await hub.joined("desk-1", "resident", speak="en", read="en")
    await hub.joined("desk-2", "solo")
    status, body = await call(http, "GET", f"{hub.url}/v1/admin/rooms", headers=admin_headers())
    assert status == 200
    assert {r["name"]: r["participants"] for r in body["rooms"]} == {"desk-1": 2, "desk-2": 1}
    status, room = await call(
        http, "GET", f"{hub.url}/v1/admin/rooms/desk-1", headers=admin_headers("desk-1")
    )
    assert status == 200
    assert room["languages"] == {"speak": ["en", "ko"], "read": ["en", "ko"]}
    assert sorted(p["identity"] for p in room["participants"]) == ["agent", "resident"]
    status, body = await call(
        http, "GET", f"{hub.url}/v1/admin/rooms/nope", headers=admin_headers()
    )
    assert (status, body["error"]) == (404, "room_not_found")


async def test_refusals(hub: Running, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "GET", f"{hub.url}/v1/admin/rooms")
    assert (status, body["error"]) == (401, "token_missing")
    user = auth.issue(SECRET, room="desk-1", identity="u")
    status, body = await call(
        http, "GET", f"{hub.url}/v1/admin/rooms", headers={"Authorization": f"Bearer {user}"}
    )
    assert (status, body["error"]) == (403, "forbidden")
    # An admin of one room may not list every room or act on another.
    status, _ = await call(
        http, "GET", f"{hub.url}/v1/admin/rooms", headers=admin_headers("desk-1")
    )
    assert status == 403
    status, _ = await call(
        http, "DELETE", f"{hub.url}/v1/admin/rooms/desk-2", headers=admin_headers("desk-1")
    )
    assert status == 403


async def test_remove_participant(hub: Running, http: aiohttp.ClientSession) -> None:
    watcher = await hub.joined("desk-1", "agent")
    rude = await hub.joined("desk-1", "rude")
    await watcher.expect("participant_joined")
    status, _ = await call(
        http,
        "DELETE",
        f"{hub.url}/v1/admin/rooms/desk-1/participants/rude",
        headers=admin_headers(),
    )
    assert status == 204
    assert (await rude.expect("bye"))["reason"] == "removed"
    assert await rude.closed() == 4004
    left = await watcher.expect("participant_left")
    assert (left["participant"]["identity"], left["reason"]) == ("rude", "removed")
    status, body = await call(
        http,
        "DELETE",
        f"{hub.url}/v1/admin/rooms/desk-1/participants/rude",
        headers=admin_headers(),
    )
    assert (status, body["error"]) == (404, "participant_not_found")


async def test_close_room(hub: Running, http: aiohttp.ClientSession) -> None:
    a = await hub.joined("desk-1", "a")
    b = await hub.joined("desk-1", "b")
    other = await hub.joined("desk-2", "c")
    status, _ = await call(
        http, "DELETE", f"{hub.url}/v1/admin/rooms/desk-1", headers=admin_headers()
    )
    assert status == 204
    for c in (a, b):
        assert (await c.expect("bye"))["reason"] == "room_closed"
        assert await c.closed() == 4005
    assert hub.hub.rooms.get("desk-1") is None
    await barrier(other)  # still connected


async def test_mint_token(hub: Running, http: aiohttp.ClientSession) -> None:
    spec = {"room": "desk-3", "identity": "guest-9", "speak": "ko", "read": "en", "ttl": 600}
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/tokens", json=spec, headers=admin_headers()
    )
    assert status == 201
    claims = auth.verify(SECRET, body["token"])
    assert (claims.room, claims.identity, claims.speak, claims.read) == (
        "desk-3",
        "guest-9",
        "ko",
        "en",
    )
    c = await hub.client()
    await c.close()
    for bad, code in (
        ({"room": "desk-3", "identity": "x", "grants": ["root"]}, "invalid_request"),
        ({"room": "desk-3", "identity": "x", "evil": 1}, "invalid_request"),
        ({"identity": "x"}, "invalid_request"),
    ):
        status, body = await call(
            http, "POST", f"{hub.url}/v1/admin/tokens", json=bad, headers=admin_headers()
        )
        assert (status, body["error"]) == (400, code)
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/tokens", data=b"{oops", headers=admin_headers()
    )
    assert (status, body["error"]) == (400, "bad_json")


async def test_hostile_admin_bodies(hub: Running, http: aiohttp.ClientSession) -> None:
    url = f"{hub.url}/v1/admin/tokens"
    nested = b'{"room": "r", "identity": "x", "name": ' + b"[" * 32000 + b"]" * 32000 + b"}"
    # An anonymous caller is refused before its body is read.
    status, body = await call(http, "POST", url, data=nested)
    assert (status, body["error"]) == (401, "token_missing")
    status, body = await call(http, "POST", url, data=nested, headers=admin_headers())
    assert (status, body["error"]) == (400, "invalid_request")
    room_admin = admin_headers("desk-3")
    for bad, code in (
        (b'{"room": "desk-3", "identity": "x", "ttl": 1e400}', 400),  # infinity
        (b'{"room": "desk-3", "identity": "x", "ttl": 604801}', 400),  # over the cap
        (b'{"room": "desk-3", "identity": "x", "ttl": true}', 400),
        (b'{"room": "desk-3", "identity": "x", "name": "Eve \\ud800"}', 400),
        (b'{"room": "other", "identity": "x"}', 403),  # not this admin's room
    ):
        status, body = await call(http, "POST", url, data=bad, headers=room_admin)
        assert status == code, (bad, status, body)
    spec = {"room": "desk-3", "identity": "x", "grants": ["admin"], "ttl": 604800}
    status, body = await call(http, "POST", url, json=spec, headers=room_admin)
    assert status == 201
    assert auth.verify(SECRET, body["token"]).expires <= time.time() + 604800 + 1


async def test_health_and_metrics(hub: Running, http: aiohttp.ClientSession) -> None:
    assert await call(http, "GET", f"{hub.url}/healthz") == (200, {"status": "ok"})
    a = await hub.joined("m", "a")
    await a.send({"type": "chat", "text": "x"})
    await a.expect("chat")
    await a.ws.send_str("{bad")
    await a.expect("error")
    status, ready = await call(http, "GET", f"{hub.url}/readyz")
    assert status == 200 and ready["participants"] == 1 and ready["rooms"] == 1
    status, text = await call(http, "GET", f"{hub.url}/metrics")
    assert status == 200
    for line in (
        "commhub_connections 1.0",
        "commhub_rooms 1.0",
        "commhub_participants 1.0",
        'commhub_messages_in_total{type="chat"} 1.0',
        'commhub_messages_out_total{type="chat"} 1.0',
        'commhub_messages_out_total{type="joined"} 1.0',
        'commhub_errors_total{code="bad_json"} 1.0',
    ):
        assert line in text, line
    assert 'commhub_message_handle_seconds_count{type="chat"} 1.0' in text
