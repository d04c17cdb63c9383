"""RoomClient: join a room over /v1/signal, publish tracks to the hub, receive relayed ones.

One RTCPeerConnection with the hub carries what the client publishes (its offers) and what
the hub relays to it (the hub's offers, whose `tracks` map each mid to a publisher). When the
hub puts the room in p2p mode the client also opens a direct connection to the other party
and sends its tracks there; audio still goes to the hub (captions need it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import SessionDescription, candidate_from_sdp

from commhub.media.ice import IcePolicy, policy_scope, rtc_configuration
from commhub.sdk.fanout import Fanout

log = logging.getLogger("commhub.sdk")


class SignalError(Exception):
    def __init__(self, msg: dict[str, Any]) -> None:
        super().__init__(f"{msg['code']}: {msg['message']}")
        self.code: str = msg["code"]
        self.ref: str | None = msg.get("ref")


@dataclass
class RemoteTrack:
    participant: str  # publisher's participant id
    meta: dict[str, Any]  # id, kind, source, muted
    track: MediaStreamTrack
    direct: bool = False  # arrived over the p2p connection


class RoomClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        ice_hosts: tuple[str, ...] = (),
        p2p: bool = False,
        name: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.policy = IcePolicy(hosts=ice_hosts)
        self.capabilities = {"p2p": p2p}
        self.name = name
        self.joined: dict[str, Any] | None = None
        self.mode = "sfu"
        self.peer_id: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.direct: RTCPeerConnection | None = None
        # every peer connection this client made and that is still alive, for close()
        self._pcs: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()
        self.local: list[tuple[MediaStreamTrack, str]] = []
        # A local track feeds the hub and, in p2p, the peer: each sender gets its own copy.
        self._fanout = Fanout()
        self._copies: dict[tuple[str, MediaStreamTrack], MediaStreamTrack] = {}
        self.remote: dict[str, RemoteTrack] = {}  # by mid (hub) or "p2p:<mid>"
        self.slots: dict[str, dict[str, Any]] = {}  # hub mid -> track_slot
        self.inbox: list[dict[str, Any]] = []
        self.errors: list[SignalError] = []
        self.on_track: Callable[[RemoteTrack], None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiters: list[tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        self._neg = asyncio.Lock()
        self._want_offer = False
        self._awaiting_answer = False
        self._before_offer: tuple[Any, Any] = (None, None)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- connection -----------------------------------------------------------------------

    async def connect(self, **join_fields: Any) -> dict[str, Any]:
        self._session = aiohttp.ClientSession()
        self._ws = await self._session.ws_connect(f"{self.url}/v1/signal?access_token={self.token}")
        self._reader = asyncio.create_task(self._read(), name="commhub-sdk-reader")
        fields = {"capabilities": self.capabilities, **join_fields}
        if self.name:
            fields.setdefault("name", self.name)
        wait = self.expect("joined")
        await self.send({"type": "join", **fields})
        self.joined = await wait
        return self.joined

    @property
    def pid(self) -> str:
        assert self.joined is not None
        return str(self.joined["participant"]["id"])

    async def send(self, msg: dict[str, Any]) -> None:
        assert self._ws is not None
        await self._ws.send_str(json.dumps(msg))

    def expect(
        self, kind: str, timeout: float = 10.0, **match: Any
    ) -> asyncio.Future[dict[str, Any]]:
        """A future for the next message of `kind` (matching fields) from now on."""
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append((kind, match, fut))

        async def bounded() -> dict[str, Any]:
            try:
                async with asyncio.timeout(timeout):
                    return await fut
            finally:
                self._waiters[:] = [w for w in self._waiters if w[2] is not fut]

        return asyncio.ensure_future(bounded())

    def _copy(self, where: str, track: MediaStreamTrack) -> MediaStreamTrack:
        key = (where, track)
        if key not in self._copies:
            self._copies[key] = self._fanout.copy(track)
        return self._copies[key]

    def _close_pc_soon(self, pc: RTCPeerConnection) -> asyncio.Task[None]:
        # Its own task: a cancelled caller must not cancel aiortc's close half-way (that
        # leaves its close future unresolved and every later close() waiting forever).
        task = asyncio.ensure_future(pc.close())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)
        return task

    async def _close_pc(self, pc: RTCPeerConnection) -> None:
        await asyncio.shield(self._close_pc_soon(pc))

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox if m["type"] == kind]

    async def close(self) -> None:
        # Stop reading first: a hub offer handled mid-close would hit a closed peer.
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pc in list(self._pcs):
            self._close_pc_soon(pc)
        await asyncio.gather(*self._closing, return_exceptions=True)
        self._pcs.clear()
        self.pc = self.direct = None
        await self._fanout.close()
        if self._ws is not None:
            await self._ws.close()
        if self._session is not None:
            await self._session.close()

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, *tracks: MediaStreamTrack, source: str | None = None) -> None:
        """Send tracks to the hub (and to the peer in p2p mode) in one offer."""
        for track in tracks:
            kind_source = source or ("microphone" if track.kind == "audio" else "camera")
            self.local.append((track, kind_source))
            hub_id = self._copy("hub", track).id  # the id the hub sees in our SDP's msid
            await self.send({"type": "track", "track_id": hub_id, "source": kind_source})
        await self.negotiate()

    async def set_muted(self, track: MediaStreamTrack, muted: bool) -> None:
        await self.send({"type": "track", "track_id": self._copy("hub", track).id, "muted": muted})

    async def negotiate(self) -> None:
        """Offer the hub our current tracks (or a receive-only audio section)."""
        if self.pc is None:
            self.pc = RTCPeerConnection(
                rtc_configuration(self.joined["ice_servers"] if self.joined else [])
            )
            self._pcs.add(self.pc)
            self.pc.on("track", lambda track: self._on_hub_track(track))
        pc = self.pc
        async with self._neg:
            if pc.signalingState != "stable" or self._awaiting_answer:
                self._want_offer = True
                return
            senders = {s.track for s in pc.getSenders() if s.track is not None}
            for track, _ in self.local:
                if self._copies.get(("hub", track)) in senders:
                    continue
                if self.mode == "p2p" and track.kind == "video":
                    continue  # video goes straight to the peer
                pc.addTransceiver(self._copy("hub", track), direction="sendonly")
            if not pc.getTransceivers():
                pc.addTransceiver("audio", direction="recvonly")
            # what a rollback must restore (aiortc keeps an answered offer "pending")
            self._before_offer = (
                pc._RTCPeerConnection__pendingLocalDescription,  # type: ignore[attr-defined]
                pc._RTCPeerConnection__currentLocalDescription,  # type: ignore[attr-defined]
            )
            with policy_scope(self.policy):
                await pc.setLocalDescription(await pc.createOffer())
            self._awaiting_answer = True
            await self.send({"type": "offer", "id": "sdk-offer", "sdp": pc.localDescription.sdp})

    # -- inbound --------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self._ws is not None
        async for raw in self._ws:
            if raw.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(raw.data)
            self.inbox.append(msg)
            try:
                await self._handle(msg)
            except Exception:
                log.exception("handling %s failed", msg.get("type"))
            for kind, match, fut in list(self._waiters):
                if (
                    msg["type"] == kind
                    and all(msg.get(k) == v for k, v in match.items())
                    and not fut.done()
                ):
                    fut.set_result(msg)

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "error":
            err = SignalError(msg)
            self.errors.append(err)
            if err.ref == "sdk-offer" and err.code == "wrong_state":
                # the hub's offer crossed ours (usually already rolled back, see below)
                async with self._neg:
                    if self._awaiting_answer:
                        self._awaiting_answer = False
                        self._want_offer = True
                        _rollback(self.pc, self._before_offer)
        elif kind == "media_closed" and self.pc is not None:
            # the hub ended our peer connection (ICE failure, stall): start afresh on the
            # next negotiate()
            pc, self.pc = self.pc, None
            self._awaiting_answer = False
            self._copies = {k: v for k, v in self._copies.items() if k[0] != "hub"}
            for key in [k for k in self.remote if not k.startswith("p2p:")]:
                del self.remote[key]
            await self._close_pc(pc)
        elif kind == "media_mode":
            await self._on_mode(msg)
        elif kind in ("offer", "answer", "ice") and "from" in msg:
            await self._on_direct(msg)
        elif kind == "offer" and self.pc is not None:
            self.slots.update({s["mid"]: s for s in msg["tracks"]})
            async with self._neg:  # never while our own offer is being made
                if self.pc.signalingState == "have-local-offer":
                    # Glare: the hub refuses our offer while its own is outstanding. Be
                    # the polite side: drop ours, answer, offer again afterwards.
                    self._awaiting_answer = False
                    self._want_offer = True
                    _rollback(self.pc, self._before_offer)
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                with policy_scope(self.policy):
                    await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
            self._refresh_slots(msg["tracks"])
            await self._maybe_offer_again()
        elif kind == "answer" and self.pc is not None:
            self.slots.update({s["mid"]: s for s in msg["tracks"]})
            async with self._neg:
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                self._awaiting_answer = False
            await self._maybe_offer_again()
        elif kind == "track":
            for r in self.remote.values():
                if r.meta.get("id") == msg["track"]["id"]:
                    r.meta = msg["track"]

    async def _maybe_offer_again(self) -> None:
        if self._want_offer:
            self._want_offer = False
            self._spawn(self.negotiate())

    def _refresh_slots(self, tracks: list[dict[str, Any]]) -> None:
        live = {s["mid"] for s in tracks}
        for mid in [m for m in self.remote if not m.startswith("p2p:") and m not in live]:
            del self.remote[mid]
        for s in tracks:
            r = self.remote.get(s["mid"])
            if r is not None:
                r.participant, r.meta = s["participant"], s["track"]
            elif self.pc is not None:
                t = next((t for t in self.pc.getTransceivers() if t.mid == s["mid"]), None)
                if t is not None and t.receiver.track is not None:
                    self._add_remote(s["mid"], s["participant"], s["track"], t.receiver.track)

    def _on_hub_track(self, track: MediaStreamTrack) -> None:
        assert self.pc is not None
        t = next((t for t in self.pc.getTransceivers() if t.receiver.track is track), None)
        slot = self.slots.get(t.mid) if t is not None and t.mid else None
        if t is not None and t.mid and slot:
            self._add_remote(t.mid, slot["participant"], slot["track"], track)

    def _add_remote(
        self,
        key: str,
        participant: str,
        meta: dict[str, Any],
        track: MediaStreamTrack,
        direct: bool = False,
    ) -> None:
        r = RemoteTrack(participant, dict(meta), track, direct)
        self.remote[key] = r
        if self.on_track is not None:
            self.on_track(r)

    # -- p2p ------------------------------------------------------------------------------

    async def _on_mode(self, msg: dict[str, Any]) -> None:
        old = self.mode
        self.mode, self.peer_id = msg["mode"], msg.get("peer")
        if self.mode == "sfu" and self.direct is not None:
            await self._close_pc(self.direct)
            self.direct = None
            for key in [k for k in self.remote if k.startswith("p2p:")]:
                del self.remote[key]
        if self.mode == "sfu" and old == "p2p" and self.pc is not None:
            self._spawn(self.negotiate())  # video now goes through the hub
        if self.mode == "p2p" and msg.get("offerer"):
            self._spawn(self._direct_offer())

    def _new_direct(self) -> RTCPeerConnection:
        # senders stop their tracks when a connection closes: fresh copies for a new one
        self._copies = {k: v for k, v in self._copies.items() if k[0] != "p2p"}
        pc = RTCPeerConnection(rtc_configuration(self.joined["ice_servers"] if self.joined else []))
        self._pcs.add(pc)
        peer = self.peer_id

        @pc.on("track")
        def _track(track: MediaStreamTrack) -> None:
            t = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
            meta = {
                "id": track.id,
                "kind": track.kind,
                "source": "microphone" if track.kind == "audio" else "camera",
                "muted": False,
            }
            self._add_remote(f"p2p:{t.mid if t else track.id}", peer or "", meta, track, True)

        self.direct = pc
        return pc

    async def _direct_offer(self) -> None:
        if self.direct is not None:
            await self._close_pc(self.direct)
        pc = self._new_direct()
        for kind in ("audio", "video"):
            mine = next((t for t, _ in self.local if t.kind == kind), None)
            # a section per kind either way, so the answerer can send what we lack
            sender = self._copy("p2p", mine) if mine else kind
            pc.addTransceiver(sender, direction="sendrecv" if mine else "recvonly")
        with policy_scope(self.policy):
            await pc.setLocalDescription(await pc.createOffer())
        await self.send({"type": "offer", "to": self.peer_id, "sdp": pc.localDescription.sdp})

    async def _on_direct(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "offer":
            pc = self._new_direct() if self.direct is None else self.direct
            await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
            used = {s.track for s in pc.getSenders()}
            for t in pc.getTransceivers():
                mine = next((x for x, _ in self.local if x.kind == t.kind and x not in used), None)
                if mine is not None:
                    used.add(mine)
                    t.sender.replaceTrack(self._copy("p2p", mine))
                    t.direction = "sendrecv"
            with policy_scope(self.policy):
                await pc.setLocalDescription(await pc.createAnswer())
            await self.send({"type": "answer", "to": msg["from"], "sdp": pc.localDescription.sdp})
        elif kind == "answer" and self.direct is not None:
            await self.direct.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
        elif kind == "ice" and self.direct is not None and msg["candidate"]:
            c = msg["candidate"]
            ice = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
            ice.sdpMid, ice.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
            await self.direct.addIceCandidate(ice)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _rollback(pc: RTCPeerConnection | None, before: tuple[Any, Any]) -> None:
    """Undo our refused offer: aiortc has no rollback, so restore its pre-offer state."""
    if pc is None or pc.signalingState != "have-local-offer":
        return
    remote = pc.remoteDescription
    negotiated = (
        {m.rtp.muxId for m in SessionDescription.parse(remote.sdp).media} if remote else set()
    )
    transceivers = pc._RTCPeerConnection__transceivers  # type: ignore[attr-defined]
    for t in list(transceivers):
        # Transceivers only our refused offer carried would be matched to the hub's new
        # sections (same kind, no mid): drop them; negotiate() adds them again later.
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
