"""A moderator's mute through real aiortc peers: the muted publisher's audio stops reaching a
subscriber (in a p2p room the hub first moves the room to sfu, so the mute holds), and
flows again, through the hub, after unmute; video is left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from commhub.sdk import RoomClient
from tests.conftest import StartHub
from tests.helpers.media import LOOPBACK, PatternTrack, ToneTrack
from tests.helpers.sdk import Ears, close_all, now
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

MOD = ["publish", "subscribe", "chat", "moderate"]


class Pair:
    def __init__(self, url: str, token: Any) -> None:
        self.url = url
        self.token = token
        self.clients: list[RoomClient] = []
        self.ears: list[Ears] = []

    def client(self, identity: str, **kw: Any) -> tuple[RoomClient, Ears]:
        c = RoomClient(self.url, self.token("town", identity, **kw), ice_hosts=LOOPBACK, p2p=True)
        ears = Ears(c)
        self.clients.append(c)
        self.ears.append(ears)
        return c, ears


@pytest.fixture
async def pair(
    no_leaks: None, start_hub: StartHub, request: pytest.FixtureRequest
) -> AsyncIterator[Pair]:
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False, moderation=False,
        room_mode=request.param, media_stall_timeout=5.0,
    )  # fmt: skip
    p = Pair(hub.url, hub.token)
    yield p
    await close_all(*p.clients, *p.ears)


async def moderate(mod: RoomClient, mid: str, **fields: Any) -> dict[str, Any]:
    """Send a moderate message; the moderator's own copy of moderation_action (by its ref)."""
    ack = mod.expect("moderation_action", timeout=20, ref=mid)
    await mod.send({"type": "moderate", "id": mid, **fields})
    return await ack


async def silent(ears: Ears, who: RoomClient, kind: str = "audio") -> int:
    """Frames of `kind` with energy from `who` in 2 s, starting 1 s from now (what was in
    flight when the hub stopped forwarding has arrived by then)."""
    await asyncio.sleep(1.0)
    since = now()
    await asyncio.sleep(2.0)
    return ears.count(who, since, kind)


@pytest.mark.parametrize("pair", ["sfu"], indirect=True)
async def test_a_muted_publishers_audio_stops_reaching_subscribers(pair: Pair) -> None:
    mod, mod_ears = pair.client("mod", grants=MOD)
    bob, _ = pair.client("bob")
    await mod.connect()
    await bob.connect()
    await mod.publish(ToneTrack())
    await bob.publish(ToneTrack())
    cam = PatternTrack()
    await bob.publish(cam)
    await wait_for(lambda: mod_ears.heard(bob, now() - 1.0), what="mod hears bob")
    await wait_for(lambda: mod_ears.heard(bob, now() - 1.0, kind="video", frames=5), what="video")

    told = bob.expect("moderation_action", timeout=20)
    ack = await moderate(mod, "m1", action="mute", participant=bob.pid, kind="audio")
    assert ack["action"] == "mute" and ack["kind"] == "audio"
    assert ack["participant"]["id"] == bob.pid and ack["by"]["identity"] == "mod"
    assert (await told)["action"] == "mute"  # the target is told too
    assert await silent(mod_ears, bob) == 0, "audio still forwarded after the mute"
    assert mod_ears.heard(bob, now() - 2.0, kind="video", frames=5), "video was muted too"
    held = [m for m in mod.received("track") if m["participant"] == bob.pid]
    assert any(m["track"]["kind"] == "audio" and m["track"]["muted"] for m in held)

    start = now()
    await moderate(mod, "m2", action="unmute", participant=bob.pid, kind="audio")
    await wait_for(lambda: mod_ears.heard(bob, start), what="bob heard again after unmute")
    cam.stop()


@pytest.mark.parametrize("pair", ["auto"], indirect=True)
async def test_a_mute_in_a_p2p_room_moves_it_to_sfu_and_holds(pair: Pair) -> None:
    mod, mod_ears = pair.client("mod", grants=MOD)
    bob, _ = pair.client("bob")
    await mod.connect()
    await bob.connect()
    await mod.publish(ToneTrack())
    await bob.publish(ToneTrack())
    await wait_for(lambda: mod.mode == bob.mode == "p2p", what="p2p")
    await wait_for(lambda: mod_ears.heard(bob, now() - 1.0, direct=True), what="direct audio")

    await moderate(mod, "m1", action="mute", participant=bob.pid)  # audio and video
    await wait_for(lambda: mod.mode == bob.mode == "sfu", what="the room moved to sfu")
    await wait_for(lambda: mod.direct is None and bob.direct is None, what="direct closed")
    assert await silent(mod_ears, bob) == 0, "bob still heard after the mute"

    start = now()
    await moderate(mod, "m2", action="unmute", participant=bob.pid)
    await wait_for(lambda: mod_ears.heard(bob, start, direct=False), what="bob heard via the hub")
    assert mod.mode == "sfu"  # the room stays relayed (an administrator may set auto again)
