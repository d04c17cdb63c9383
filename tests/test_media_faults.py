"""Media bad input, grants and faults: precise errors, the participant stays, nothing leaks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiortc import AudioStreamTrack, RTCPeerConnection
from aiortc.contrib.media import MediaPlayer
from aiortc.rtp import is_rtcp

from commhub.rtc import compat
from commhub.sdk import RoomClient
from tests.conftest import Running, StartHub
from tests.helpers.media import (
    LOOPBACK,
    Clients,
    PatternTrack,
    census,
    collect_audio,
    error_for,
    media_settings,
)
from tests.helpers.wait import barrier, wait_for

pytestmark = pytest.mark.e2e

# A well-formed browser-like offer whose only media the hub cannot relay (H.263).
NO_USABLE = """v=0
o=- 1 2 IN IP4 127.0.0.1
s=-
t=0 0
m=video 9 UDP/TLS/RTP/SAVPF 34
c=IN IP4 0.0.0.0
a=mid:0
a=sendonly
a=rtcp-mux
a=ice-ufrag:abcd
a=ice-pwd:abcdefghijklmnopqrstuvwx
a=fingerprint:sha-256 {FP}
a=setup:actpass
a=rtpmap:34 H263/90000
""".replace("{FP}", ":".join(["AB"] * 32))


@pytest.fixture
async def media_hub(no_leaks: None, start_hub: StartHub) -> Running:
    return await start_hub(**media_settings(media_stall_timeout=2.0))


@pytest.fixture
async def clients(media_hub: Running) -> AsyncIterator[Clients]:
    cs = Clients(media_hub)
    yield cs
    await cs.close()


async def test_bad_sdp_candidates_and_targets_get_precise_errors(
    media_hub: Running, clients: Clients
) -> None:
    a = await clients.join("alice")
    other_room = await clients.join("zed", room="elsewhere")
    assert await error_for(a, {"type": "offer", "sdp": "this is not sdp"}) == "invalid_sdp"
    assert await error_for(a, {"type": "offer", "sdp": "v=0\r\n"}) == "no_media"
    assert await error_for(a, {"type": "offer", "sdp": NO_USABLE}) == "no_media"
    assert await error_for(a, {"type": "answer", "sdp": NO_USABLE}) == "wrong_state"
    cand = {"candidate": "candidate:garbage", "sdpMid": "0"}
    assert await error_for(a, {"type": "ice", "candidate": cand}) == "wrong_state"
    # a stranger (another room's participant) and a made-up id
    for to in (other_room.pid, "PA_nosuchperson"):
        msg = {"type": "offer", "sdp": NO_USABLE, "to": to}
        assert await error_for(a, msg) == "unknown_participant"
    # now a real session: garbage candidates are refused precisely, the session survives
    await a.publish(PatternTrack())
    await wait_for(lambda: a.pc is not None and a.pc.connectionState == "connected")
    for bad in (
        "candidate:garbage",
        "candidate:1 1 udp notanumber 127.0.0.1 9 typ host",
        "x" * 300,
    ):
        code = await error_for(a, {"type": "ice", "candidate": {"candidate": bad, "sdpMid": "0"}})
        assert code == "invalid_candidate"
    # (an offer while the hub's own offer is outstanding is answered: tests/test_glare.py)
    b = await clients.join("bob")
    await b.publish(PatternTrack())
    await wait_for(lambda: a.pid in media_hub.hub.media.sessions and bool(a.remote))
    # p2p relay in an sfu room
    code = await error_for(a, {"type": "offer", "sdp": NO_USABLE, "to": b.pid})
    assert code == "wrong_state"
    for c in (a, b, other_room):
        await barrier(c)
    await wait_for(lambda: len(a.remote) == 1 and len(b.remote) == 1)
    assert media_hub.hub.rooms.participant_count() == 3


async def test_answer_in_wrong_state_is_refused(media_hub: Running, clients: Clients) -> None:
    """An answer with no hub offer outstanding (none, or one the hub withdrew because the
    client's offer crossed it: tests/test_glare.py) is refused; the client stays."""
    b = await clients.join("bob")
    await b.negotiate()
    await wait_for(lambda: b.pid in media_hub.hub.media.sessions and not b._awaiting_answer)
    assert not media_hub.hub.media.sessions[b.pid].hub_offer_pending
    pc = RTCPeerConnection()
    pc.addTransceiver("audio")
    await pc.setLocalDescription(await pc.createOffer())
    assert await error_for(b, {"type": "answer", "sdp": pc.localDescription.sdp}) == "wrong_state"
    await pc.close()
    await barrier(b)


async def test_grants_gate_publishing_and_subscribing(media_hub: Running, clients: Clients) -> None:
    await media_hub.hub.media.set_mode("lobby", "sfu")
    listener = await clients.join("listener", grants=["chat"])  # neither publish nor subscribe
    await listener.negotiate()  # receive-only is allowed
    mute = await clients.join("viewer", grants=["subscribe"])
    ref = "pub"
    wait = mute.expect("error", ref=ref)
    pc = RTCPeerConnection()
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    await mute.send({"type": "offer", "id": ref, "sdp": pc.localDescription.sdp})
    assert (await wait)["code"] == "forbidden"
    await pc.close()
    await mute.negotiate()
    speaker = await clients.join("speaker")
    await speaker.publish(PatternTrack())
    await wait_for(lambda: len(mute.remote) == 1)
    await barrier(speaker, listener)  # whatever the hub meant for the listener has arrived
    assert listener.remote == {} and not listener.received("offer")
    assert len(media_hub.hub.media.sessions[listener.pid].slots) == 0
    await barrier(listener)


async def test_stalled_track_closes_that_participants_media(
    media_hub: Running, clients: Clients
) -> None:
    await media_hub.hub.media.set_mode("lobby", "sfu")
    b = await clients.join("bob")
    await b.negotiate()
    a = await clients.join("alice")
    cam = PatternTrack()
    await a.publish(cam)
    await wait_for(lambda: len(b.remote) == 1)
    closed = a.expect("media_closed")
    gone = b.expect("track", state="unpublished")
    cam.stop()  # frames stop while the track is not muted: a stall
    assert (await closed)["reason"] == "stalled"
    await gone
    await wait_for(lambda: not b.remote)
    assert a.pid not in media_hub.hub.media.sessions
    await barrier(a)


async def test_ice_failure_closes_that_participants_media(
    media_hub: Running, clients: Clients
) -> None:
    b = await clients.join("bob")
    await b.negotiate()
    a = await clients.join("alice")
    await a.publish(PatternTrack())
    await wait_for(lambda: len(b.remote) == 1)
    closed = a.expect("media_closed", timeout=60)
    gone = b.expect("track", state="unpublished", timeout=60)
    assert a.pc is not None
    # The client vanishes without a word: its transport stops, consent checks fail.
    for t in a.pc.getTransceivers():
        await t.receiver.transport.transport.stop()
        break
    assert (await closed)["reason"] in ("ice_failed", "stalled")
    await gone
    await barrier(a)


async def test_fifty_join_publish_leave_cycles_leak_nothing(
    media_hub: Running, clients: Clients
) -> None:
    watcher = await clients.join("watcher")
    await watcher.negotiate()
    await wait_for(lambda: not watcher._awaiting_answer)

    async def cycle(i: int) -> None:
        c = RoomClient(media_hub.url, media_hub.token("lobby", f"cyc{i}"), ice_hosts=LOOPBACK)
        await c.connect()
        gone = watcher.expect("track", state="unpublished")
        await c.publish(PatternTrack())
        await wait_for(lambda: len(watcher.remote) == 1)
        await c.close()
        await gone
        await wait_for(lambda: not watcher.remote)

    async def settled(limit: dict[str, int]) -> dict[str, int]:
        for _ in range(150):  # closing transports settle over loop turns (slower when busy)
            now = census()
            if all(now[k] <= limit[k] for k in now):
                break
            await asyncio.sleep(0.1)
        return now

    await cycle(0)  # warm-up: the watcher's one reusable slot now exists
    before = await settled(census())
    for i in range(1, 51):
        await cycle(i)
    after = await settled(before)
    assert after == before, (before, after)
    media = media_hub.hub.media
    assert media.counts() == {"sessions": 1, "publications": 0}
    assert len(media.sessions[watcher.pid].slots) == 1  # one slot, reused 50 times


async def test_audio_only_publisher_player(
    media_hub: Running, clients: Clients, tmp_path: Any
) -> None:
    from tests.helpers.audio import speech_wav

    wav = speech_wav(tmp_path / "s.wav", "short")
    a = await clients.join("alice")
    player = MediaPlayer(str(wav))
    assert player.audio is not None
    await a.publish(player.audio)
    await wait_for(lambda: media_hub.hub.media.counts()["publications"] == 1)
    player.audio.stop()


async def test_crossing_offers_settle_everyone_receives_everyone(
    media_hub: Running, clients: Clients
) -> None:
    """Three clients publish twice each at once: hub offers cross client offers (glare)."""
    from tests.helpers.media import ToneTrack

    people = [await clients.join(f"p{i}") for i in range(3)]
    for p in people:  # the second offer of each races the hub's offers for the others
        await p.publish(ToneTrack())
        await p.publish(PatternTrack())
    await wait_for(lambda: all(len(p.remote) == 4 for p in people), timeout=20)
    await wait_for(
        lambda: all(p.pc is not None and p.pc.connectionState == "connected" for p in people)
    )
    for p in people:
        video = next(r for r in p.remote.values() if r.meta["kind"] == "video")
        async with asyncio.timeout(10):
            await video.track.recv()
    assert media_hub.hub.media.counts() == {"sessions": 3, "publications": 6}


async def test_a_lossy_link_costs_the_relay_no_lasting_lag(
    media_hub: Running, clients: Clients
) -> None:
    """Every 20th RTP packet from the publisher is lost on the way (the test's own sending
    side drops it). aiortc's audio buffer would wait for each lost packet until it is full,
    then stay 14 packets (280 ms) behind for good; the hub's gives it up after two later
    packets, holds no more than that, and the subscriber keeps hearing the publisher."""
    await media_hub.hub.media.set_mode("lobby", "sfu")
    b = await clients.join("bob")
    await b.negotiate()
    a = await clients.join("alice")
    await a.publish(AudioStreamTrack())
    assert a.pc is not None
    transport = next(s.transport for s in a.pc.getSenders() if s.kind == "audio")
    send = transport._send_rtp
    packets = 0

    async def lossy(data: bytes) -> None:
        nonlocal packets
        if not is_rtcp(data):
            packets += 1
            if packets % 20 == 0:
                return
        await send(data)

    transport._send_rtp = lossy  # type: ignore[method-assign]
    media = media_hub.hub.media
    await wait_for(lambda: media.counts()["publications"] == 1)
    pub = next(iter(media.sessions[a.pid].publications.values()))
    buffer = compat.jitter_buffer(pub.receiver)
    assert isinstance(buffer, compat.AudioJitterBuffer)
    held: list[int] = []
    async with asyncio.timeout(20):
        while buffer.skipped < 4:
            held.append(sum(p is not None for p in buffer._packets))
            await asyncio.sleep(0.005)
    assert max(held) <= 1 + buffer.patience, held  # a frame waiting, then the patience
    await wait_for(lambda: any(r.meta["kind"] == "audio" for r in b.remote.values()))
    relayed = next(r for r in b.remote.values() if r.meta["kind"] == "audio")
    heard = await collect_audio(relayed.track, 1.5)
    assert len(heard) > 48000  # over a second of 1.5 s: the relay goes on through the losses
    assert packets >= 100
