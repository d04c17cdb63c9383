"""Signalling over real WebSockets: join, presence, chat, languages, replacement."""

from __future__ import annotations

from tests.conftest import Running
from tests.helpers.wait import barrier
from tests.wsclient import raw_join


async def test_join_reports_room_and_presence(hub: Running) -> None:
    alice = await hub.client(identity="alice", name="Alice", speak="ko", read="en")
    joined = await alice.join()
    assert joined["protocol"] == 1
    assert joined["room"] == {"name": "lobby", "capacity": 50, "mode": "sfu"}
    assert joined["participants"] == []
    me = joined["participant"]
    assert (me["identity"], me["name"], me["speak"], me["read"]) == ("alice", "Alice", "ko", "en")

    bob = await hub.client(identity="bob")
    bob_joined = await bob.join(name="Bobby", speak="es")
    assert [p["identity"] for p in bob_joined["participants"]] == ["alice"]
    seen = await alice.expect("participant_joined")
    assert seen["participant"]["id"] == bob.pid
    assert seen["participant"]["name"] == "Bobby"
    # join overrides what it names; the rest comes from the token
    assert seen["participant"]["speak"] == "es" and seen["participant"]["read"] == "en"

    await bob.send({"type": "leave"})
    left = await alice.expect("participant_left")
    assert left["participant"]["id"] == bob.pid and left["reason"] == "left"
    assert (await bob.expect("bye"))["reason"] == "left"
    assert await bob.closed() == 1000
    assert hub.hub.rooms.participant_count() == 1


async def test_chat_fans_out_within_a_room_only(hub: Running) -> None:
    a1 = await hub.joined("room-a", "a1")
    a2 = await hub.joined("room-a", "a2")
    b1 = await hub.joined("room-b", "b1")
    await a1.send({"type": "chat", "text": "  hello room a  "})
    for c in (a1, a2):
        got = await c.expect("chat")
        assert got["text"] == "hello room a"
        assert got["from"]["identity"] == "a1" and got["lang"] == "en"
    await b1.send({"type": "chat", "text": "hello room b"})
    assert (await b1.expect("chat"))["text"] == "hello room b"
    await barrier(a1, a2, b1)  # all the hub sent them so far has arrived
    assert [m["text"] for m in a2.received("chat")] == ["hello room a"]
    assert [m["text"] for m in b1.received("chat")] == ["hello room b"]


async def test_newcomer_gets_recent_chat(start_hub: object) -> None:
    hub = await start_hub(chat_history=2)  # type: ignore[operator]
    a = await hub.joined(identity="a")
    for i in range(3):
        await a.send({"type": "chat", "text": f"m{i}"})
        await a.expect("chat", text=f"m{i}")
    late = await hub.client(identity="late")
    joined = await late.join()
    assert [m["text"] for m in joined["chat"]] == ["m1", "m2"]


async def test_set_language_is_announced(hub: Running) -> None:
    a = await hub.joined(identity="a")
    b = await hub.joined(identity="b")
    await a.send({"type": "set_language", "speak": "ko", "read": "es"})
    for c in (a, b):
        upd = await c.expect("participant_updated")
        assert upd["participant"]["id"] == a.pid
        assert (upd["participant"]["speak"], upd["participant"]["read"]) == ("ko", "es")
    await a.send({"type": "chat", "text": "안녕하세요"})
    assert (await b.expect("chat"))["lang"] == "ko"


async def test_same_identity_replaces_old_connection(hub: Running) -> None:
    watcher = await hub.joined(identity="w")
    first = await hub.joined(identity="dup")
    await watcher.expect("participant_joined")
    second = await hub.joined(identity="dup")
    bye = await first.expect("bye")
    assert bye["reason"] == "replaced"
    assert await first.closed() == 4002
    left = await watcher.expect("participant_left")
    assert left["participant"]["id"] == first.pid and left["reason"] == "replaced"
    joined = await watcher.expect("participant_joined")
    assert joined["participant"]["id"] == second.pid
    room = hub.hub.rooms.get("lobby")
    assert room is not None
    assert sorted(p.identity for p in room.participants.values()) == ["dup", "w"]


async def test_ping_pong_before_join(hub: Running) -> None:
    c = await hub.client()
    await c.send({"type": "ping", "id": "p1"})
    pong = await c.expect("pong")
    assert pong["ref"] == "p1" and pong["ts"] > 0


async def test_vanished_client_is_removed_by_heartbeat(start_hub: object) -> None:
    hub = await start_hub(heartbeat=0.3)  # type: ignore[operator]
    watcher = await hub.joined(identity="watcher")
    _, writer = await raw_join(hub.server.port, hub.token(identity="ghost"))
    joined = await watcher.expect("participant_joined")
    left = await watcher.expect("participant_left", timeout=5.0)
    assert left["participant"]["id"] == joined["participant"]["id"]
    assert left["reason"] == "timeout"
    assert hub.hub.rooms.participant_count() == 1
    writer.close()
