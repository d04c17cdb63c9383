"""Two and three real SDK clients on loopback through a real hub: media flows both ways
whatever the order of joining and publishing, in p2p and sfu, through mode changes, camera
changes and the hub closing a stalled connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from commhub.sdk import RoomClient
from tests.conftest import Running, StartHub
from tests.helpers.media import LOOPBACK, PatternTrack, ToneTrack
from tests.helpers.sdk import Ears, close_all, now
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e


class Party:
    """Clients of one test with their ears; everything closed at the end."""

    def __init__(self, hub: Running) -> None:
        self.hub = hub
        self.clients: list[RoomClient] = []
        self.ears: dict[str, Ears] = {}

    def client(self, identity: str, room: str = "lobby", **kw: Any) -> RoomClient:
        c = RoomClient(self.hub.url, self.hub.token(room, identity, **kw), ice_hosts=LOOPBACK,
                       p2p=True)  # fmt: skip
        self.clients.append(c)
        self.ears[identity] = Ears(c)
        return c

    async def close(self) -> None:
        await close_all(*self.clients, *self.ears.values())


@pytest.fixture
async def party(
    no_leaks: None, start_hub: StartHub, request: pytest.FixtureRequest
) -> AsyncIterator[Party]:
    mode = getattr(request, "param", "auto")
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), captions=False, translation=False,
        imagery=False, room_mode=mode, media_stall_timeout=2.0,  # imagery keeps auto in sfu
    )  # fmt: skip
    p = Party(hub)
    yield p
    await p.close()


async def hear_each_other(party: Party, a: RoomClient, b: RoomClient, since: float) -> None:
    ea, eb = party.ears[_who(party, a)], party.ears[_who(party, b)]
    await wait_for(lambda: ea.heard(b, since) and eb.heard(a, since), what="audio both ways")


def _who(party: Party, c: RoomClient) -> str:
    return next(k for k, e in party.ears.items() if e.client is c)


@pytest.mark.parametrize("party", ["p2p", "sfu"], indirect=True)
@pytest.mark.parametrize("first_publishes", ["before_join", "after_join", "after_other_joined"])
@pytest.mark.parametrize("second_publishes", ["before_join", "after_join"])
async def test_both_hear_each_other_whatever_the_order(
    party: Party, first_publishes: str, second_publishes: str
) -> None:
    mode = party.hub.hub.settings.room_mode
    first, second = party.client("first"), party.client("second")
    mic1, mic2 = ToneTrack(), ToneTrack()
    if first_publishes == "before_join":
        await first.publish(mic1)
    await first.connect()
    if first_publishes == "after_join":
        await first.publish(mic1)
    if second_publishes == "before_join":
        await second.publish(mic2)
    await second.connect()
    if second_publishes == "after_join":
        await second.publish(mic2)
    if first_publishes == "after_other_joined":
        await first.publish(mic1)
    await wait_for(lambda: first.mode == second.mode == mode, what=f"both in {mode}")
    start = now()
    await hear_each_other(party, first, second, start)
    if mode == "p2p":  # straight from the peer, not relayed by the hub
        assert party.ears["first"].heard(second, start, direct=True)
        assert party.ears["second"].heard(first, start, direct=True)
        # and each still sends its audio to the hub (captions need it)
        pubs = party.hub.hub.media.rooms["lobby"].publications.values()
        await wait_for(lambda: {p.owner_id for p in pubs} == {first.pid, second.pid})


@pytest.mark.parametrize("party", ["p2p", "sfu"], indirect=True)
async def test_camera_added_and_removed_mid_call(party: Party) -> None:
    a, b = party.client("a"), party.client("b")
    await a.connect()
    await b.connect()
    await a.publish(ToneTrack())
    await b.publish(ToneTrack())
    await hear_each_other(party, a, b, now())
    cam = PatternTrack()
    start = now()
    await b.publish(cam)
    await wait_for(lambda: party.ears["a"].heard(b, start, kind="video", frames=10), what="video")
    await b.unpublish(cam)
    await wait_for(lambda: party.ears["a"].count(b, now() - 0.5, "video") == 0, what="no video")
    stopped = now()
    await hear_each_other(party, a, b, stopped)  # audio goes on
    assert party.ears["a"].count(b, stopped + 1.0, "video") == 0
    cam.stop()


async def test_a_third_person_joins_and_leaves_and_media_keeps_flowing(party: Party) -> None:
    a, b, c = party.client("a"), party.client("b"), party.client("c")
    await a.publish(ToneTrack())
    await a.connect()
    await b.connect()
    await b.publish(ToneTrack())
    await wait_for(lambda: a.mode == b.mode == "p2p")
    await hear_each_other(party, a, b, now())

    await c.connect()
    await c.publish(ToneTrack())
    await wait_for(lambda: a.mode == b.mode == c.mode == "sfu", what="sfu with three")
    assert a.direct is None and b.direct is None  # the direct connection is closed
    start = now()
    await hear_each_other(party, a, b, start)
    await hear_each_other(party, a, c, start)
    await hear_each_other(party, b, c, start)

    await c.leave()
    await wait_for(lambda: a.mode == b.mode == "p2p", what="back to p2p")
    start = now()
    await hear_each_other(party, a, b, start)
    assert party.ears["a"].heard(b, start, direct=True)


@pytest.mark.parametrize("party", ["sfu"], indirect=True)
async def test_media_closed_by_the_hub_is_republished(party: Party) -> None:
    a, b = party.client("a"), party.client("b")
    mic = ToneTrack()
    await a.connect()
    await a.publish(mic)
    await b.connect()
    await b.publish(ToneTrack())
    await hear_each_other(party, a, b, now())
    closed = a.expect("media_closed", timeout=20)
    mic.running.clear()  # the microphone stops delivering: the hub calls it stalled
    assert (await closed)["reason"] == "stalled"
    mic.running.set()
    start = now()
    # the client republished by itself: b hears a again, through a new publication
    await wait_for(lambda: party.ears["b"].heard(a, start), what="a heard again")
    assert a.pc is not None and a.pc.connectionState == "connected"
