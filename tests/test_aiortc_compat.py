"""One test per place commhub touches aiortc's or aioice's private state (commhub.rtc.compat).

Each runs the touch point on real aiortc objects (real peers on loopback where it takes a
connection) and fails loudly if an aiortc or aioice upgrade renamed or changed what is touched.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import queue
import re
import socket
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioice.ice
import pytest
from aiortc import (
    AudioStreamTrack,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.jitterbuffer import JitterBuffer
from aiortc.rtcrtpparameters import (
    RTCRtcpParameters,
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.rtp import RtpPacket

from commhub.rtc import compat, ice
from commhub.rtc.ice import IcePolicy, policy_scope

LOOPBACK = IcePolicy(hosts=("127.0.0.1",))
ROOT = Path(__file__).resolve().parent.parent


def test_the_checked_versions_are_pinned_and_installed() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = dict(re.fullmatch(r"([a-z]+)==([\d.]+)", d).groups() for d in deps if "==" in d)  # type: ignore[union-attr]
    for package in ("aiortc", "aioice"):
        assert pins.get(package) == importlib.metadata.version(package), (
            f"{package} {importlib.metadata.version(package)} is installed but commhub.rtc.compat "
            f"was checked against {pins.get(package)}: run tests/test_aiortc_compat.py, then pin"
        )


def test_sdk_does_not_import_the_servers_media_package() -> None:
    code = (
        "import sys, commhub.sdk; print(sorted(m for m in sys.modules if m.startswith('commhub.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout  # fmt: skip
    loaded = eval(out)  # a list literal printed just above
    assert "commhub.rtc.compat" in loaded
    assert not [
        m for m in loaded if m.startswith(("commhub.media", "commhub.hub", "commhub.server"))
    ]


async def _offer(pc: RTCPeerConnection) -> RTCSessionDescription:
    with policy_scope(LOOPBACK):
        await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription


async def _connect(a: RTCPeerConnection, b: RTCPeerConnection) -> None:
    await b.setRemoteDescription(await _offer(a))
    with policy_scope(LOOPBACK):
        await b.setLocalDescription(await b.createAnswer())
    await a.setRemoteDescription(b.localDescription)


async def test_transceiver_codecs_are_read_and_narrowed_before_the_answer() -> None:
    a, b = RTCPeerConnection(), RTCPeerConnection()
    try:
        a.addTransceiver("video")
        await b.setRemoteDescription(await _offer(a))
        (t,) = b.getTransceivers()
        codecs = compat.transceiver_codecs(t)
        assert codecs and all(isinstance(c, RTCRtpCodecParameters) for c in codecs)
        mimes = {c.mimeType.lower() for c in codecs}
        assert {"video/vp8", "video/h264"} <= mimes
        vp8 = [c for c in codecs if c.mimeType.lower() == "video/vp8"]
        compat.set_transceiver_codecs(t, vp8)
        with policy_scope(LOOPBACK):
            await b.setLocalDescription(await b.createAnswer())
        rtpmaps = re.findall(r"a=rtpmap:\d+ ([\w-]+)/", b.localDescription.sdp)
        assert rtpmaps == ["VP8"]  # the answer carries what was set, nothing else
    finally:
        await a.close()
        await b.close()


async def test_negotiated_parameters_survive_a_new_offer() -> None:
    a, b = RTCPeerConnection(), RTCPeerConnection()
    try:
        a.addTransceiver("audio")
        await _connect(a, b)
        (t,) = a.getTransceivers()
        saved = compat.negotiated_parameters(t)
        codecs, extensions = saved
        assert codecs and all(isinstance(c, RTCRtpCodecParameters) for c in codecs)
        assert all(isinstance(e, RTCRtpHeaderExtensionParameters) for e in extensions)
        payload_types = [c.payloadType for c in codecs]
        await a.createOffer()  # what a renegotiation does first: aiortc resets the two lists
        compat.restore_negotiated_parameters(t, saved)
        after = compat.negotiated_parameters(t)
        assert [c.payloadType for c in after[0]] == payload_types and after[1] == extensions
    finally:
        await a.close()
        await b.close()


async def test_local_offer_is_rolled_back_to_stable_and_the_remote_offer_applies() -> None:
    pc, other = RTCPeerConnection(), RTCPeerConnection()
    try:
        before = compat.local_descriptions(pc)
        assert before == (None, None)
        pc.addTransceiver("audio")
        offer = await _offer(pc)
        pending, current = compat.local_descriptions(pc)
        assert pending is not None and current is None and pc.signalingState == "have-local-offer"
        assert pc.localDescription.sdp == offer.sdp
        compat.rollback_local_offer(pc, before)
        assert pc.signalingState == "stable"
        assert pc.getTransceivers() == [] and pc.localDescription is None
        other.addTransceiver("video")
        await pc.setRemoteDescription(await _offer(other))  # glare resolved: theirs applies
        with policy_scope(LOOPBACK):
            await pc.setLocalDescription(await pc.createAnswer())
        assert [t.kind for t in pc.getTransceivers()] == ["video"]
        assert "m=audio" not in pc.localDescription.sdp
    finally:
        await pc.close()
        await other.close()


def _released(buffer: JitterBuffer | int, order: list[int]) -> list[int | None]:
    """The sequence number of the frame a jitter buffer (an int: aiortc's, with that
    prefetch) hands on as each packet comes."""
    if isinstance(buffer, int):
        buffer = JitterBuffer(capacity=16, prefetch=buffer)
    out: list[int | None] = []
    for seq in order:
        packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960)
        packet._data = b"\xfc"  # type: ignore[attr-defined]  # set by aiortc's receiver
        _, frame = buffer.add(packet)
        out.append(None if frame is None else frame.timestamp // 960)
    return out


def test_one_packet_of_prefetch_loses_nothing_to_reordering() -> None:
    """Why COMMHUB_AUDIO_JITTER_PREFETCH defaults to 1: a frame waits for every earlier
    packet whatever the prefetch, so a reordered packet is delivered in order at prefetch 1
    too; more prefetch only adds 20 ms per packet to every relayed frame and caption."""
    reordered = [0, 1, 3, 2, 4, 5, 6]
    assert _released(1, reordered) == [None, 0, None, 1, 2, 3, 4]
    assert _released(2, reordered) == [None, None, None, 0, 1, 2, 3]  # the same, a packet later
    assert _released(1, [0, 1, 2, 3]) == [None, 0, 1, 2]  # in order: one packet (20 ms) held
    buffer = compat.AudioJitterBuffer(16, prefetch=1, patience=2)
    assert _released(buffer, reordered) == [None, 0, None, 1, 2, 3, 4]
    assert _released(compat.AudioJitterBuffer(16, 1, 2), [0, 1, 4, 2, 3, 5]) == [
        None, 0, 1, None, 2, 3,
    ]  # overtaken by two: still played, in order
    assert buffer.skipped == 0


def test_a_lost_audio_packet_is_given_up_on_not_waited_for() -> None:
    """aiortc's buffer waits for a lost packet until it is full, then stays 14 packets
    (280 ms) behind for good; commhub's gives up on it after `patience` later packets."""
    lost = [0, 1, *range(3, 40)]  # packet 2 never comes
    theirs = _released(1, lost)
    assert theirs[-1] == 39 - 14 and theirs[2:16] == [None] * 14
    buffer = compat.AudioJitterBuffer(16, prefetch=1, patience=2)
    mine = _released(buffer, lost)
    assert buffer.skipped == 1
    assert [m for m in mine if m is not None] == [0, 1, *range(3, 39 - 2 + 1)]
    assert mine[-1] == 39 - 2  # the lag: patience packets, not 14
    late = [0, 1, *range(3, 10), 2, *range(10, 20)]  # it comes after all: dropped, no rewind
    assert [m for m in _released(compat.AudioJitterBuffer(16, 1, 2), late) if m is not None] == [
        0, 1, *range(3, 18),
    ]


async def test_receiver_kind_queue_and_jitter_buffer_are_where_compat_looks() -> None:
    pc = RTCPeerConnection()
    try:
        audio = pc.addTransceiver("audio").receiver
        video = pc.addTransceiver("video").receiver
        assert compat.receiver_kind(audio) == "audio" and compat.receiver_kind(video) == "video"
        assert type(compat.decoder_queue(audio)) is queue.Queue
        assert isinstance(compat.jitter_buffer(audio), JitterBuffer)
        assert compat.jitter_buffer(audio).capacity == 16
        compat.set_jitter_buffer(audio, capacity=16, prefetch=1)
        assert compat.jitter_buffer(audio)._prefetch == 1
        mine: queue.Queue[Any] = queue.Queue()
        compat.replace_decoder_queue(audio, mine)
        assert compat.decoder_queue(audio) is mine
    finally:
        await pc.close()


class _Recorder(queue.Queue[Any]):
    """A decoder queue that records the (codec, JitterFrame) aiortc puts and lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.mimes: list[str] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            codec, frame = item
            assert isinstance(frame.data, bytes) and isinstance(frame.timestamp, int)
            self.mimes.append(codec.mimeType.lower())
        super().put(item, block, timeout)


@pytest.fixture
async def call() -> AsyncIterator[tuple[RTCPeerConnection, RTCPeerConnection]]:
    a, b = RTCPeerConnection(), RTCPeerConnection()
    yield a, b
    await a.close()
    await b.close()


async def test_decoder_queue_tee_rtcp_wrap_and_pli_on_a_real_call(
    call: tuple[RTCPeerConnection, RTCPeerConnection],
) -> None:
    a, b = call
    a.addTrack(AudioStreamTrack())
    video_sender = a.addTrack(VideoStreamTrack())
    rtcp_seen: list[str] = []
    compat.on_sender_rtcp(video_sender, lambda p: rtcp_seen.append(type(p).__name__))
    recorders: dict[str, _Recorder] = {}
    receivers: dict[str, RTCRtpReceiver] = {}

    @b.on("track")
    def on_track(track: Any) -> None:
        receiver = next(t.receiver for t in b.getTransceivers() if t.receiver.track is track)
        recorders[track.kind] = _Recorder()
        receivers[track.kind] = receiver
        compat.replace_decoder_queue(receiver, recorders[track.kind])  # before receive()
        if track.kind == "audio":
            compat.set_jitter_buffer(receiver, capacity=16, prefetch=0)

    await _connect(a, b)
    async with asyncio.timeout(20):
        while not all(k in recorders and recorders[k].mimes for k in ("audio", "video")):
            await asyncio.sleep(0.05)
    assert set(recorders["audio"].mimes) == {"audio/opus"}
    assert set(recorders["video"].mimes) == {"video/vp8"}
    assert compat.jitter_buffer(receivers["audio"])._prefetch == 0
    ssrcs = [s.source for s in receivers["video"].getSynchronizationSources()]
    assert ssrcs
    await compat.send_pli(receivers["video"], ssrcs[0])
    async with asyncio.timeout(10):
        while "RtcpPsfbPacket" not in rtcp_seen:
            await asyncio.sleep(0.05)


async def test_aioice_hooks_put_host_candidates_on_the_policy_addresses_and_ports() -> None:
    ice.install()
    assert aioice.ice.get_host_addresses is ice._get_host_addresses
    assert isinstance(aioice.ice.asyncio, ice._AsyncioFacade)  # type: ignore[attr-defined]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # a free spot for the range
        s.bind(("127.0.0.1", 0))
        low = int(s.getsockname()[1])
    ports = (low, low + 20)
    pc = RTCPeerConnection()
    try:
        pc.addTransceiver("audio")
        with policy_scope(IcePolicy(hosts=("127.0.0.1",), ports=ports)):
            await pc.setLocalDescription(await pc.createOffer())
        hosts = re.findall(
            r"a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", pc.localDescription.sdp
        )
        assert hosts and all(h == "127.0.0.1" and ports[0] <= int(p) <= ports[1] for h, p in hosts)
    finally:
        await pc.close()
    # without a policy in scope aioice's own address list is used, unchanged
    assert ice._get_host_addresses(True, False) == compat.original_get_host_addresses(
        use_ipv4=True, use_ipv6=False
    )


async def test_a_connection_closed_as_its_checks_complete_leaves_no_consent_checks() -> None:
    # close() lands after the check list completed but before connect() resumed: aioice
    # would then start consent checks after close and never stop them (a leaked task).
    ice.install()
    assert aioice.ice.Connection.connect is compat._connect_unless_closed
    a = aioice.ice.Connection(ice_controlling=True)
    b = aioice.ice.Connection(ice_controlling=False)
    with policy_scope(LOOPBACK):
        await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for near, far in ((a, b), (b, a)):
        near.remote_username, near.remote_password = far.local_username, far.local_password
        for candidate in far.local_candidates:
            await near.add_remote_candidate(candidate)
        await near.add_remote_candidate(None)
    closing: list[asyncio.Future[None]] = []
    state = a._check_list_state
    put = state.put_nowait

    def close_on_completion(item: int) -> None:
        if item == aioice.ice.ICE_COMPLETED:
            closing.append(asyncio.ensure_future(a.close()))  # runs before connect() resumes
        put(item)

    state.put_nowait = close_on_completion  # type: ignore[method-assign]
    try:
        await asyncio.wait_for(asyncio.gather(a.connect(), b.connect()), 30)
        assert closing, "the check list never completed"
        await asyncio.wait_for(closing[0], 30)
        consent = a._query_consent_task
        assert consent is None or consent.done()
    finally:
        await a.close()
        await b.close()


async def test_a_sender_stopped_before_it_started_is_not_started_by_a_late_connect() -> None:
    # pc.close() stops senders before transports; a connect that finishes its DTLS handshake
    # meanwhile calls send() next: the sender must stay stopped (no RTCP loop left running).
    ice.install()
    pc = RTCPeerConnection()
    try:
        sender = pc.addTrack(AudioStreamTrack())
        opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2,
                                     payloadType=111)  # fmt: skip
        parameters = RTCRtpSendParameters(codecs=[opus], rtcp=RTCRtcpParameters(cname="c"),
                                          muxId="0")  # fmt: skip
        await sender.stop()
        before = set(asyncio.all_tasks())
        await sender.send(parameters)
        started = [t for t in asyncio.all_tasks() - before if "RTCRtpSender" in repr(t)]
        for t in started:
            t.cancel()
        assert started == []
    finally:
        await asyncio.wait_for(pc.close(), 30)  # a started sender hangs it without the fix
