"""Hostile input at the signalling edge: refused precisely, bounded, and the room unharmed.

Each limit is tested at and over it; each case the attacker found has its regression here."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from commhub import auth
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.wait import barrier
from tests.wsclient import SignalClient

# -- nothing unencodable enters the hub ----------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        '{"type": "chat", "text": "hi \\ud800"}',
        '{"type": "chat", "text": "tail \\udfff"}',
        '{"type": "chat", "id": "x\\ud800", "text": "hi"}',
        '{"type": "set_language", "speak": "ko", "unknown\\ud800": 1}',
        '{"type": "track", "track_id": "mic\\udc00", "muted": true}',
    ],
)
async def test_lone_surrogates_are_refused_at_the_edge(hub: Running, raw: str) -> None:
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="sender")
    await c.ws.send_str(raw)
    err = await c.expect("error")
    assert err["code"] == "invalid_message" and "surrogate" in err["message"], err
    assert "ref" not in err
    await barrier(c)
    # The room is not poisoned: a newcomer gets `joined` with the history, chat flows.
    await c.send({"type": "chat", "text": "a valid pair \U0001f600 is fine"})
    await watcher.expect("chat")
    late = await hub.joined(identity="late")
    assert late.joined is not None
    assert [m["text"] for m in late.joined["chat"]] == ["a valid pair \U0001f600 is fine"]


async def test_surrogate_in_join_name_or_sdp(hub: Running) -> None:
    c = await hub.client(identity="newcomer")
    await c.ws.send_str('{"type": "join", "name": "Eve \\ud800"}')
    assert (await c.expect("error"))["code"] == "invalid_message"
    assert hub.hub.rooms.participant_count() == 0  # nothing half-joined
    await c.join(name="Eve")
    sdp = json.dumps("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=msid:S T")
    await c.ws.send_str('{"type": "offer", "sdp": ' + sdp.replace("T", "\\ud801") + "}")
    err = await c.expect("error")
    assert err["code"] == "invalid_message", err
    await barrier(c)


async def test_deep_nesting_is_refused_without_internal_error(hub: Running) -> None:
    c = await hub.joined()
    await c.ws.send_str("[" * 32000 + "]" * 32000)
    assert (await c.expect("error"))["code"] == "invalid_message"
    await c.ws.send_str('{"type": "join", "capabilities": ' + '{"p2p": ' * 40 + "1" + "}" * 41)
    err = await c.expect("error")
    assert err["code"] == "invalid_message" and "nested" in err["message"], err
    await barrier(c)
    assert not c.received("error") or all(
        e["code"] != "internal_error" for e in c.received("error")
    )


@pytest.mark.parametrize(("length", "echoed"), [(64, True), (65, False), (60000, False)])
async def test_error_ref_stays_within_its_schema(hub: Running, length: int, echoed: bool) -> None:
    c = await hub.joined()
    ident = "i" * length
    await c.send({"type": "chat", "id": ident, "text": ""})
    err = await c.expect("error")  # the client checks it against the error schema
    assert err["code"] in ("invalid_message", "message_too_large")
    assert ("ref" in err) is echoed and err.get("ref", ident) == ident


# -- every frame counts ---------------------------------------------------------------------


async def test_binary_frames_count_against_the_flood_limit(hub: Running) -> None:
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="binary")
    for _ in range(5000):
        if c.ws.closed:
            break
        await c.ws.send_bytes(b"\x00\x01")
    assert await c.closed() == 1008
    assert c.received("error")[-1]["code"] == "flooding"
    assert (await watcher.expect("participant_left"))["participant"]["identity"] == "binary"
    await barrier(watcher)


async def test_oversize_frames_count_against_the_rate(start_hub: StartHub) -> None:
    hub = await start_hub(max_message_bytes=2048, rate_limit=5.0, rate_burst=5, flood_strikes=5)
    c = await hub.joined(identity="big")
    for _ in range(30):
        if c.ws.closed:
            break
        await c.ws.send_str("x" * 4000)
    assert await c.closed() == 1008
    codes = [e["code"] for e in c.received("error")]
    assert codes[0] == "message_too_large" and codes[-1] == "flooding", codes
    assert "rate_limited" in codes


async def test_bytes_per_second(start_hub: StartHub) -> None:
    hub = await start_hub(byte_rate=2000, byte_burst=10000, max_message_bytes=4096)
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="heavy")
    for _ in range(5):  # ~3 KB each: the 10 KB burst holds three
        await c.send({"type": "chat", "text": "y" * 3000})
    for _ in range(2):
        assert (await c.expect("error"))["code"] == "rate_limited"
    await barrier(watcher)  # the hub handled all five by now
    assert len(watcher.received("chat")) == 3
    await asyncio.sleep(1.6)  # the bucket refills at 2000 B/s
    await c.send({"type": "chat", "text": "z" * 3000})
    await c.expect("chat")


# -- admission before the upgrade -------------------------------------------------------------


async def upgrade_status(url: str, token: str, **query: str) -> tuple[int, dict[str, str]]:
    params = "".join(f"&{k}={v}" for k, v in query.items())
    async with aiohttp.ClientSession() as s:
        try:
            ws = await s.ws_connect(f"{url}/v1/signal?access_token={token}{params}")
        except aiohttp.WSServerHandshakeError as exc:
            async with s.get(f"{url}/v1/signal?access_token={token}{params}") as r:
                return exc.status, await r.json()
        await ws.close()
        return 101, {}


async def test_connections_per_address(start_hub: StartHub) -> None:
    hub = await start_hub(max_connections_per_ip=3)
    clients = [await hub.client(identity=f"u{i}") for i in range(3)]
    status, _ = await upgrade_status(hub.url, hub.token(identity="u4"))
    assert status == 429
    async with aiohttp.ClientSession() as s:  # what the refusal says, over plain HTTP
        try:
            await s.ws_connect(f"{hub.url}/v1/signal?access_token={hub.token(identity='u5')}")
        except aiohttp.WSServerHandshakeError as exc:
            assert exc.status == 429
    await clients[0].close()
    async with asyncio.timeout(5):
        while (await upgrade_status(hub.url, hub.token(identity="u6")))[0] != 101:
            await asyncio.sleep(0.05)


async def test_connections_per_identity(start_hub: StartHub) -> None:
    hub = await start_hub(max_connections_per_identity=2)
    await hub.client(identity="same")
    await hub.client(identity="same")
    status, _ = await upgrade_status(hub.url, hub.token(identity="same"))
    assert status == 429
    assert (await upgrade_status(hub.url, hub.token(identity="other")))[0] == 101
    # Another room is another identity slot.
    assert (await upgrade_status(hub.url, hub.token(room="elsewhere", identity="same")))[0] == 101


async def test_joins_per_second(start_hub: StartHub) -> None:
    hub = await start_hub(join_rate=1.0, join_burst=3)
    statuses = [(await upgrade_status(hub.url, hub.token(identity=f"j{i}")))[0] for i in range(4)]
    assert statuses == [101, 101, 101, 429]
    await asyncio.sleep(1.1)
    assert (await upgrade_status(hub.url, hub.token(identity="later")))[0] == 101


async def test_admission_refusal_says_why_over_http(start_hub: StartHub) -> None:
    hub = await start_hub(max_connections_per_identity=1)
    await hub.client(identity="once")
    async with (
        aiohttp.ClientSession() as s,
        s.get(
            f"{hub.url}/v1/signal?access_token={hub.token(identity='once')}",
            headers={"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="},
        ) as r,
    ):  # fmt: skip
        assert r.status == 429
        assert (await r.json())["error"] == "too_many_connections"


# -- tokens ---------------------------------------------------------------------------------


async def test_any_room_token_follows_the_room_name_rule(hub: Running) -> None:
    admin = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
    for bad in ("..", "-x", "a" * 129, "%F0%9F%98%80"):
        status, body = await upgrade_status(hub.url, admin, room=bad)
        assert (status, body.get("error")) == (400, "room_invalid"), (bad, status, body)
    assert (await upgrade_status(hub.url, admin, room="desk-1"))[0] == 101


async def test_a_tokens_name_stands(hub: Running) -> None:
    named = await hub.client(identity="minji", name="Minji")
    me = await named.join(name="Administrator")
    assert me["participant"]["name"] == "Minji"
    unnamed = await hub.client(identity="guest-7")
    assert (await unnamed.join(name="Joon"))["participant"]["name"] == "Joon"


async def test_session_ends_when_its_token_expires(start_hub: StartHub) -> None:
    hub = await start_hub(end_session_at_expiry=True, token_leeway=0.0)
    watcher = await hub.joined(identity="watcher")
    token = auth.issue(SECRET, room="lobby", identity="brief", ttl=2)
    c = await SignalClient.connect(hub.url, token)
    hub.clients.append(c)
    await c.join()
    started = time.monotonic()
    bye = await c.expect("bye", timeout=5)
    assert bye["reason"] == "expired"
    assert await c.closed() == 4006
    assert time.monotonic() - started < 4
    left = await watcher.expect("participant_left")
    assert (left["participant"]["identity"], left["reason"]) == ("brief", "expired")


async def test_sessions_outlive_their_token_by_default(start_hub: StartHub) -> None:
    hub = await start_hub(token_leeway=0.0)
    token = auth.issue(SECRET, room="lobby", identity="brief", ttl=1)
    c = await SignalClient.connect(hub.url, token)
    hub.clients.append(c)
    await c.join()
    await asyncio.sleep(1.5)
    await barrier(c)
