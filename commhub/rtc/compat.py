"""Every place commhub reaches into aiortc's or aioice's private state, and nowhere else.

aiortc exposes no API for these; each function names what it touches so that an upgrade is
checked here (tests/test_aiortc_compat.py has one test per touch point, and pyproject.toml
pins the versions they were checked against). Touch points:

- ``RTCRtpTransceiver._codecs`` / ``_headerExtensions``: the negotiated codec list, narrowed
  after the remote offer; both kept across createOffer (which resets them to the defaults).
- ``RTCRtpSender._handle_rtcp_packet``: wrapped, to see subscribers' picture-loss reports.
- ``RTCRtpReceiver.__decoder_queue`` / ``__jitter_buffer`` / ``__kind`` (name-mangled):
  the decoder queue is replaced by a tee, the audio jitter buffer by one with less prefetch
  that gives up on lost packets (``AudioJitterBuffer``: ``JitterBuffer._origin`` /
  ``_packets`` / ``_capacity`` / ``_remove_frame``).
- ``RTCRtpReceiver._send_rtcp_pli``: asks a publisher for a key frame.
- ``RTCPeerConnection.__pendingLocalDescription`` / ``__currentLocalDescription`` /
  ``__transceivers`` / ``__seenMids`` / ``__dtlsTransports`` / ``__iceTransports`` /
  ``__setSignalingState``: undoing a refused local offer (aiortc has no rollback).
- ``aioice.ice.get_host_addresses`` and ``aioice.ice.asyncio``: module globals replaced so
  that host candidates follow an address and port policy (commhub.rtc.ice).
- ``aioice.ice.Connection.connect`` wrapped, reading ``_closing`` / ``_query_consent_task``:
  a connection closed after its check list completed but before ``connect()`` resumed
  would otherwise start consent checks that nothing ever stops (see ``guard_connect``).
- ``RTCRtpSender.stop`` / ``send`` wrapped (``_commhub_stopped`` set on the sender): a pc
  closed while its DTLS handshake finished would start a stopped sender (see ``guard_send``).
"""

from __future__ import annotations

import queue
from collections.abc import Awaitable, Callable
from typing import Any

import aioice.ice
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtcrtpparameters import (
    RTCRtpCodecParameters,
    RTCRtpHeaderExtensionParameters,
    RTCRtpSendParameters,
)
from aiortc.sdp import SessionDescription
from aiortc.utils import uint16_add

# -- transceivers ----------------------------------------------------------------------


def transceiver_codecs(transceiver: RTCRtpTransceiver) -> list[RTCRtpCodecParameters]:
    """The codecs a transceiver negotiated (fixed by aiortc in setRemoteDescription)."""
    codecs: list[RTCRtpCodecParameters] = transceiver._codecs
    return codecs


def set_transceiver_codecs(
    transceiver: RTCRtpTransceiver, codecs: list[RTCRtpCodecParameters]
) -> None:
    transceiver._codecs = codecs


Negotiated = tuple[list[RTCRtpCodecParameters], list[RTCRtpHeaderExtensionParameters]]


def negotiated_parameters(transceiver: RTCRtpTransceiver) -> Negotiated:
    """The codecs and header extensions a transceiver's sender will use."""
    return transceiver._codecs, transceiver._headerExtensions


def restore_negotiated_parameters(transceiver: RTCRtpTransceiver, saved: Negotiated) -> None:
    """Put back what `negotiated_parameters` saved (createOffer resets both to aiortc's
    defaults, and a sender not started yet would then use the default payload numbers)."""
    transceiver._codecs, transceiver._headerExtensions = saved


# -- senders ---------------------------------------------------------------------------


def on_sender_rtcp(sender: RTCRtpSender, after: Callable[[Any], None]) -> None:
    """Call ``after(packet)`` for every RTCP packet the sender handled (aiortc's own
    handling runs first, unchanged)."""
    original: Callable[[Any], Awaitable[None]] = sender._handle_rtcp_packet

    async def handle(packet: Any) -> None:
        await original(packet)
        after(packet)

    sender._handle_rtcp_packet = handle  # type: ignore[method-assign]


# -- receivers -------------------------------------------------------------------------


def receiver_kind(receiver: RTCRtpReceiver) -> str:
    kind: str = receiver._RTCRtpReceiver__kind  # type: ignore[attr-defined]
    return kind


def replace_decoder_queue(receiver: RTCRtpReceiver, decoder_queue: queue.Queue[Any]) -> None:
    """Put ``decoder_queue`` where the receiver queues ``(codec, JitterFrame)`` for its decoder
    thread. Only before ``receive()``: that hands the queue to the thread."""
    receiver._RTCRtpReceiver__decoder_queue = decoder_queue  # type: ignore[attr-defined]


def decoder_queue(receiver: RTCRtpReceiver) -> queue.Queue[Any]:
    q: queue.Queue[Any] = receiver._RTCRtpReceiver__decoder_queue  # type: ignore[attr-defined]
    return q


class AudioJitterBuffer(JitterBuffer):
    """aiortc's jitter buffer, except that a lost audio packet is given up on.

    aiortc hands a frame on only once every earlier packet is there, and at most one frame
    per arriving packet: after one lost packet it waits until the buffer is full (16
    packets), then stays 14 packets (280 ms) behind for good, on every relayed frame and
    caption. Audio is not retransmitted, so here a missing packet is skipped once
    ``patience`` later packets have come (it is later than reordering makes a packet): the
    lag stays within ``patience`` packets. Reads aiortc's ``_origin`` / ``_packets`` /
    ``_capacity`` and overrides ``_remove_frame``; an audio RTP packet is one Opus frame.
    """

    def __init__(self, capacity: int, prefetch: int, patience: int) -> None:
        super().__init__(capacity=capacity, prefetch=prefetch)
        self.patience = patience
        self.skipped = 0  # packets given up on

    def _remove_frame(self, sequence_number: int) -> JitterFrame | None:
        frame = super()._remove_frame(sequence_number)
        origin = self._origin
        if frame is not None or origin is None:
            return frame
        ahead = uint16_add(sequence_number, -origin)
        hole = next(
            (n for n in range(ahead) if self._packets[(origin + n) % self._capacity] is None),
            None,
        )
        if hole is None or ahead - hole < self.patience:
            return None  # nothing missing, or not yet given up on
        if hole > 0:  # the frame at the head is whole: on with it, one per packet as aiortc
            packet = self._packets[origin % self._capacity]
            assert packet is not None
            self.remove(1)
            return JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]
        while self._packets[self._origin % self._capacity] is None:  # type: ignore[operator]
            self.remove(1)
            self.skipped += 1
        return super()._remove_frame(sequence_number)


def set_jitter_buffer(
    receiver: RTCRtpReceiver, capacity: int, prefetch: int, patience: int = 0
) -> None:
    """Replace the receiver's jitter buffer (aiortc's audio one holds 4 packets, 80 ms);
    with ``patience``, an AudioJitterBuffer (0: aiortc's, which waits for a lost packet)."""
    buffer = (
        AudioJitterBuffer(capacity, prefetch, patience)
        if patience
        else JitterBuffer(capacity=capacity, prefetch=prefetch)
    )
    receiver._RTCRtpReceiver__jitter_buffer = buffer  # type: ignore[attr-defined]


def jitter_buffer(receiver: RTCRtpReceiver) -> JitterBuffer:
    buffer: JitterBuffer = receiver._RTCRtpReceiver__jitter_buffer  # type: ignore[attr-defined]
    return buffer


async def send_pli(receiver: RTCRtpReceiver, media_ssrc: int) -> None:
    """A picture-loss indication to the sender of ``media_ssrc`` (ConnectionError if closed)."""
    await receiver._send_rtcp_pli(media_ssrc)


# -- peer connections: undoing a refused local offer ------------------------------------


def local_descriptions(pc: RTCPeerConnection) -> tuple[Any, Any]:
    """(pending, current) local descriptions: what ``rollback_local_offer`` restores."""
    return (
        pc._RTCPeerConnection__pendingLocalDescription,  # type: ignore[attr-defined]
        pc._RTCPeerConnection__currentLocalDescription,  # type: ignore[attr-defined]
    )


def rollback_local_offer(pc: RTCPeerConnection | None, before: tuple[Any, Any]) -> None:
    """Undo our refused offer: aiortc has no rollback, so restore its pre-offer state."""
    if pc is None or pc.signalingState != "have-local-offer":
        return
    remote = pc.remoteDescription
    negotiated = (
        {m.rtp.muxId for m in SessionDescription.parse(remote.sdp).media} if remote else set()
    )
    transceivers = pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
    for t in list(transceivers):
        # Transceivers only our refused offer carried would be matched to the other side's
        # new sections (same kind, no mid): drop them; they are added again later.
        if t.mid is None or t.mid not in negotiated:
            if t.mid is not None:
                pc._RTCPeerConnection__seenMids.discard(t.mid)  # type: ignore[attr-defined]
            transceivers.remove(t)
    # and the transports only they used (aiortc would count them as still connecting)
    used = {t.receiver.transport for t in transceivers}
    dtls = pc._RTCPeerConnection__dtlsTransports  # type: ignore[attr-defined]
    for transport in [d for d in dtls if d not in used]:
        dtls.discard(transport)
        pc._RTCPeerConnection__iceTransports.discard(transport.transport)  # type: ignore[attr-defined]
    pending, current = before
    pc._RTCPeerConnection__pendingLocalDescription = pending  # type: ignore[attr-defined]
    pc._RTCPeerConnection__currentLocalDescription = current  # type: ignore[attr-defined]
    pc._RTCPeerConnection__setSignalingState("stable")  # type: ignore[attr-defined]


# -- aioice module globals ---------------------------------------------------------------

original_get_host_addresses: Callable[..., list[str]] = aioice.ice.get_host_addresses


def hook_aioice(get_host_addresses: Callable[[bool, bool], list[str]], asyncio_facade: Any) -> None:
    """Replace what aioice.ice calls to list host addresses and to get the running loop
    (whose create_datagram_endpoint binds host candidates)."""
    aioice.ice.get_host_addresses = get_host_addresses  # type: ignore[assignment]
    aioice.ice.asyncio = asyncio_facade  # type: ignore[attr-defined]


# -- aioice: consent checks started after close -------------------------------------------

_original_connect: Callable[[aioice.ice.Connection], Awaitable[None]] = (
    aioice.ice.Connection.connect
)


async def _connect_unless_closed(connection: aioice.ice.Connection) -> None:
    await _original_connect(connection)
    if connection._closing:
        # close() ran between the check list completing and connect() resuming: it stopped
        # the consent task that did not exist yet, and connect() then started one, which
        # runs forever (it checks no pairs, close() cleared them) and keeps the connection.
        task = connection._query_consent_task
        connection._query_consent_task = None
        if task is not None:
            task.cancel()  # not awaited: that could swallow a cancellation of the caller


def guard_connect() -> None:
    """Make ``Connection.connect`` leave no consent checks running when the connection was
    closed meanwhile (what it returns or raises is unchanged)."""
    aioice.ice.Connection.connect = _connect_unless_closed  # type: ignore[method-assign,assignment]


# -- aiortc: a sender started after it was stopped -----------------------------------------

_original_sender_stop = RTCRtpSender.stop
_original_sender_send = RTCRtpSender.send


async def _stop_for_good(sender: RTCRtpSender) -> None:
    sender._commhub_stopped = True  # type: ignore[attr-defined]
    await _original_sender_stop(sender)


async def _send_unless_stopped(sender: RTCRtpSender, parameters: RTCRtpSendParameters) -> None:
    # RTCPeerConnection.close() stops senders first; a connect still finishing its DTLS
    # handshake then calls send(), which would start RTP/RTCP tasks that nothing stops
    # (the RTCP loop ignores the closed transport and runs forever, keeping the pc).
    if getattr(sender, "_commhub_stopped", False):
        return
    await _original_sender_send(sender, parameters)


def guard_send() -> None:
    """Make ``RTCRtpSender.send`` a no-op once the sender was stopped."""
    RTCRtpSender.stop = _stop_for_good  # type: ignore[method-assign,assignment]
    RTCRtpSender.send = _send_unless_stopped  # type: ignore[method-assign,assignment]
