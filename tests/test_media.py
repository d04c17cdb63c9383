"""WebRTC through the hub with real aiortc peers on loopback: SFU relay, P2P, audio taps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiortc.contrib.media import MediaPlayer

from commhub import auth
from commhub.media import TapTrack
from commhub.rooms import Participant
from tests.conftest import SECRET, Running, StartHub
from tests.helpers.audio import read_wav_mono, speech_wav
from tests.helpers.media import (
    LOOPBACK,
    Clients,
    PatternTrack,
    best_correlation,
    carries_pattern,
    collect_audio,
    media_settings,
    resample,
)
from tests.helpers.wait import barrier, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return speech_wav(tmp_path_factory.mktemp("media") / "speech.wav")


@pytest.fixture
async def media_hub(no_leaks: None, start_hub: StartHub) -> Running:
    return await start_hub(**media_settings(media_stall_timeout=3.0))


@pytest.fixture
async def clients(media_hub: Running) -> AsyncIterator[Clients]:
    cs = Clients(media_hub)
    yield cs
    await cs.close()


async def test_sfu_relays_audio_and_video(media_hub: Running, clients: Clients, wav: Path) -> None:
    await media_hub.hub.media.set_mode("lobby", "sfu")
    b = await clients.join("bob")
    await b.negotiate()  # receive-only: b publishes nothing
    taps = media_hub.hub.media.audio_tracks()
    first_tap = asyncio.ensure_future(anext(taps))
    a = await clients.join("alice")
    player = MediaPlayer(str(wav))
    assert player.audio is not None
    video = PatternTrack()
    await a.publish(video)
    await a.publish(player.audio)
    await wait_for(lambda: {r.meta["kind"] for r in b.remote.values()} == {"audio", "video"})
    by_kind = {r.meta["kind"]: r for r in b.remote.values()}
    assert {r.participant for r in by_kind.values()} == {a.pid}
    assert by_kind["video"].meta["source"] == "camera"
    assert by_kind["audio"].meta["source"] == "microphone"

    frames = []
    async with asyncio.timeout(10):
        while len(frames) < 5:
            frames.append(await by_kind["video"].track.recv())
    assert all(carries_pattern(f) for f in frames[-3:])

    tapped_by, tap = await asyncio.wait_for(first_tap, 5)
    assert tapped_by.id == a.pid and tap.source == "microphone"
    got, tapped = await asyncio.gather(
        collect_audio(by_kind["audio"].track, 6.0), collect_audio(tap, 6.0)
    )
    src, rate = read_wav_mono(wav)
    source = resample(src, rate, 48000)
    assert len(got) > 48000  # more than a second arrived
    corr = best_correlation(got, source)
    assert corr >= 0.9, corr
    # the audio tap (what captions consume) hears the same speech
    assert best_correlation(tapped, source) >= 0.9
    await taps.aclose()

    # Relayed without an encode per subscriber: the hub forwards encoded packets.
    session = media_hub.hub.media.sessions[b.pid]
    assert sum(s.track.forwarded for s in session.slots) > 50
    player.audio.stop()


async def test_tracks_come_and_go_with_renegotiation(media_hub: Running, clients: Clients) -> None:
    await media_hub.hub.media.set_mode("lobby", "sfu")
    b = await clients.join("bob")
    await b.negotiate()
    a = await clients.join("alice")
    cam = PatternTrack()
    announced = b.expect("track", state="published")
    await a.publish(cam, source="screen")
    assert (await announced)["track"]["source"] == "screen"
    await wait_for(lambda: len(b.remote) == 1)

    muted = b.expect("track", state="updated")
    await a.set_muted(cam, True)
    assert (await muted)["track"]["muted"] is True

    # A leaves: its publication ends, B is told and renegotiated, the hub's PC for A closes.
    gone = b.expect("track", state="unpublished")
    offers = len([m for m in b.inbox if m["type"] == "offer"])
    await a.close()
    assert (await gone)["participant"] == a.pid
    await wait_for(lambda: len([m for m in b.inbox if m["type"] == "offer"]) > offers)
    await wait_for(lambda: not b.remote)
    assert a.pid not in media_hub.hub.media.sessions
    assert media_hub.hub.media.counts()["publications"] == 0


async def test_p2p_room_connects_directly_and_hub_taps_audio(
    media_hub: Running, clients: Clients, wav: Path
) -> None:
    tapped: list[tuple[Participant, TapTrack]] = []
    media_hub.hub.media.on_audio_track(lambda p, t: tapped.append((p, t)))
    a = await clients.join("alice", p2p=True)
    player = MediaPlayer(str(wav))
    assert player.audio is not None
    await a.publish(player.audio)  # audio to the hub (and to the peer once direct)
    await a.publish(PatternTrack())
    b = await clients.join("bob", p2p=True)
    await wait_for(lambda: a.mode == "p2p" and b.mode == "p2p")
    assert (a.peer_id, b.peer_id) == (b.pid, a.pid)
    await b.negotiate()
    # whichever side the hub named offerer opened the direct connection by itself
    await wait_for(lambda: any(r.direct and r.meta["kind"] == "video" for r in b.remote.values()))
    await wait_for(lambda: a.direct is not None and a.direct.connectionState == "connected")
    assert a.direct is not None and a.direct.connectionState == "connected"
    assert not any(not r.direct for r in b.remote.values())  # nothing relayed by the hub
    # the hub taps A's audio even though media flows directly
    await wait_for(lambda: any(p.id == a.pid for p, _ in tapped))
    tap = next(t for p, t in tapped if p.id == a.pid)
    got = await collect_audio(tap, 3.0)
    assert len(got) > 48000 and np.abs(got).max() > 1000
    video = next(r for r in b.remote.values() if r.direct and r.meta["kind"] == "video")
    async with asyncio.timeout(10):
        frame = None
        for _ in range(5):
            frame = await video.track.recv()
    assert frame is not None and carries_pattern(frame)
    player.audio.stop()


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
    await barrier(a, b)
    assert media_hub.hub.media.mode("lobby") == "sfu"
    assert a.mode == b.mode == "sfu"


async def test_token_sets_the_room_mode(media_hub: Running, clients: Clients) -> None:
    # Two p2p-capable clients would get p2p, but the first token pins the room to sfu.
    a = await clients.join("alice", p2p=True, media_mode="sfu")
    b = await clients.join("bob", p2p=True)
    await barrier(a, b)
    assert media_hub.hub.media.mode("lobby") == "sfu"
    assert a.mode == b.mode == "sfu"
    assert all(m["mode"] == "sfu" for m in a.received("media_mode") + b.received("media_mode"))


async def test_hub_media_uses_the_configured_udp_ports(no_leaks: None, start_hub: StartHub) -> None:
    hub = await start_hub(
        ice_host_addresses=list(LOOPBACK), udp_port_min=41000, udp_port_max=41019,
        captions=False, translation=False,
    )  # fmt: skip
    cs = Clients(hub)
    try:
        a = await cs.join("alice")
        await a.publish(PatternTrack())
        await wait_for(lambda: a.pc is not None and a.pc.connectionState == "connected")
        assert a.pc is not None and a.pc.remoteDescription is not None
        ports = [
            int(line.split()[5])
            for line in a.pc.remoteDescription.sdp.splitlines()
            if line.startswith("a=candidate:")
        ]
        assert ports and all(41000 <= port <= 41019 for port in ports), ports
    finally:
        await cs.close()
