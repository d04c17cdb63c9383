"""Every kind of bad input gets its own error code; the connection and the room survive."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import Running, StartHub
from tests.helpers.metrics import metric
from tests.helpers.wait import barrier
from tests.wsclient import raw_join


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "bad_json"),
        ("[1, 2]", "invalid_message"),
        ('{"text": "no type"}', "invalid_message"),
        ('{"type": "teleport"}', "unknown_type"),
        ('{"type": "chat"}', "invalid_message"),
        ('{"type": "chat", "text": "   "}', "invalid_message"),
        ('{"type": "chat", "text": "hi", "extra": 1}', "invalid_message"),
        ('{"type": "set_language", "speak": "not a language"}', "invalid_message"),
        ('{"type": "set_language"}', "invalid_message"),
        ('{"type": "join"}', "already_joined"),
    ],
)
async def test_recoverable_errors(hub: Running, raw: str, code: str) -> None:
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="sender")
    await c.ws.send_str(raw)
    err = await c.expect("error")
    assert err["code"] == code, err
    assert err["message"] and "fatal" not in err
    await barrier(c)
    await c.send({"type": "chat", "text": "still here"})
    assert (await watcher.expect("chat"))["text"] == "still here"


async def test_error_echoes_the_message_id(hub: Running) -> None:
    c = await hub.joined()
    await c.send({"type": "chat", "id": "m-17", "text": ""})
    err = await c.expect("error")
    assert (err["code"], err["ref"]) == ("invalid_message", "m-17")
    assert "text" in err["message"]


async def test_message_before_join(hub: Running) -> None:
    c = await hub.client()
    await c.send({"type": "chat", "text": "too early"})
    assert (await c.expect("error"))["code"] == "not_joined"
    await c.join()
    await c.send({"type": "chat", "text": "now"})
    assert (await c.expect("chat"))["text"] == "now"


async def test_binary_frames_are_refused(hub: Running) -> None:
    c = await hub.joined()
    await c.ws.send_bytes(b"\x00\x01")
    assert (await c.expect("error"))["code"] == "invalid_message"
    await barrier(c)


async def test_oversize_message(start_hub: StartHub) -> None:
    hub = await start_hub(max_message_bytes=2048)
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="big")
    await c.send({"type": "chat", "text": "x" * 3000})
    err = await c.expect("error")
    assert err["code"] == "message_too_large" and "2048" in err["message"]
    await barrier(c)
    # Far beyond the limit the frame is not even read: close 1009 (message too big).
    await c.ws.send_str("y" * 2048 * 5)
    assert await c.closed() == 1009
    left = await watcher.expect("participant_left")
    assert left["participant"]["identity"] == "big"
    await barrier(watcher)


async def test_rate_limit_then_flood_close(start_hub: StartHub) -> None:
    hub = await start_hub(rate_limit=5.0, rate_burst=5, flood_strikes=10)
    watcher = await hub.joined(identity="watcher")
    c = await hub.joined(identity="flood")
    for i in range(8):
        await c.send({"type": "chat", "text": f"m{i}"})
    first = await c.expect("error")
    assert first["code"] == "rate_limited"
    for i in range(20):
        await c.send({"type": "chat", "text": f"n{i}"})
    fatal = await c.expect("error", code="flooding")
    assert fatal["fatal"] is True
    assert await c.closed() == 1008
    assert (await watcher.expect("participant_left"))["participant"]["identity"] == "flood"
    await barrier(watcher)


async def test_forbidden_without_chat_grant(hub: Running) -> None:
    c = await hub.client(grants=["subscribe"])
    await c.join()
    await c.send({"type": "chat", "text": "hi"})
    err = await c.expect("error")
    assert err["code"] == "forbidden" and "chat" in err["message"]
    await barrier(c)


async def test_join_timeout(start_hub: StartHub) -> None:
    hub = await start_hub(join_timeout=0.3)
    c = await hub.client()
    err = await c.expect("error")
    assert (err["code"], err["fatal"]) == ("join_timeout", True)
    assert await c.closed() == 4008


async def test_room_full(start_hub: StartHub) -> None:
    hub = await start_hub(room_capacity=2)
    a = await hub.joined(identity="a")
    await hub.joined(identity="b")
    c = await hub.client(identity="c")
    await c.send({"type": "join"})
    err = await c.expect("error")
    assert err["code"] == "room_full" and err["fatal"] is True
    assert await c.closed() == 4003
    # The same identity may always come back (it replaces itself).
    again = await hub.joined(identity="a")
    assert again.pid != a.pid


async def test_no_leaks_after_many_connections(hub: Running) -> None:
    for i in range(3):  # warm up lazily created tasks
        c = await hub.joined(identity=f"warm{i}")
        await c.close()
    hub.clients.clear()
    await asyncio.sleep(0.1)
    before = len(asyncio.all_tasks())
    for i in range(30):
        c = await hub.joined(identity=f"u{i % 3}")
        await c.send({"type": "chat", "text": "hi"})
        await c.expect("chat")
        await c.close()
    async with asyncio.timeout(5):
        while hub.hub.rooms.participant_count() or len(asyncio.all_tasks()) > before:
            await asyncio.sleep(0.02)
    hub.clients.clear()
    assert await metric(hub.url, "commhub_connections") == 0
    assert await metric(hub.url, "commhub_participants") == 0


async def test_slow_reader_is_dropped_not_buffered_forever(start_hub: StartHub) -> None:
    hub = await start_hub(
        send_buffer=65536, rate_limit=1e5, rate_burst=100000, byte_rate=10**9, byte_burst=10**9
    )
    talker = await hub.joined(identity="talker")
    # A reader that never reads, with a tiny receive buffer: the hub's buffer fills.
    reader, writer = await raw_join(hub.server.port, hub.token(identity="sleepy"), rcvbuf=4096)
    await talker.expect("participant_joined")
    reader._transport.pause_reading()  # type: ignore[attr-defined]  # stop reading for real
    for i in range(3000):
        await talker.send({"type": "chat", "text": f"{i} " + "x" * 3900})
        # The talker reads its echo before sending on, so only the sleeper falls behind.
        await talker.expect("chat")
        if hub.hub.rooms.participant_count() == 1:
            break
    gone = await talker.expect("participant_left", timeout=30)
    assert gone["participant"]["identity"] == "sleepy"
    # The talker is unaffected.
    await barrier(talker)
    writer.close()
