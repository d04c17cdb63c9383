"""Room registry: capacity, replacement, and forgetting rooms left empty."""

from __future__ import annotations

import asyncio

import pytest

from commhub.rooms import Participant, RoomFull, Rooms
from tests.conftest import StartHub


class Sink:
    def deliver(self, data: str) -> None:
        pass

    async def end(self, reason: str, message: str) -> None:
        pass


def person(identity: str) -> Participant:
    return Participant(identity, identity, "guest", frozenset(), "en", "en", Sink())


def test_capacity_and_replacement() -> None:
    rooms = Rooms(capacity=2, history_size=5, empty_timeout=10)
    rooms.join("r", person("a"))
    rooms.join("r", person("b"))
    with pytest.raises(RoomFull):
        rooms.join("r", person("c"))
    room, old = rooms.join("r", person("a"))
    assert old is not None and old.identity == "a"
    assert sorted(p.identity for p in room.participants.values()) == ["a", "b"]


def test_empty_rooms_are_reaped_after_timeout() -> None:
    rooms = Rooms(capacity=5, history_size=5, empty_timeout=10)
    p = person("a")
    room, _ = rooms.join("r", p)
    rooms.leave("r", p.id)
    assert room.empty_since is not None
    assert rooms.reap(now=room.empty_since + 9) == []
    assert rooms.reap(now=room.empty_since + 10) == ["r"]
    assert rooms.get("r") is None


@pytest.mark.parametrize("store", [False, True])
async def test_live_room_forgotten_and_history_with_it(start_hub: StartHub, store: bool) -> None:
    """A room left empty is forgotten; its chat history goes with it, unless the store
    keeps it (then it comes back as after a restart)."""
    hub = await start_hub(empty_room_timeout=0.2, store=store)
    a = await hub.joined(identity="a")
    await a.send({"type": "chat", "text": "old news"})
    sent = await a.expect("chat")
    await a.send({"type": "leave"})
    await a.closed()
    async with asyncio.timeout(3):
        while hub.hub.rooms.get("lobby") is not None:
            await asyncio.sleep(0.05)
    b = await hub.client(identity="b")
    history = (await b.join())["chat"]
    assert history == ([{k: v for k, v in sent.items() if k != "ref"}] if store else [])
