"""The hub's media layer: peer sessions per participant, room modes, relay, P2P brokering."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiortc import RTCRtpTransceiver
from aiortc.sdp import SessionDescription, candidate_from_sdp

from commhub import protocol
from commhub.config import Settings
from commhub.media.forward import Publication, tee_receiver
from commhub.media.sdpcheck import shape
from commhub.media.session import PeerSession, check_sdp_text, parse_sdp
from commhub.media.tap import AudioTapCallback, AudioTaps, TapTrack
from commhub.protocol import (
    ErrorCode,
    MediaClosedReason,
    MediaMode,
    Message,
    ProtocolError,
    TrackState,
)
from commhub.rooms import Participant, Rooms
from commhub.rooms.participant import Connection
from commhub.rtc.ice import IcePolicy

log = logging.getLogger("commhub.media")

MODES = ("auto", "sfu", "p2p")
TRACK_ID_MAX = 128  # defs.json: a track's id as every participant is told it
KINDS = ("audio", "video")

VideoTrackCallback = Callable[[str, Participant, Publication], None]


@dataclass(frozen=True)
class Suppression:
    """A rule holding back some of one participant's tracks (see Media.suppress)."""

    participant: str
    track_id: str | None  # None: every track (of `kind`)
    kind: str | None  # None: both kinds
    reason: str

    def covers(self, pub: Publication) -> bool:
        return (
            pub.owner_id == self.participant
            and self.track_id in (None, pub.track_id)
            and self.kind in (None, pub.kind)
        )

    def wire(self) -> dict[str, Any]:
        return {"track_id": self.track_id, "kind": self.kind, "reason": self.reason}


@dataclass
class RoomMedia:
    name: str
    override: str | None = None  # admin's choice; None: the settings' room_mode
    mode: str = "sfu"
    peers: tuple[str, str] | None = None  # the pair in p2p mode
    # by (owner, track id): a track id is the client's choice and only unique per client
    publications: dict[tuple[str, str], Publication] = field(default_factory=dict)
    suppressions: list[Suppression] = field(default_factory=list)


class Outbox(Protocol):
    """Where media's messages go (the hub's delivery, encoded and counted there)."""

    def send(self, conn: Connection, msg: Message) -> None: ...

    async def publish(
        self,
        room: str,
        msg: Message,
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> None: ...


class Media:
    """Told of joins and leaves by the hub (admit/joined/leave/close_room); reads the
    room registry for who is in a room and sends through `outbox`: it never sees the hub."""

    def __init__(self, settings: Settings, rooms: Rooms, outbox: Outbox) -> None:
        self.settings = s = settings
        self.members = rooms  # the hub's registry: who is in which room (read only here)
        self.outbox = outbox
        self.policy = IcePolicy(
            hosts=tuple(s.ice_host_addresses),
            ports=(s.udp_port_min, s.udp_port_max) if s.udp_port_min else None,
        )
        self.taps = AudioTaps()
        self.sessions: dict[str, PeerSession] = {}  # by participant id
        self.rooms: dict[str, RoomMedia] = {}
        self.capabilities: dict[str, dict[str, bool]] = {}
        # participant id -> track id -> source/muted, for tracks not published yet
        self.pending_meta: dict[str, dict[str, dict[str, Any]]] = {}
        self._reserved: dict[str, int] = {}  # participant id -> tracks of its offer in flight
        self._serial = itertools.count()
        self._video_watchers: list[VideoTrackCallback] = []
        self._watchdog: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- public API -----------------------------------------------------------------------

    def on_audio_track(self, callback: AudioTapCallback) -> Callable[[], None]:
        """Call `callback(participant, track)` for every audio track published to the hub.

        `track` is a MediaStreamTrack of decoded 48 kHz s16 AudioFrames owned by this
        consumer; `await track.recv()` raises MediaStreamError when the publication ends.
        The callback may be a coroutine function (it then runs as its own task).
        Returns a function that unregisters the callback.
        """
        return self.taps.on_audio_track(callback)

    async def audio_tracks(self) -> AsyncIterator[tuple[Participant, TapTrack]]:
        """The same as on_audio_track, as an async iterator (unregisters when closed)."""
        queue: asyncio.Queue[tuple[Participant, TapTrack]] = asyncio.Queue()
        remove = self.on_audio_track(lambda p, t: queue.put_nowait((p, t)))
        try:
            while True:
                yield await queue.get()
        finally:
            remove()

    def on_video_track(self, callback: VideoTrackCallback) -> Callable[[], None]:
        """Call `callback(room, participant, publication)` for every video track published
        to the hub from now on (on the event loop; it must not block). The publication's
        `observers` see each encoded frame, `request_keyframe()` asks the publisher for a
        key frame, `ended` turns true when it is gone. Returns a function that unregisters.
        (Video of a p2p room's direct connection never reaches the hub.)"""
        self._video_watchers.append(callback)
        return lambda: (
            self._video_watchers.remove(callback) if callback in self._video_watchers else None
        )

    async def suppress(
        self,
        room_name: str,
        participant_id: str,
        *,
        track_id: str | None = None,
        kind: str | None = None,
        reason: str,
    ) -> list[dict[str, Any]]:
        """Stop forwarding one participant's tracks at once: `track_id` names one track,
        `kind` (audio|video) all of that kind, neither all of them. The rule also holds
        for tracks of theirs that match and are published later, until `release` or until
        the participant leaves the room. While held back a track reaches no subscriber and
        no audio tap (no captions), and the room (publisher included) gets `track updated`
        with `muted: true`. Rules with different reasons stack: a track flows again when
        the last one covering it is released. Returns the tracks that stopped now (wire
        form); telling anyone why is the caller's business."""
        rule = Suppression(participant_id, track_id, _check_kind(kind), _check_reason(reason))
        rm = self._room(room_name)
        if rule not in rm.suppressions:
            rm.suppressions.append(rule)
        stopped = [
            pub
            for pub in rm.publications.values()
            if rule.covers(pub) and pub.suppress(rule.reason)
        ]
        await self._announce(room_name, stopped)
        return [pub.wire() for pub in stopped]

    async def release(
        self,
        room_name: str,
        participant_id: str,
        *,
        track_id: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
    ) -> list[dict[str, Any]]:
        """Undo `suppress`: drops the rules for exactly this (track_id, kind) and `reason`
        (None: whatever the reason); the tracks no rule holds any more flow again from
        their next key frame (one is requested) and the room gets `track updated` with
        the publisher's own `muted`. Returns the tracks that resumed."""
        kind = _check_kind(kind)
        rm = self.rooms.get(room_name)
        if rm is None:
            return []
        dropped = [
            r
            for r in rm.suppressions
            if (r.participant, r.track_id, r.kind) == (participant_id, track_id, kind)
            and reason in (None, r.reason)
        ]
        rm.suppressions = [r for r in rm.suppressions if r not in dropped]
        resumed = []
        for pub in rm.publications.values():
            if pub.owner_id != participant_id or not pub.suppressed:
                continue
            still = {r.reason for r in rm.suppressions if r.covers(pub)}
            for gone in pub.suppressed - still:
                if pub.release(gone):
                    resumed.append(pub)
        await self._announce(room_name, resumed)
        return [pub.wire() for pub in resumed]

    def suppressions(self, room_name: str, participant_id: str) -> list[dict[str, Any]]:
        """The rules holding back this participant's tracks: {track_id, kind, reason}."""
        rm = self.rooms.get(room_name)
        return [r.wire() for r in rm.suppressions if r.participant == participant_id] if rm else []

    async def _announce(self, room_name: str, pubs: list[Publication]) -> None:
        for pub in pubs:
            owner = self._participant(room_name, pub.owner_id)
            if owner is not None:
                await self.outbox.publish(room_name, _track_msg(TrackState.UPDATED, owner, pub))

    async def set_mode(self, room_name: str, mode: str) -> None:
        """Admin: force `sfu` or `p2p` for a room, or `auto` to follow the defaults."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        rm = self._room(room_name)
        rm.override = None if mode == "auto" else mode
        await self._recompute(room_name)

    def mode(self, room_name: str) -> str:
        rm = self.rooms.get(room_name)
        return rm.mode if rm else "sfu"

    def counts(self) -> dict[str, int]:
        return {
            "sessions": len(self.sessions),
            "publications": sum(len(r.publications) for r in self.rooms.values()),
        }

    async def start(self) -> None:
        self._watchdog = asyncio.create_task(self._watch(), name="commhub-media-watchdog")

    async def close(self) -> None:
        if self._watchdog:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        await asyncio.gather(*(s.close() for s in list(self.sessions.values())))
        self.sessions.clear()
        self.rooms.clear()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.taps.close()

    # -- membership -----------------------------------------------------------------------

    def admit(
        self,
        room_name: str,
        p: Participant,
        capabilities: Mapping[str, bool],
        override: str | None = None,
    ) -> MediaMode:
        """Note a joiner's capabilities (and its token's mode for the room) before `joined`
        is sent; returns the mode the room will be in with it (`joined.room.mode`)."""
        self.capabilities[p.id] = dict(capabilities)
        if override is not None:
            if override not in MODES:
                raise ValueError(f"mode must be one of {', '.join(MODES)}")
            self._room(room_name).override = None if override == "auto" else override
        return MediaMode(self._want_mode(room_name)[0])

    async def joined(self, room_name: str, p: Participant) -> None:
        """After `joined`: the room's current tracks, then the joiner's one `media_mode`
        (and the others' when the joiner changed the mode)."""
        rm = self._room(room_name)
        for pub in rm.publications.values():
            owner = self._participant(room_name, pub.owner_id)
            if owner is not None:
                self.outbox.send(p.conn, _track_msg(TrackState.PUBLISHED, owner, pub))
        await self._recompute(room_name, force_notify=p.id)

    async def leave(self, room_name: str, p: Participant, reason: str = "left") -> None:
        self.capabilities.pop(p.id, None)
        self.pending_meta.pop(p.id, None)
        await self._end_session(room_name, p, reason, tell=False)
        rm = self.rooms.get(room_name)
        if rm is not None:
            rm.suppressions = [r for r in rm.suppressions if r.participant != p.id]
            room = self.members.get(room_name)
            if room is None or not room.participants:
                self.rooms.pop(room_name, None)
            else:
                await self._recompute(room_name)

    async def close_room(self, room_name: str, participants: list[Participant]) -> None:
        for p in participants:
            await self.leave(room_name, p, "room_closed")
        self.rooms.pop(room_name, None)

    # -- messages -------------------------------------------------------------------------

    async def handle(self, room_name: str, p: Participant, msg: Message) -> None:
        kind, ref = msg["type"], msg.get("id")
        if kind == "track":
            await self._track_meta(room_name, p, msg)
            return
        if kind in ("offer", "answer"):
            limit = self.settings.max_sdp_bytes
            if len(msg["sdp"].encode()) > limit:
                raise ProtocolError(ErrorCode.SDP_TOO_LARGE, f"the SDP exceeds {limit} bytes", ref)
        if "to" in msg:
            await self._relay(room_name, p, msg)
            return
        session = self.sessions.get(p.id)
        if kind == "offer":
            sending = self._check_offer(room_name, p, session, msg["sdp"], ref)
            fresh = session is None
            if session is None:
                session = self._new_session(room_name, p)
            self._reserved[p.id] = sending  # counted for the room while aiortc applies it
            try:
                await session.client_offer(msg["sdp"], ref, p.can("publish"))
            except Exception:
                # A refused first offer leaves no half-made session behind; a session
                # aiortc could not finish applying an offer to is over.
                if fresh:
                    await self._end_session(room_name, p, "refused", tell=False)
                elif session.broken:
                    await self._end_session(room_name, p, "failed", tell=True)
                raise
            finally:
                self._reserved.pop(p.id, None)
            self._check_unpublished(room_name, session)
        elif kind == "answer":
            if session is None:
                raise ProtocolError(ErrorCode.WRONG_STATE, "no offer from the hub to answer", ref)
            await session.client_answer(msg["sdp"], ref)
        elif kind == "ice":
            if session is None:
                raise ProtocolError(ErrorCode.WRONG_STATE, "ICE candidate before any offer", ref)
            await session.client_candidate(msg["candidate"], ref)

    def _check_offer(
        self, room_name: str, p: Participant, session: PeerSession | None, sdp: str, ref: str | None
    ) -> int:
        """Refuse, before aiortc sees it, an offer that is malformed in ways aiortc chokes
        on or that publishes more than the limits allow; returns its sending sections."""
        check_sdp_text(sdp, ref)
        offer = shape(sdp)
        sections = offer.sections
        media = [s for s in sections if s.kind in ("audio", "video")]
        if any(s.mid is None for s in media):
            raise ProtocolError(ErrorCode.INVALID_SDP, "every media section needs a=mid", ref)
        dup = offer.duplicate_mid()
        if dup is not None:
            raise ProtocolError(ErrorCode.INVALID_SDP, f"mid {dup!r} is used twice", ref)
        hub_mids = session.hub_mids() if session else set()
        own = [s for s in sections if s.mid not in hub_mids]
        s = self.settings
        if len(own) > s.max_tracks_per_participant + s.max_tracks_per_room:
            raise ProtocolError(
                ErrorCode.TOO_MANY_TRACKS,
                f"{len(own)} media sections; at most "
                f"{s.max_tracks_per_participant + s.max_tracks_per_room} besides the hub's",
                ref,
            )
        sending = [x for x in own if x.sending and x.kind in ("audio", "video")]
        if len(sending) > s.max_tracks_per_participant:
            raise ProtocolError(
                ErrorCode.TOO_MANY_TRACKS,
                f"{len(sending)} tracks; at most {s.max_tracks_per_participant} per participant",
                ref,
            )
        ids = [x.track_id for x in sending if x.track_id is not None]
        if not all(0 < len(i) <= TRACK_ID_MAX for i in ids):
            raise ProtocolError(
                ErrorCode.INVALID_SDP,
                f"an a=msid track id must be 1..{TRACK_ID_MAX} characters",
                ref,
            )
        if len(ids) != len(set(ids)):
            raise ProtocolError(ErrorCode.INVALID_SDP, "two sections send the same track", ref)
        others = self._room_tracks(room_name, exclude=p.id)
        if sending and others + len(sending) > s.max_tracks_per_room:
            raise ProtocolError(
                ErrorCode.TOO_MANY_TRACKS,
                f"the room has {others} tracks; at most {s.max_tracks_per_room}",
                ref,
            )
        if session is not None:
            session.check_mids(media, ref)
        return len(sending)

    def _room_tracks(self, room_name: str, exclude: str) -> int:
        """Tracks published in the room by others, counting offers being applied."""
        room = self.members.get(room_name)
        total = 0
        for pid in room.participants if room else ():
            if pid == exclude:
                continue
            if pid in self._reserved:
                total += self._reserved[pid]
            elif (session := self.sessions.get(pid)) is not None:
                total += len(session.publications)
        return total

    async def _relay(self, room_name: str, p: Participant, msg: Message) -> None:
        kind, ref, to = msg["type"], msg.get("id"), msg["to"]
        target = self._participant(room_name, to)
        if target is None or to == p.id:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PARTICIPANT, f"no participant {to!r} in this room", ref
            )
        if not _p2p_grants(p):
            raise ProtocolError(
                ErrorCode.FORBIDDEN, "direct connections need the publish and subscribe grants", ref
            )
        rm = self._room(room_name)
        if rm.mode != "p2p" or rm.peers is None or set(rm.peers) != {p.id, to}:
            raise ProtocolError(
                ErrorCode.WRONG_STATE, "direct connections need the room in p2p mode", ref
            )
        if kind in ("offer", "answer"):
            parse_sdp(msg["sdp"], ref)
            body: dict[str, Any] = {"sdp": msg["sdp"]}
        else:
            cand = msg["candidate"]
            if cand is not None and cand.get("candidate"):
                try:
                    candidate_from_sdp(cand["candidate"].removeprefix("candidate:"))
                except Exception:
                    raise ProtocolError(
                        ErrorCode.INVALID_CANDIDATE, "not an ICE candidate", ref
                    ) from None
            body = {"candidate": cand}
        self.outbox.send(target.conn, protocol.relayed(kind, p.id, body))

    async def _track_meta(self, room_name: str, p: Participant, msg: Message) -> None:
        meta: dict[str, Any] = {k: msg[k] for k in ("source", "muted") if k in msg}
        session = self.sessions.get(p.id)
        pub = next(
            (
                x
                for x in (session.publications.values() if session else [])
                if x.track_id == msg["track_id"]
            ),
            None,
        )
        if pub is None:
            # Kept for when the track arrives, a bounded few per participant (oldest go).
            mine = self.pending_meta.setdefault(p.id, {})
            mine.pop(msg["track_id"], None)
            mine[msg["track_id"]] = meta
            while len(mine) > self.settings.max_track_meta:
                del mine[next(iter(mine))]
            return
        pub.source = meta.get("source", pub.source)
        if "muted" in meta and meta["muted"] != pub.muted:
            pub.muted = meta["muted"]
            pub.last_frame = time.monotonic()
            if not pub.muted:
                pub.request_keyframe()
        await self.outbox.publish(room_name, _track_msg(TrackState.UPDATED, p, pub))

    # -- sessions and publications --------------------------------------------------------

    def _new_session(self, room_name: str, p: Participant) -> PeerSession:
        def on_track(session: PeerSession, transceiver: RTCRtpTransceiver, track_id: str) -> None:
            self._publish(room_name, session, transceiver, track_id)

        async def on_failed(session: PeerSession, reason: str) -> None:
            await self._end_session(room_name, session.participant, reason, tell=True)

        session = PeerSession(
            p,
            self.settings.ice_servers,
            self.policy,
            lambda m: self.outbox.send(p.conn, m),
            on_track,
            on_failed,
            self._slot_map,
        )
        self.sessions[p.id] = session
        rm = self._room(room_name)
        if rm.mode == "sfu" and p.can("subscribe"):
            for pub in rm.publications.values():
                if pub.owner_id != p.id:
                    session.add_slot(pub)
        return session

    def _publish(
        self, room_name: str, session: PeerSession, transceiver: RTCRtpTransceiver, track_id: str
    ) -> None:
        p = session.participant
        kind, mid = transceiver.kind, transceiver.mid or ""
        rm = self._room(room_name)
        pub = Publication(p.id, track_id, kind, transceiver.receiver, mid)
        pub.key = f"{p.id}/{track_id}/{next(self._serial)}"
        meta = self.pending_meta.get(p.id, {}).pop(track_id, {})
        pub.source = meta.get("source", pub.source)
        pub.muted = meta.get("muted", False)
        pub.suppressed = {r.reason for r in rm.suppressions if r.covers(pub)}
        decode = kind == "audio" and self.taps.active
        tee_receiver(
            transceiver.receiver, pub.on_frame, decode, self.settings.audio_jitter_prefetch,
            self.settings.audio_loss_patience,
        )  # fmt: skip
        session.publications[mid] = pub
        rm.publications[(p.id, track_id)] = pub
        if decode:
            self.taps.attach(pub.key, p, transceiver.receiver.track, pub.source)
        if kind == "video":
            for watch in list(self._video_watchers):
                try:
                    watch(room_name, p, pub)
                except Exception:
                    log.exception("video track consumer failed")
        self._spawn(self.outbox.publish(room_name, _track_msg(TrackState.PUBLISHED, p, pub)))
        if rm.mode == "sfu":
            self._subscribe_all(room_name, pub)

    def _subscribe_all(self, room_name: str, pub: Publication) -> None:
        for pid, s in self.sessions.items():
            other = s.participant
            if pid == pub.owner_id or s.closed or not other.can("subscribe"):
                continue
            if self._participant(room_name, pid) is None:
                continue
            s.add_slot(pub)
            self._spawn(s.maybe_renegotiate())

    def _check_unpublished(self, room_name: str, session: PeerSession) -> None:
        """Publications whose section the client's latest offer stopped sending end here."""
        desc = session.pc.remoteDescription
        if desc is None:
            return
        parsed = SessionDescription.parse(desc.sdp)
        live = {
            m.rtp.muxId
            for m in parsed.media
            if m.port != 0 and m.direction in ("sendonly", "sendrecv")
        }
        for mid, pub in list(session.publications.items()):
            if mid not in live:
                del session.publications[mid]
                self._spawn(self._unpublish(room_name, session.participant, pub))

    async def _unpublish(self, room_name: str, owner: Participant, pub: Publication) -> None:
        rm = self.rooms.get(room_name)
        if rm is not None and rm.publications.get((owner.id, pub.track_id)) is pub:
            del rm.publications[(owner.id, pub.track_id)]
        if pub.kind == "audio":
            await self.taps.detach(pub.key)
        for s in list(self.sessions.values()):
            s.drop_slot(pub)
            self._spawn(s.maybe_renegotiate())
        pub.close()
        if self._participant(room_name, owner.id) is not None or rm is not None:
            await self.outbox.publish(room_name, _track_msg(TrackState.UNPUBLISHED, owner, pub))

    async def _end_session(self, room_name: str, p: Participant, reason: str, tell: bool) -> None:
        session = self.sessions.get(p.id)
        if session is None or session.participant is not p:
            return
        del self.sessions[p.id]
        for pub in list(session.publications.values()):
            await self._unpublish(room_name, p, pub)
        session.publications.clear()
        await session.close()
        if tell:
            self.outbox.send(p.conn, protocol.media_closed(MediaClosedReason(reason)))
        log.info("media session of %s closed: %s", p.id, reason)

    def _slot_map(self, session: PeerSession) -> list[dict[str, Any]]:
        out = []
        for s in session.slots:
            pub = s.publication
            if pub is not None and s.transceiver.mid is not None:
                out.append(
                    {"mid": s.transceiver.mid, "participant": pub.owner_id, "track": pub.wire()}
                )
        return out

    # -- modes ----------------------------------------------------------------------------

    def _want_mode(self, room_name: str) -> tuple[str, tuple[str, str] | None]:
        rm = self._room(room_name)
        room = self.members.get(room_name)
        ids = sorted(room.participants) if room else []
        choice = rm.override or self.settings.room_mode
        if choice == "auto" and self.settings.imagery:
            # Video on a direct connection never reaches the hub, which must see it to
            # moderate it: only an operator's explicit p2p opts out.
            choice = "sfu"
        # A direct connection sends and receives media: both sides need both grants,
        # whatever the room's mode says.
        if (
            len(ids) == 2
            and choice != "sfu"
            and room
            and all(_p2p_grants(room.participants[i]) for i in ids)
        ):
            both = all(self.capabilities.get(i, {}).get("p2p") for i in ids)
            if choice == "p2p" or both:
                return "p2p", (ids[0], ids[1])
        return "sfu", None

    async def _recompute(self, room_name: str, force_notify: str | None = None) -> None:
        rm = self._room(room_name)
        mode, peers = self._want_mode(room_name)
        changed = (mode, peers) != (rm.mode, rm.peers)
        rm.mode, rm.peers = mode, peers
        room = self.members.get(room_name)
        if room is None:
            return
        if changed or force_notify:
            for p in room.participants.values():
                if not changed and p.id != force_notify:
                    continue
                if peers:
                    other = peers[1] if p.id == peers[0] else peers[0]
                    msg = protocol.media_mode(MediaMode.P2P, other, offerer=p.id == peers[0])
                else:
                    msg = protocol.media_mode(MediaMode(mode))
                self.outbox.send(p.conn, msg)
        if not changed:
            return
        for s in list(self.sessions.values()):
            if mode == "p2p":
                for pub in rm.publications.values():
                    s.drop_slot(pub)
            self._spawn(s.maybe_renegotiate())
        if mode == "sfu":
            for pub in list(rm.publications.values()):
                self._subscribe_all(room_name, pub)

    # -- faults ---------------------------------------------------------------------------

    async def _watch(self) -> None:
        """End sessions whose unmuted tracks stopped delivering (stalled)."""
        limit = self.settings.media_stall_timeout
        while True:
            await asyncio.sleep(min(1.0, limit / 4))
            await self._end_stalled(limit)  # own frame: no publication outlives a pass

    async def _end_stalled(self, limit: float) -> None:
        now = time.monotonic()
        for room_name, rm in list(self.rooms.items()):
            for pub in list(rm.publications.values()):
                if pub.muted or now - pub.last_frame < limit:
                    continue
                session = self.sessions.get(pub.owner_id)
                if session is not None:
                    log.warning("track %s of %s stalled", pub.track_id, pub.owner_id)
                    await self._end_session(room_name, session.participant, "stalled", tell=True)

    # -- helpers --------------------------------------------------------------------------

    def _room(self, name: str) -> RoomMedia:
        rm = self.rooms.get(name)
        if rm is None:
            rm = self.rooms[name] = RoomMedia(name)
        return rm

    def _participant(self, room_name: str, pid: str) -> Participant | None:
        room = self.members.get(room_name)
        return room.participants.get(pid) if room else None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("media task failed", exc_info=task.exception())


def _check_kind(kind: str | None) -> str | None:
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be audio, video or None, not {kind!r}")
    return kind


def _check_reason(reason: str) -> str:
    if not isinstance(reason, str) or not 0 < len(reason) <= 64:
        raise ValueError("reason must be a string of 1..64 characters")
    return reason


def _p2p_grants(p: Participant) -> bool:
    return p.can("publish") and p.can("subscribe")


def _track_msg(state: TrackState, owner: Participant, pub: Publication) -> Message:
    return protocol.track(state, owner.id, pub.wire())
