"""Media against a hostile client, through the real path: real aiortc peers on loopback.

Each test is an attack that worked once: a chat-only token in a p2p room, an offer of
hundreds of sections, a borrowed track id, unbounded track metadata, duplicate mids,
mDNS candidates the hub would have resolved.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator

import pytest
from aiortc import RTCPeerConnection

from commhub.protocol import schemas
from tests.conftest import Running, StartHub
from tests.helpers.media import (
    Clients,
    PatternTrack,
    RawPeer,
    ToneTrack,
    count_mdns_lookups,
    error_for,
    media_settings,
    sections_offer,
)
from tests.helpers.wait import barrier, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture
async def media_hub(no_leaks: None, start_hub: StartHub) -> Running:
    return await start_hub(**media_settings(max_tracks_per_room=6))


@pytest.fixture
async def clients(media_hub: Running) -> AsyncIterator[Clients]:
    cs = Clients(media_hub)
    yield cs
    for c in cs.all:  # the SDK does not check what it reads: check it here
        for msg in c.inbox:
            schemas().check_server(msg)
    await cs.close()


async def sendonly_offer(kind: str = "audio") -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver(ToneTrack() if kind == "audio" else PatternTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


# -- 1. p2p needs publish and subscribe on both sides -----------------------------------


@pytest.mark.parametrize("forced", [True, False], ids=["forced-p2p", "auto"])
@pytest.mark.parametrize(
    "grants", [["chat"], ["subscribe", "chat"], ["publish", "chat"]], ids=lambda g: "+".join(g)
)
async def test_p2p_needs_both_grants_on_both_sides(
    media_hub: Running, clients: Clients, forced: bool, grants: list[str]
) -> None:
    media = media_hub.hub.media
    if forced:
        await media.set_mode("lobby", "p2p")
    alice = await clients.join("alice", p2p=True)
    mallory = await clients.join("mallory", p2p=True, grants=grants)
    await barrier(alice)
    await barrier(mallory)
    assert media.mode("lobby") == "sfu"
    assert alice.mode == mallory.mode == "sfu" and mallory.peer_id is None
    assert all(m["mode"] == "sfu" for m in mallory.received("media_mode"))
    # mallory's direct offer is not relayed: alice never hears of mallory's connection
    sdp = await sendonly_offer()
    code = await error_for(mallory, {"type": "offer", "sdp": sdp, "to": alice.pid})
    assert code == "forbidden"
    code = await error_for(mallory, {"type": "ice", "candidate": None, "to": alice.pid})
    assert code == "forbidden"
    await barrier(alice)
    assert not [m for m in alice.inbox if "from" in m]
    # the control: the same room with a fully granted second party goes p2p
    await mallory.close()
    bob = await clients.join("bob", p2p=True)
    await wait_for(lambda: alice.mode == bob.mode == "p2p")
    assert media.rooms["lobby"].peers is not None
    assert set(media.rooms["lobby"].peers) == {alice.pid, bob.pid}


# -- 2. limits on SDP size and tracks ---------------------------------------------------


async def test_oversized_sdp_is_refused_before_parsing(
    media_hub: Running, clients: Clients
) -> None:
    media = media_hub.hub.media
    await media.set_mode("lobby", "p2p")
    a = await clients.join("alice", p2p=True)
    b = await clients.join("bob", p2p=True)
    await wait_for(lambda: a.mode == b.mode == "p2p")
    huge = sections_offer(400)  # the attacker's offer: 400 sendonly sections
    assert 50_000 < len(huge) < 60_000
    for msg in (
        {"type": "offer", "sdp": huge},
        {"type": "answer", "sdp": huge},
        {"type": "offer", "sdp": huge, "to": b.pid},  # relayed offers and answers too
        {"type": "answer", "sdp": huge, "to": b.pid},
        {"type": "offer", "sdp": "x" * 40_000},  # not even SDP: the size is checked first
    ):
        assert await error_for(a, msg) == "sdp_too_large"
    # the bound is bytes, not characters
    wide = sections_offer(1).replace("s=-", "s=" + "한" * 11_000)
    assert len(wide) < 32 * 1024 < len(wide.encode())
    refused = a.expect("error", ref="wide")
    assert a._ws is not None  # sent as UTF-8: JSON escapes would triple it on the wire
    await a._ws.send_str(
        json.dumps({"type": "offer", "id": "wide", "sdp": wide}, ensure_ascii=False)
    )
    assert (await refused)["code"] == "sdp_too_large"
    await barrier(b)
    relayed = [m for m in b.inbox if "from" in m and "sdp" in m]  # the SDK's own, if any
    assert all(len(m["sdp"]) < 32 * 1024 for m in relayed)
    assert a.pid not in media.sessions and media.counts()["publications"] == 0
    await barrier(a)
    # the pair's own direct connection, relayed by the hub, still comes up
    await wait_for(
        lambda: all(
            c.direct is not None and c.direct.connectionState == "connected" for c in (a, b)
        )
    )


async def test_hundreds_of_sections_are_refused_and_bystanders_keep_chatting(
    no_leaks: None, start_hub: StartHub
) -> None:
    # Room for the attacker's whole 57 KB offer, so it meets the track limit.
    hub = await start_hub(**media_settings(max_sdp_bytes=64 * 1024, max_message_bytes=256 * 1024))
    cs = Clients(hub)
    try:
        victim = await cs.join("victim")
        await victim.negotiate()
        attacker = await cs.join("attacker")
        bystander = await hub.joined("other-room", "bystander")
        huge = sections_offer(400)
        replies: list[str] = []

        async def chatter() -> None:  # a participant of another room, all along
            for i in range(15):
                await bystander.send({"type": "ping", "id": f"p{i}"})
                replies.append((await bystander.expect("pong", timeout=10, ref=f"p{i}"))["ref"])
                await bystander.send({"type": "chat", "text": f"still here {i}"})
                got = await bystander.expect("chat", timeout=10, text=f"still here {i}")
                replies.append(got["text"])
                await asyncio.sleep(0.02)

        async def attack() -> list[str]:
            codes = []
            for i in range(5):
                ref = f"huge{i}"
                wait = attacker.expect("error", ref=ref)
                await attacker.send({"type": "offer", "id": ref, "sdp": huge})
                codes.append((await wait)["code"])
            return codes

        _, codes = await asyncio.gather(chatter(), attack())
        assert codes == ["too_many_tracks"] * 5
        assert len(replies) == 30  # every ping answered, every chat delivered
        media = hub.hub.media
        assert attacker.pid not in media.sessions
        assert media.counts() == {"sessions": 1, "publications": 0}
        await barrier(victim)
        assert not victim.received("offer") and not victim.received("track")
        # receive-only sections are bounded too (4 + 32 besides the hub's)
        many = sections_offer(37, direction="recvonly")
        assert await error_for(attacker, {"type": "offer", "sdp": many}) == "too_many_tracks"
        assert attacker.pid not in media.sessions
        await barrier(attacker)
    finally:
        await cs.close()


async def test_tracks_per_participant_and_per_room(media_hub: Running, clients: Clients) -> None:
    media = media_hub.hub.media
    watcher = await clients.join("watcher", grants=["subscribe"])
    await watcher.negotiate()
    a = await clients.join("alice")
    refused = a.expect("error", ref="sdk-offer")
    await a.publish(*(ToneTrack() for _ in range(5)))  # one over the participant's 4
    assert (await refused)["code"] == "too_many_tracks"
    assert a.pid not in media.sessions  # nothing half-made
    await a.close()
    clients.all.remove(a)

    a = await clients.join("alice2")
    await a.publish(*(ToneTrack() for _ in range(4)))
    await wait_for(lambda: len(watcher.remote) == 4)
    b = await clients.join("bob")
    refused = b.expect("error", ref="sdk-offer")
    await b.publish(ToneTrack(), PatternTrack(), ToneTrack())  # 4 + 3 > the room's 6
    assert (await refused)["code"] == "too_many_tracks"
    assert media.counts()["publications"] == 4
    await b.close()
    clients.all.remove(b)
    b = await clients.join("bob2")
    await b.publish(ToneTrack(), PatternTrack())  # 4 + 2: allowed
    await wait_for(lambda: len(watcher.remote) == 6)
    assert media.counts()["publications"] == 6


# -- 3. track ids are the publisher's own -----------------------------------------------


async def test_a_borrowed_track_id_does_not_hide_the_owners_track(
    media_hub: Running, clients: Clients
) -> None:
    media = media_hub.hub.media
    await media.set_mode("lobby", "sfu")
    watcher = await clients.join("watcher")
    await watcher.negotiate()
    victim = await clients.join("victim")
    seen = watcher.expect("track", state="published")
    await victim.publish(PatternTrack())
    victim_track = (await seen)["track"]["id"]  # visible to everyone in the room

    attacker = await clients.join("attacker")
    raw = RawPeer(attacker)
    copycat = PatternTrack()
    copycat._id = victim_track  # aiortc names the msid after the track's id
    raw.pc.addTransceiver(copycat, direction="sendonly")
    sent = await raw.offer()
    assert f" {victim_track}" in next(x for x in sent.splitlines() if x.startswith("a=msid:"))
    await wait_for(
        lambda: any(
            m["participant"] == attacker.pid and m["track"]["id"] == victim_track
            for m in watcher.received("track")
        )
    )
    assert set(media.rooms["lobby"].publications) == {
        (victim.pid, victim_track),
        (attacker.pid, victim_track),
    }
    gone = watcher.expect("track", state="unpublished")
    await raw.close()
    await attacker.close()
    clients.all.remove(attacker)
    assert (await gone)["participant"] == attacker.pid

    newcomer = await clients.join("newcomer")
    await newcomer.negotiate()
    announced = [m for m in newcomer.received("track") if m["state"] == "published"]
    assert [(m["participant"], m["track"]["id"]) for m in announced] == [(victim.pid, victim_track)]
    await wait_for(lambda: len(newcomer.remote) == 1)
    relayed = next(iter(newcomer.remote.values()))
    assert relayed.participant == victim.pid
    async with asyncio.timeout(10):
        await relayed.track.recv()  # the victim's video still flows to newcomers


# -- 4. track metadata ------------------------------------------------------------------


async def test_metadata_for_unknown_tracks_is_bounded_and_dropped_on_leave(
    media_hub: Running, clients: Clients
) -> None:
    media = media_hub.hub.media
    limit = media_hub.hub.settings.max_track_meta
    watcher = await clients.join("watcher")
    await watcher.negotiate()
    a = await clients.join("alice")
    for i in range(limit + 10):
        await a.send({"type": "track", "track_id": f"junk-{i}", "muted": True})
    await barrier(a)
    kept = media.pending_meta[a.pid]
    assert list(kept) == [f"junk-{i}" for i in range(10, limit + 10)]  # the newest kept
    # the metadata of a real track still applies when it arrives
    announced = watcher.expect("track", state="published")
    await a.publish(PatternTrack(), source="screen")
    assert (await announced)["track"]["source"] == "screen"
    assert len(media.pending_meta[a.pid]) == limit - 1  # its entry was taken
    await a.close()
    clients.all.remove(a)
    await wait_for(lambda: a.pid not in media.pending_meta)


# -- 6. duplicate mids ------------------------------------------------------------------


async def test_duplicate_mids_are_invalid_sdp_and_leave_nothing(
    media_hub: Running, clients: Clients
) -> None:
    media = media_hub.hub.media
    a = await clients.join("alice")
    pc = RTCPeerConnection()
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    same = sdp.replace("a=mid:1", "a=mid:0").replace("BUNDLE 0 1", "BUNDLE 0")
    assert await error_for(a, {"type": "offer", "sdp": same}) == "invalid_sdp"
    no_mid = re.sub(r"a=mid:1\r\n", "", sdp)
    assert await error_for(a, {"type": "offer", "sdp": no_mid}) == "invalid_sdp"
    assert a.pid not in media.sessions
    assert media.counts() == {"sessions": 0, "publications": 0}
    assert not a.received("track")  # nothing was announced, even briefly

    # with a session: a section that changes kind under its mid is refused, it goes on
    await a.publish(ToneTrack())
    await wait_for(lambda: a.pc is not None and a.pc.connectionState == "connected")
    assert a.pc is not None
    flipped = a.pc.localDescription.sdp.replace("m=audio", "m=video", 1)
    assert await error_for(a, {"type": "offer", "sdp": flipped}) == "invalid_sdp"
    assert media.counts() == {"sessions": 1, "publications": 1}
    await barrier(a)


# -- 7. mDNS candidates -----------------------------------------------------------------


def hide_behind_mdns(sdp: str, names: dict[str, str]) -> str:
    """What a browser does: host candidates name a random `<uuid>.local` host."""

    def swap(m: re.Match[str]) -> str:
        name = names.setdefault(m.group(2), f"{uuid.uuid4()}.local")
        return f"{m.group(1)}{name}{m.group(3)}"

    return re.sub(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", swap, sdp, flags=re.M)


async def test_mdns_candidates_are_never_resolved_and_the_client_still_connects(
    media_hub: Running, clients: Clients, monkeypatch: pytest.MonkeyPatch
) -> None:
    lookups = count_mdns_lookups(monkeypatch)

    media = media_hub.hub.media
    a = await clients.join("alice")
    raw = RawPeer(a)
    raw.pc.addTransceiver(ToneTrack(), direction="sendonly")
    names: dict[str, str] = {}
    sent = await raw.offer(lambda sdp: hide_behind_mdns(sdp, names))
    assert names and ".local" in sent and "a=end-of-candidates" in sent
    # trickled ones too, then the end of candidates
    for name in ("c0ffee00-1111-2222-3333-444455556666.local", "host.local"):
        line = f"candidate:1 1 udp 2122260223 {name} 54321 typ host"
        await a.send({"type": "ice", "candidate": {"candidate": line, "sdpMid": "0"}})
    await a.send({"type": "ice", "candidate": None})
    # the hub learns the client's address from its checks (peer-reflexive)
    await wait_for(lambda: raw.pc.connectionState == "connected", timeout=20)
    session = media.sessions[a.pid]
    await wait_for(lambda: session.pc.connectionState == "connected")
    pub = next(iter(session.publications.values()))
    await wait_for(lambda: pub.frames > 10)
    await barrier(a)
    assert not a.received("error")  # nothing for the client to trip over
    assert lookups == []  # and never a multicast DNS query
    assert session.named_candidates == len(names) + 2
    await raw.close()
