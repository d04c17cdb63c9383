"""Room modes: auto p2p for two capable clients, sfu from three, admin override, relay of `to`."""

from __future__ import annotations

import aiohttp
import pytest

from commhub import auth
from tests.conftest import SECRET, Running
from tests.test_media import Clients, clients, media_hub, no_leaks, wait_for  # noqa: F401

pytestmark = pytest.mark.e2e


async def test_modes_follow_the_room_and_the_admin(media_hub: Running, clients: Clients) -> None:
    a = await clients.join("alice", p2p=True)
    b = await clients.join("bob", p2p=True)
    await wait_for(lambda: a.mode == "p2p" and b.mode == "p2p")
    modes = [m for m in a.received("media_mode") + b.received("media_mode") if m["mode"] == "p2p"]
    assert sorted(m["offerer"] for m in modes) == [False, True]  # exactly one side offers

    # a stranger's arrival turns the room into an sfu
    c = await clients.join("carol")
    await wait_for(lambda: a.mode == b.mode == c.mode == "sfu")
    assert media_hub.hub.media.mode("lobby") == "sfu"

    # `to` is refused now that the room is no longer p2p
    wait = a.expect("error", ref="late")
    await a.send({"type": "ice", "id": "late", "to": b.pid, "candidate": None})
    assert (await wait)["code"] == "wrong_state"

    # the admin forces p2p; with three people the room stays sfu, with two it follows
    admin = auth.issue(SECRET, room="*", identity="root", grants=["admin"])
    async with aiohttp.ClientSession() as http:
        url = f"{media_hub.url}/v1/admin/rooms/lobby/media"
        headers = {"Authorization": f"Bearer {admin}"}
        async with http.put(url, json={"mode": "p2p"}, headers=headers) as r:
            assert r.status == 200
            assert (await r.json())["effective"] == "sfu"
        async with http.put(url, json={"mode": "mesh"}, headers=headers) as r:
            assert r.status == 400
        async with http.put(url, json={"mode": "sfu"}) as r:
            assert r.status == 401
        await c.close()
        await wait_for(lambda: a.mode == b.mode == "p2p")
        async with http.put(url, json={"mode": "sfu"}, headers=headers) as r:
            assert (await r.json())["effective"] == "sfu"
        await wait_for(lambda: a.mode == b.mode == "sfu")


async def test_auto_mode_needs_both_clients_capable(media_hub: Running, clients: Clients) -> None:
    a = await clients.join("alice", p2p=True)
    b = await clients.join("bob", p2p=False)
    await b.send({"type": "ping", "id": "sync"})
    await b.expect("pong", ref="sync")
    assert media_hub.hub.media.mode("lobby") == "sfu"
    assert a.mode == b.mode == "sfu"
