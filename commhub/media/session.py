"""One participant's RTCPeerConnection with the hub and its offer/answer state machine.

The client offers what it publishes; the hub offers what it relays to the client. Only
one negotiation runs at a time: a client offer that arrives while the hub's own offer is
outstanding is refused with `wrong_state` (aiortc cannot roll back), and hub changes
wanted meanwhile are folded into one follow-up offer once the state is stable again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpTransceiver, RTCSessionDescription
from aiortc.rtcrtpsender import RTCRtpSender
from aiortc.sdp import SessionDescription, candidate_from_sdp

from commhub import protocol
from commhub.media.forward import ForwardTrack, Publication
from commhub.media.sdpcheck import Section, is_ip, strip_named_candidates
from commhub.media.sdpmunge import Numbering
from commhub.protocol import ErrorCode, ProtocolError
from commhub.rooms import Participant
from commhub.rtc import compat
from commhub.rtc.ice import IcePolicy, policy_scope, rtc_configuration

log = logging.getLogger("commhub.media.session")

SUPPORTED = {"audio": {"opus"}, "video": {"vp8"}}
CLOSE_BOUND = 5.0  # seconds a peer connection may take to close


@dataclass
class Slot:
    """A hub-to-client transceiver and the publication (if any) it currently carries."""

    transceiver: RTCRtpTransceiver
    track: ForwardTrack
    publication: Publication | None = None


_SDP_LINE = re.compile(r"^[a-z]=.*$")


def check_sdp_text(sdp: str, ref: str | None) -> None:
    # aiortc's parser skips lines it does not know: check the RFC 8866 shape first.
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    if not lines or lines[0] != "v=0" or not all(_SDP_LINE.match(line) for line in lines):
        raise ProtocolError(ErrorCode.INVALID_SDP, "not an SDP description (RFC 8866)", ref)


def parse_sdp(sdp: str, ref: str | None) -> SessionDescription:
    check_sdp_text(sdp, ref)
    try:
        parsed = SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc raises ValueError, KeyError, IndexError...
        raise ProtocolError(ErrorCode.INVALID_SDP, f"the SDP does not parse: {exc}", ref) from None
    if not parsed.media:
        raise ProtocolError(ErrorCode.NO_MEDIA, "the SDP has no media sections", ref)
    return parsed


def usable_media(parsed: SessionDescription) -> list[Any]:
    """Audio/video sections whose codecs the hub relays (Opus; VP8)."""
    return [
        m
        for m in parsed.media
        if m.kind in SUPPORTED
        and any(c.mimeType.split("/")[1].lower() in SUPPORTED[m.kind] for c in m.rtp.codecs)
    ]


class PeerSession:
    def __init__(
        self,
        participant: Participant,
        ice_servers: list[dict[str, Any]],
        policy: IcePolicy,
        send: Callable[[dict[str, Any]], None],
        on_track: Callable[[PeerSession, Any, str], None],
        on_failed: Callable[[PeerSession, str], Awaitable[None]],
        slot_map: Callable[[PeerSession], list[dict[str, Any]]],
    ) -> None:
        self.participant = participant
        self.policy = policy
        self.pc = RTCPeerConnection(rtc_configuration(ice_servers))
        self.send = send
        self.slots: list[Slot] = []
        self._wanted: list[Publication] = []  # to be carried from the next hub offer
        self.publications: dict[str, Publication] = {}  # by mid
        self.msids: dict[str, str] = {}  # client mid -> client track id
        self.numbering = Numbering()  # the client's payload types and extension ids
        self.closed = False
        self.broken = False  # aiortc failed half-way through applying a client offer
        self.named_candidates = 0  # host-name (mDNS) candidates ignored
        self.hub_offer_pending = False
        self.renegotiate_wanted = False
        self.withdrawn = 0  # hub offers withdrawn because a client offer crossed them
        self._before_offer: tuple[Any, Any] = (None, None)  # local descriptions, see withdraw
        self._lock = asyncio.Lock()
        self._slot_map = slot_map
        self._on_failed = on_failed
        self._tasks: set[asyncio.Task[None]] = set()

        @self.pc.on("track")
        def _track(track: Any) -> None:
            transceiver = next(
                (t for t in self.pc.getTransceivers() if t.receiver.track is track), None
            )
            if transceiver is not None and transceiver.mid is not None:
                on_track(self, transceiver, self.msids.get(transceiver.mid, track.id))

        @self.pc.on("connectionstatechange")
        async def _state() -> None:
            if self.pc.connectionState == "failed" and not self.closed:
                await self._on_failed(self, "ice_failed")

    # -- client-initiated -----------------------------------------------------------------

    async def client_offer(self, sdp: str, ref: str | None, can_publish: bool) -> None:
        parsed = parse_sdp(sdp, ref)
        usable = usable_media(parsed)
        if not usable:
            raise ProtocolError(
                ErrorCode.NO_MEDIA, "no audio (Opus) or video (VP8) section in the offer", ref
            )
        hub_mids = self.hub_mids()
        sending = [
            m
            for m in usable
            if m.direction in ("sendonly", "sendrecv") and m.rtp.muxId not in hub_mids
        ]
        if sending and not can_publish:
            raise ProtocolError(ErrorCode.FORBIDDEN, "your token has no publish grant", ref)
        for m in parsed.media:
            ids = (m.msid or "").split(" ")  # as sdpcheck.shape reads it
            if len(ids) > 1 and ids[1] and m.rtp.muxId:
                self.msids[m.rtp.muxId] = ids[1]
        async with self._lock:
            if self.hub_offer_pending:
                # Glare: the client's offer crossed ours. The hub is the polite side: it
                # withdraws its offer (the client ignores it), answers, then offers again.
                self._withdraw_offer()
            await self._set_remote(sdp, "offer", ref)
            self._prefer_relayable_codecs()
            try:
                with policy_scope(self.policy):
                    await self.pc.setLocalDescription(await self.pc.createAnswer())
            except Exception as exc:
                # aiortc took the offer but cannot answer it, and it cannot roll back:
                # this peer connection is done for (the caller ends the session).
                self.broken = True
                raise ProtocolError(
                    ErrorCode.INVALID_SDP, f"the hub cannot answer this offer: {exc}", ref
                ) from None
            self.send(
                protocol.hub_sdp("answer", self.pc.localDescription.sdp, self._slot_map(self), ref)
            )
        await self.maybe_renegotiate()

    def negotiated_mids(self) -> set[str]:
        """The mids both sides agreed on (a hub offer still outstanding may be withdrawn)."""
        remote = self.pc.remoteDescription
        if remote is None:
            return set()
        return {m.rtp.muxId for m in SessionDescription.parse(remote.sdp).media if m.rtp.muxId}

    def hub_mids(self) -> set[str]:
        """The sections the hub sends on, as the client knows them."""
        agreed = self.negotiated_mids()
        return {s.transceiver.mid for s in self.slots if s.transceiver.mid in agreed}

    def _withdraw_offer(self) -> None:
        """Undo the hub's outstanding offer (the caller holds the lock): the sections only
        that offer carried go (their publications wait for the next offer), and aiortc,
        which has no rollback, is put back to its state before the offer."""
        agreed = self.negotiated_mids()
        for slot in list(self.slots):
            if slot.transceiver.mid in agreed:
                continue
            self.slots.remove(slot)
            if slot.publication is not None:
                slot.publication.subscribers.discard(slot.track)
                if slot.publication not in self._wanted:
                    self._wanted.append(slot.publication)
            slot.track.stop()
        compat.rollback_local_offer(self.pc, self._before_offer)
        self.hub_offer_pending = False
        self.renegotiate_wanted = True
        self.withdrawn += 1

    def check_mids(self, sections: list[Section], ref: str | None) -> None:
        """A mid the connection already has must keep its kind: aiortc would otherwise make
        a second transceiver with the same mid and fail to answer. (The mids of a hub offer
        that may be withdrawn do not count.)"""
        agreed = self.negotiated_mids()
        hub_sent = {s.transceiver for s in self.slots}
        kinds = {
            t.mid: t.kind
            for t in self.pc.getTransceivers()
            if t.mid is not None and (t not in hub_sent or t.mid in agreed)
        }
        for s in sections:
            if s.mid in kinds and kinds[s.mid] != s.kind:
                raise ProtocolError(
                    ErrorCode.INVALID_SDP,
                    f"section {s.mid!r} was {kinds[s.mid]}, the offer makes it {s.kind}",
                    ref,
                )

    async def _set_remote(self, sdp: str, kind: str, ref: str | None) -> None:
        """Apply the client's description (caller holds the lock); a refusal is invalid_sdp."""
        sdp, dropped = strip_named_candidates(sdp)
        self.named_candidates += dropped
        self.numbering.learn(sdp)
        try:
            await self.pc.setRemoteDescription(RTCSessionDescription(sdp, kind))
        except Exception as exc:
            raise ProtocolError(
                ErrorCode.INVALID_SDP, f"the {kind} was refused: {exc}", ref
            ) from None

    async def client_answer(self, sdp: str, ref: str | None) -> None:
        parse_sdp(sdp, ref)
        if not self.hub_offer_pending or self.pc.signalingState != "have-local-offer":
            raise ProtocolError(ErrorCode.WRONG_STATE, "no offer from the hub is outstanding", ref)
        async with self._lock:
            await self._set_remote(sdp, "answer", ref)
            self.hub_offer_pending = False
        await self.maybe_renegotiate()

    async def client_candidate(self, cand: dict[str, Any] | None, ref: str | None) -> None:
        if cand is None or not cand.get("candidate"):
            # End of candidates, unless some were ignored: with none left, aioice would
            # give up before the client's checks arrive.
            if self.pc.remoteDescription is not None and not self.named_candidates:
                with contextlib.suppress(Exception):
                    await self.pc.addIceCandidate(None)
            return
        line = cand["candidate"]
        try:
            ice = candidate_from_sdp(line.removeprefix("candidate:"))
        except Exception:
            raise ProtocolError(
                ErrorCode.INVALID_CANDIDATE, f"not an ICE candidate: {line[:80]!r}", ref
            ) from None
        if not is_ip(ice.ip):
            # An mDNS name (browsers hide their address so): never resolved by the hub,
            # the client's checks make it known as a peer-reflexive candidate instead.
            self.named_candidates += 1
            return
        ice.sdpMid = cand.get("sdpMid")
        ice.sdpMLineIndex = cand.get("sdpMLineIndex")
        if ice.sdpMid is None and ice.sdpMLineIndex is None:
            ice.sdpMLineIndex = 0
        if self.pc.remoteDescription is None:
            raise ProtocolError(
                ErrorCode.WRONG_STATE, "ICE candidate before any offer or answer", ref
            )
        try:
            await self.pc.addIceCandidate(ice)
        except Exception as exc:
            raise ProtocolError(
                ErrorCode.INVALID_CANDIDATE, f"the candidate was refused: {exc}", ref
            ) from None

    # -- hub-initiated --------------------------------------------------------------------

    def add_slot(self, pub: Publication) -> None:
        """Carry pub to this client from the next hub offer on.

        Transceivers are only added inside maybe_renegotiate, under the negotiation lock in
        the stable state: one added while a client offer is being answered would be in
        the answer but not in the offer.
        """
        if pub not in self._wanted:
            self._wanted.append(pub)
        self.renegotiate_wanted = True

    def drop_slot(self, pub: Publication) -> None:
        if pub in self._wanted:
            self._wanted.remove(pub)
        for s in self.slots:
            if s.publication is pub:
                pub.subscribers.discard(s.track)
                s.publication = None
                s.track.switch_source(None)  # and let go of the ended publication
                self.renegotiate_wanted = True

    def _apply_slots(self) -> None:
        for pub in self._wanted:
            free = next(
                (s for s in self.slots if s.publication is None and s.track.kind == pub.kind),
                None,
            )
            if free is None:
                track = ForwardTrack(pub.kind, pub.request_keyframe)
                transceiver = self.pc.addTransceiver(track, direction="sendonly")
                transceiver.setCodecPreferences(
                    [
                        c
                        for c in RTCRtpSender.getCapabilities(pub.kind).codecs
                        if c.mimeType.split("/")[1].lower() in SUPPORTED[pub.kind]
                    ]
                )
                free = Slot(transceiver, track)
                self.slots.append(free)
                _relay_pli(transceiver)
            else:
                free.track.switch_source(pub.request_keyframe)
            free.transceiver.direction = "sendonly"
            free.publication = pub
            pub.subscribers.add(free.track)
            pub.request_keyframe()
        self._wanted.clear()
        for s in self.slots:
            if s.publication is None:
                s.transceiver.direction = "inactive"

    async def maybe_renegotiate(self) -> None:
        """Send the hub's offer when something changed and no negotiation is running."""
        async with self._lock:
            if (
                self.closed
                or not self.renegotiate_wanted
                or self.hub_offer_pending
                or self.pc.signalingState != "stable"
            ):
                return
            self.renegotiate_wanted = False
            self._apply_slots()
            self.hub_offer_pending = True
            # createOffer resets every transceiver's codecs to aiortc's defaults; a sender
            # aiortc has yet to start (its task runs after the last answer) would then send
            # Opus as 96 where the client negotiated 111: keep the negotiated numbers.
            kept = {
                t: compat.negotiated_parameters(t)
                for t in self.pc.getTransceivers()
                if t.currentDirection is not None
            }
            self._before_offer = compat.local_descriptions(self.pc)
            with policy_scope(self.policy):
                offer = await self.pc.createOffer()
                for t, negotiated in kept.items():
                    compat.restore_negotiated_parameters(t, negotiated)
                await self.pc.setLocalDescription(offer)
            sdp = self.numbering.rewrite_offer(self.pc.localDescription.sdp)
            self.send(protocol.hub_sdp("offer", sdp, self._slot_map(self)))

    def _prefer_relayable_codecs(self) -> None:
        # What the hub receives must be what it can forward as-is (Opus, VP8). aiortc
        # fixes a remote-created transceiver's codecs in setRemoteDescription, before
        # preferences could apply, so its negotiated list is narrowed here.
        hub_sent = {s.transceiver for s in self.slots}
        for t in self.pc.getTransceivers():
            if t in hub_sent or t.kind not in SUPPORTED:
                continue
            codecs = compat.transceiver_codecs(t)
            keep = [c for c in codecs if c.mimeType.split("/")[1].lower() in SUPPORTED[t.kind]]
            types = {c.payloadType for c in keep}
            rtx = [
                c
                for c in codecs
                if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") in types
            ]
            if keep:
                compat.set_transceiver_codecs(t, keep + rtx)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for s in self.slots:
            if s.publication is not None:
                s.publication.subscribers.discard(s.track)
            s.track.stop()
        for pub in self.publications.values():
            pub.close()
        # Shielded: cancelling a waiter of aiortc's close future would cancel the future
        # itself and break the close already running (InvalidStateError, leaked PC).
        closing = asyncio.ensure_future(self.pc.close())
        try:
            async with asyncio.timeout(CLOSE_BOUND):
                await asyncio.shield(closing)
        except TimeoutError:
            log.warning(
                "peer connection of %s took over %.0f s to close", self.participant.id, CLOSE_BOUND
            )


def _relay_pli(transceiver: RTCRtpTransceiver) -> None:
    """A subscriber's picture-loss report becomes a key-frame request to the publisher."""
    sender = transceiver.sender

    def after(packet: Any) -> None:
        if type(packet).__name__ == "RtcpPsfbPacket":
            track = sender.track
            # Only ask: frames keep flowing, the decoder recovers at the key frame.
            if isinstance(track, ForwardTrack) and track.on_keyframe_needed:
                track.on_keyframe_needed()

    compat.on_sender_rtcp(sender, after)
