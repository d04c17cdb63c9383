"""RoomClient: join a room over /v1/signal, publish tracks to the hub, receive relayed ones.

One RTCPeerConnection with the hub carries what the client publishes (its offers) and what
the hub relays to it (the hub's offers, whose `tracks` map each mid to a publisher). When the
hub puts the room in p2p mode the client also opens a direct connection to the other party
and sends its tracks there; audio still goes to the hub (captions need it).

Negotiation follows the W3C "perfect negotiation" pattern: every change of local tracks
(publish before or after joining, unpublish, a mode change) renegotiates the connections it
concerns, and crossing offers (glare) settle by one side giving way. Towards the hub the
client is the polite side (the hub never rolls back). On the direct connection the hub's
`offerer` is the impolite side; its first offer opens a send-receive audio and video section
both ways, so later track changes are `replaceTrack` on those sections, with no new offer.

The client reconnects by itself (exponential backoff with jitter) after a dropped socket, a
hub restart or `server_shutdown {reconnect_after}`, joins the same room with the same token
(identity), languages and published tracks, and reports its state: connecting, connected,
reconnecting, refused (with the hub's reason) or closed. `state` is never "connected" while
the signalling socket is closed.

On a hub of several nodes (signalling/PROTOCOL.md, "Several nodes") a node may answer
`redirect {url}`: the client opens that node at once with the same token and room, staying
"connecting" or "reconnecting" meanwhile, at most MAX_REDIRECTS times in a row. `url` is the
entry URL it was given and keeps: every reconnection after a drop starts there again (which
routes it to the room's node of the moment); `node_url` is the node it is on.

Each socket is a SignalChannel (commhub/sdk/signal.py, the same client the test suite uses);
with `check_schemas` every message the hub sends is validated first, and one that breaks its
schema fails whatever `expect` waits (connect included) instead of being handled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import weakref
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp

from commhub.rtc.compat import local_descriptions as _local_descriptions
from commhub.rtc.compat import rollback_local_offer as _rollback
from commhub.rtc.ice import IcePolicy, policy_scope, rtc_configuration
from commhub.sdk.fanout import Fanout
from commhub.sdk.signal import (
    FINAL_ERRORS,
    MAX_REDIRECTS,
    Redirected,
    Refused,
    SchemaViolation,
    SignalChannel,
    SignalError,
    redirect_target,
)

log = logging.getLogger("commhub.sdk")

STATES = ("connecting", "connected", "reconnecting", "refused", "closed")
# The hub ended the session on purpose: coming back would fight it (replaced, removed) or
# fail (expired). `left` is our own leave.
FINAL_BYES = {"left", "replaced", "removed", "room_closed", "expired"}


@dataclass
class RemoteTrack:
    participant: str  # publisher's participant id
    meta: dict[str, Any]  # id, kind, source, muted
    track: MediaStreamTrack
    direct: bool = False  # arrived over the p2p connection


StateCallback = Callable[[str, str | None], None]


class RoomClient:
    def __init__(
        self,
        url: str,
        token: str,
        *,
        ice_hosts: tuple[str, ...] = (),
        p2p: bool = False,
        name: str | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.25, 8.0),
        heartbeat: float = 10.0,
        on_state: StateCallback | None = None,
        check_schemas: bool | None = None,
        room: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")  # the entry URL: kept, every reconnection starts there
        self.node_url = self.url  # the node of the current (or last tried) socket
        self.token = token
        self.room = room  # the room of an any-room token (`?room=`)
        self.policy = IcePolicy(hosts=ice_hosts)
        self.capabilities = {"p2p": p2p}
        self.name = name
        self.reconnect = reconnect
        self.backoff = backoff  # first delay, longest delay (seconds), before jitter
        self.heartbeat = heartbeat
        self.on_state = on_state
        self.check_schemas = check_schemas  # None: the SignalChannel default
        self.joined: dict[str, Any] | None = None
        self.mode = "sfu"
        self.peer_id: str | None = None
        self.pc: RTCPeerConnection | None = None
        self.direct: RTCPeerConnection | None = None
        # every peer connection this client made and that is still alive, for close()
        self._pcs: weakref.WeakSet[RTCPeerConnection] = weakref.WeakSet()
        self._closing: set[asyncio.Task[None]] = set()
        self.local: list[tuple[MediaStreamTrack, str]] = []  # published tracks and sources
        self._muted: dict[MediaStreamTrack, bool] = {}
        # A local track feeds the hub and, in p2p, the peer: each sender gets its own copy.
        self._fanout = Fanout()
        self._copies: dict[tuple[str, MediaStreamTrack], MediaStreamTrack] = {}
        self.remote: dict[str, RemoteTrack] = {}  # by mid (hub) or "p2p:<mid>"
        self.slots: dict[str, dict[str, Any]] = {}  # hub mid -> track_slot
        self.inbox: list[dict[str, Any]] = []
        self.errors: list[SignalError] = []
        self.on_track: Callable[[RemoteTrack], None] | None = None
        # connection state
        self._state = "closed"
        self.reason: str | None = None  # why the last state was entered (hub's words)
        self.state_log: list[tuple[float, str, str | None]] = []  # (monotonic, state, reason)
        self.reconnects = 0
        self.redirects = 0  # redirects followed, in all (one refused as too many is not)
        self.last_redirect: dict[str, Any] | None = None
        self._join_fields: dict[str, Any] = {}
        self._wants_media = False  # negotiate() was asked for: receive even with no tracks
        self._closed_at = -1e9  # when the hub last closed our media, and how often lately
        self._closed_streak = 0
        self._session: aiohttp.ClientSession | None = None
        self._chan: SignalChannel | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._closed_by_us = False
        self._bye: str | None = None  # the hub's bye reason on the current socket
        self._fatal: str | None = None  # a fatal error code on the current socket
        self._shutdown_after: float | None = None  # server_shutdown.reconnect_after
        self._waiters: list[tuple[str, dict[str, Any], asyncio.Future[dict[str, Any]]]] = []
        # hub connection negotiation
        self._neg = asyncio.Lock()
        self._want_offer = False
        self._awaiting_answer = False
        self.glare = 0  # hub offers ignored because ours crossed them (the hub withdraws)
        # direct connection negotiation
        self._direct_neg = asyncio.Lock()
        self._direct_offerer = False
        self._direct_want_offer = False
        self._direct_before: tuple[Any, Any] = (None, None)
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- state ----------------------------------------------------------------------------

    @property
    def _ws(self) -> aiohttp.ClientWebSocketResponse | None:
        return self._chan.ws if self._chan is not None else None

    @property
    def _reader(self) -> asyncio.Task[None] | None:
        return self._chan.reader if self._chan is not None else None

    @property
    def state(self) -> str:
        # the truth of the socket first: a close not yet handled is already not connected
        if self._state == "connected" and (self._ws is None or self._ws.closed):
            return "reconnecting" if self.reconnect else "closed"
        return self._state

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    def _set_state(self, state: str, reason: str | None = None) -> None:
        if state == self._state and reason == self.reason:
            return
        self._state, self.reason = state, reason
        self.state_log.append((time.monotonic(), state, reason))
        if self.on_state is not None:
            try:
                self.on_state(state, reason)
            except Exception:
                log.exception("on_state callback failed")

    # -- connection -----------------------------------------------------------------------

    async def connect(self, **join_fields: Any) -> dict[str, Any]:
        """Open the socket and join (following redirects); raises Refused when the hub says
        no (`retryable` when it says "later": shutting_down, cluster_unavailable), or a
        ConnectionError (unreachable, too many redirects in a row). From then on the client
        keeps itself in the room until close() (or a final refusal)."""
        self._join_fields = dict(join_fields)
        self._closed_by_us = False
        self._set_state("connecting")
        try:
            joined = await self._open()
        except BaseException as exc:
            await self._abandon()
            if self._session is not None:
                await self._session.close()
                self._session = None
            code = exc.code if isinstance(exc, Refused) else type(exc).__name__
            self._set_state("refused" if isinstance(exc, Refused) else "closed", code)
            raise
        self._supervisor = asyncio.create_task(self._supervise(), name="commhub-sdk-supervisor")
        self._supervisor.add_done_callback(self._supervisor_done)
        return joined

    def _supervisor_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("the connection supervisor failed", exc_info=task.exception())
            self._set_state("closed", "internal_error")  # say so rather than look alive

    def _join_message(self) -> dict[str, Any]:
        fields = {"capabilities": self.capabilities, **self._join_fields}
        if self.name:
            fields.setdefault("name", self.name)
        return {"type": "join", **fields}

    async def _open(self, via: str | None = None) -> dict[str, Any]:
        """Join through the entry URL (or `via`, a node a redirect named), following the
        redirects on the way at once. Raises Refused, or a connection error the caller may
        retry (too many redirects in a row is one)."""
        self.node_url = via or self.url
        in_row = 1 if via else 0  # a redirect that ended a joined socket counts
        while True:
            try:
                return await self._open_at(self.node_url)
            except Redirected as exc:
                await self._abandon()
                in_row += 1
                if in_row > MAX_REDIRECTS:  # a loop, or leases moving: back off, then entry
                    raise ConnectionError(f"{in_row} redirects in a row; backing off") from exc
                self._note_redirect(exc.url, exc.reason)
                self.node_url = exc.url

    def _note_redirect(self, url: str, reason: str) -> None:
        self.redirects += 1
        self.last_redirect = {"url": url, "reason": reason, "from": self.node_url}
        log.info("redirected from %s to %s (%s)", self.node_url, url, reason)

    def _redirect_of(self, chan: SignalChannel | None) -> Redirected | None:
        """The redirect that ended this socket, if it is one we may follow."""
        msg = chan.redirect if chan is not None else None
        if msg is None:
            return None
        url = redirect_target(msg)
        if url is None:
            log.warning("ignoring a redirect to %r", msg.get("url"))
            return None
        return Redirected(url, str(msg.get("reason")))

    async def _open_at(self, node: str) -> dict[str, Any]:
        """One socket: upgrade, join, then bring the media back. Raises Refused, Redirected,
        or a connection error the caller may retry."""
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._bye = self._fatal = None
        self._shutdown_after = None
        self._chan = chan = await SignalChannel.connect(
            node, self.token, session=self._session, heartbeat=self.heartbeat,
            check=self.check_schemas, inbox=self.inbox, backlog=256, room=self.room,
            on_message=self._on_message, on_violation=self._on_violation,
        )  # fmt: skip
        reader = chan.reader
        joined = self.expect("joined", timeout=30.0)
        await self.send(self._join_message())
        either: set[asyncio.Future[Any]] = {joined, reader}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if joined not in done:  # the socket closed before joined: say why
            joined.cancel()
            if self._fatal is not None:
                raise Refused(self._fatal, f"the hub refused the join ({self._fatal})")
            redirected = self._redirect_of(chan)
            if redirected is not None:
                raise redirected
            raise ConnectionError("the hub closed the connection before joined")
        self.joined = joined.result()
        self._set_state("connected")
        await self._restore_media()
        return self.joined

    async def _supervise(self) -> None:
        """Wait for the socket to end; come back unless the end was final."""
        while True:
            assert self._reader is not None
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._reader)
            if self._closed_by_us:
                return
            final = self._final_reason()
            redirected = self._redirect_of(self._chan) if final is None else None
            await self._teardown_media()
            if final is not None or not self.reconnect:
                await self._drop_socket()
                refused = final in FINAL_ERRORS
                self._set_state("refused" if refused else "closed", final or "disconnected")
                return
            if redirected is not None:  # drain, moved: go there now, no backoff
                self._note_redirect(redirected.url, redirected.reason)
                self._set_state("reconnecting", "redirect")
                if not await self._reconnect(via=redirected.url):
                    return
                continue
            self._set_state("reconnecting", "shutdown" if self._shutdown_after else "disconnected")
            if not await self._reconnect():
                return

    def _final_reason(self) -> str | None:
        if self._bye in FINAL_BYES:
            return self._bye
        if self._fatal in FINAL_ERRORS:
            return self._fatal
        return None

    def _delays(self) -> Iterator[float]:
        """Exponential backoff with jitter; after server_shutdown, not before it asked."""
        first, longest = self.backoff
        if self._shutdown_after is not None:
            yield self._shutdown_after * random.uniform(1.0, 1.5)  # spread the herd
        delay = first
        while True:
            yield random.uniform(delay / 2, delay)
            delay = min(delay * 2, longest)

    async def _reconnect(self, via: str | None = None) -> bool:
        """Join again: first at `via` (a redirect's node) at once if given, then through the
        entry URL with backoff."""
        started = time.monotonic()
        delays = self._delays()
        while True:
            if via is None:
                await asyncio.sleep(next(delays))
            if self._closed_by_us:
                return False
            try:
                await self._open(via)
            except Refused as exc:
                await self._abandon()
                if not exc.retryable:
                    self._set_state("refused", exc.code)
                    return False
                log.info("rejoin refused for now (%s); retrying", exc.code)
                self._still_reconnecting(exc.code)
            except (OSError, aiohttp.ClientError, TimeoutError) as exc:
                await self._abandon()
                log.debug("rejoin failed (%s); retrying", exc)
                self._still_reconnecting("disconnected")
            else:
                self.reconnects += 1
                log.info("rejoined after %.1f s", time.monotonic() - started)
                return True
            via = None

    def _still_reconnecting(self, reason: str) -> None:
        # an attempt that joined, then lost the socket while restoring media, said connected
        if self._state != "reconnecting":
            self._set_state("reconnecting", reason)

    async def _abandon(self) -> None:
        """A half-made attempt (it may have joined and started negotiating): drop it all."""
        await self._drop_socket()
        await self._teardown_media()

    async def _drop_socket(self) -> None:
        chan, self._chan = self._chan, None
        if chan is not None:
            await chan.close(quiet=True)

    @property
    def pid(self) -> str:
        assert self.joined is not None
        return str(self.joined["participant"]["id"])

    async def send(self, msg: dict[str, Any]) -> None:
        chan = self._chan
        if chan is None or chan.ws.closed:
            raise ConnectionError(f"not connected ({self.state}): {msg['type']} not sent")
        await chan.send(msg)

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

    def _drop_copies(self, where: str) -> None:
        # senders stop their tracks when a connection closes: fresh copies for a new one
        self._copies = {k: v for k, v in self._copies.items() if k[0] != where}

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

    async def leave(self) -> None:
        """Leave the room (the hub tells the others `left`), then close."""
        if self.connected:
            bye = self.expect("bye", timeout=5.0)
            try:
                await self.send({"type": "leave"})
                await bye
            except (ConnectionError, TimeoutError):
                bye.cancel()
        await self.close()

    async def close(self) -> None:
        self._closed_by_us = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        # Stop reading first: a hub offer handled mid-close would hit a closed peer.
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._teardown_media()
        self._pcs.clear()
        await self._fanout.close()
        if self._chan is not None:
            await self._chan.close(quiet=True)  # a violation was logged and given to waiters
        if self._session is not None:
            await self._session.close()
        self._set_state("closed", "closed")

    async def _teardown_media(self) -> None:
        """Close every peer connection (the socket is gone or going): media starts afresh."""
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for pc in list(self._pcs):
            self._close_pc_soon(pc)
        await asyncio.gather(*self._closing, return_exceptions=True)
        self.pc = self.direct = None
        self._drop_copies("hub")
        self._drop_copies("p2p")
        self.remote.clear()
        self.slots.clear()
        self.mode, self.peer_id = "sfu", None
        self._awaiting_answer = self._want_offer = self._direct_want_offer = False

    # -- publishing -----------------------------------------------------------------------

    def _live(self) -> list[tuple[MediaStreamTrack, str]]:
        return [(t, s) for t, s in self.local if t.readyState == "live"]

    async def publish(self, *tracks: MediaStreamTrack, source: str | None = None) -> None:
        """Send tracks to the hub (and to the peer in p2p mode). Before connect() they are
        kept and sent once joined; after a reconnect they are sent again."""
        for track in tracks:
            kind_source = source or ("microphone" if track.kind == "audio" else "camera")
            if all(t is not track for t, _ in self.local):
                self.local.append((track, kind_source))
        if self.connected:
            await self._negotiate_hub()
            await self._sync_direct()

    async def unpublish(self, track: MediaStreamTrack) -> None:
        """Stop sending a track (camera off): the connections concerned renegotiate."""
        self.local = [(t, s) for t, s in self.local if t is not track]
        self._muted.pop(track, None)
        if self.connected:
            await self._negotiate_hub()
            await self._sync_direct()

    async def set_muted(self, track: MediaStreamTrack, muted: bool) -> None:
        self._muted[track] = muted
        copy = self._copies.get(("hub", track))
        if copy is not None and self.connected:
            await self.send({"type": "track", "track_id": copy.id, "muted": muted})

    async def set_language(self, speak: str | None = None, read: str | None = None) -> None:
        """Change languages now; a rejoin after a reconnect keeps them."""
        change = {k: v for k, v in (("speak", speak), ("read", read)) if v is not None}
        self._join_fields.update(change)
        if change:
            await self.send({"type": "set_language", **change})

    async def chat(self, text: str) -> None:
        """Send a chat line; raises ConnectionError (nothing is silently lost) when the
        socket is down."""
        await self.send({"type": "chat", "text": text})

    async def negotiate(self) -> None:
        """Offer the hub our current tracks, or a receive-only section when there are none
        (to receive what others publish); kept across reconnects."""
        self._wants_media = True
        await self._negotiate_hub(force=True)

    async def _restore_media(self) -> None:
        """After (re)joining: the hub knows nothing of our media; offer it all again."""
        if self._live() or self._wants_media:
            await self._negotiate_hub(force=True)

    async def _republish(self) -> None:
        """After media_closed: offer again what is still live, at once the first time, then
        backing off while the hub keeps closing it (a microphone stuck for good)."""
        now = time.monotonic()
        self._closed_streak = self._closed_streak + 1 if now - self._closed_at < 60 else 0
        self._closed_at = now
        if self._closed_streak:
            await asyncio.sleep(min(30.0, 0.5 * 2**self._closed_streak))
        await self._restore_media()

    def _hub_wanted(self) -> list[tuple[MediaStreamTrack, str]]:
        # in p2p, video goes straight to the peer; audio always reaches the hub (captions)
        return [(t, s) for t, s in self._live() if t.kind == "audio" or self.mode != "p2p"]

    def _sync_hub_senders(self, pc: RTCPeerConnection) -> tuple[bool, list[dict[str, Any]]]:
        """Make pc's sending sections match the wanted tracks; returns whether anything
        changed, and the `track` messages for the sections added."""
        wanted = self._hub_wanted()
        sources = {c: t for (where, t), c in self._copies.items() if where == "hub"}
        active = {
            sources[tr.sender.track]: tr
            for tr in pc.getTransceivers()
            if tr.sender.track in sources and tr.direction == "sendonly"
        }
        metas: list[dict[str, Any]] = []
        changed = False
        for source, tr in active.items():
            if all(source is not t for t, _ in wanted):
                copy = tr.sender.track
                tr.sender.replaceTrack(None)
                tr.direction = "inactive"  # the hub ends that publication
                if copy is not None:
                    copy.stop()
                self._copies.pop(("hub", source), None)
                changed = True
        for track, source_name in wanted:
            if track in active:
                continue
            copy = self._copy("hub", track)
            if all(tr.sender.track is not copy for tr in pc.getTransceivers()):
                pc.addTransceiver(copy, direction="sendonly")
            meta: dict[str, Any] = {"type": "track", "track_id": copy.id, "source": source_name}
            if self._muted.get(track):
                meta["muted"] = True
            metas.append(meta)
            changed = True
        return changed, metas

    async def _negotiate_hub(self, force: bool = False) -> None:
        """Offer the hub what changed (perfect negotiation, polite side)."""
        if not self.connected:
            return  # done on (re)join
        if self.pc is None:
            self.pc = RTCPeerConnection(
                rtc_configuration(self.joined["ice_servers"] if self.joined else [])
            )
            self._pcs.add(self.pc)
            self.pc.on("track", lambda track: self._on_hub_track(track))
            force = True
        pc = self.pc
        async with self._neg:
            if pc.signalingState != "stable" or self._awaiting_answer:
                self._want_offer = True
                return
            changed, metas = self._sync_hub_senders(pc)
            if not changed and not force:
                return
            if not pc.getTransceivers():
                pc.addTransceiver("audio", direction="recvonly")
            for meta in metas:  # the hub learns each track's source before its section
                await self.send(meta)
            with policy_scope(self.policy):
                await pc.setLocalDescription(await pc.createOffer())
            self._awaiting_answer = True
            await self.send({"type": "offer", "id": "sdk-offer", "sdp": pc.localDescription.sdp})

    # -- inbound --------------------------------------------------------------------------

    async def _on_message(self, msg: dict[str, Any]) -> None:
        """Every message of the current socket, in order (the channel has put it in inbox)."""
        try:
            await self._handle(msg)
        except Exception:
            if self._ws is not None and not self._ws.closed:
                log.exception("handling %s failed", msg.get("type"))
        for kind, match, fut in list(self._waiters):
            if (
                msg["type"] == kind
                and all(msg.get(k) == v for k, v in match.items())
                and not fut.done()
            ):
                fut.set_result(msg)

    def _on_violation(self, violation: SchemaViolation) -> None:
        """With schema checking on, the hub sent an invalid message (not handled): whoever
        waits for a message learns it now rather than at a timeout."""
        for _, _, fut in list(self._waiters):
            if not fut.done():
                fut.set_exception(violation)

    async def _handle(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if kind == "error":
            err = SignalError(msg)
            self.errors.append(err)
            if msg.get("fatal"):
                self._fatal = err.code
        elif kind == "bye":
            self._bye = msg["reason"]
        elif kind == "server_shutdown":
            self._shutdown_after = float(msg["reconnect_after"])
        elif kind == "media_closed" and self.pc is not None:
            # the hub ended our peer connection (ICE failure, stall): start afresh
            pc, self.pc = self.pc, None
            self._awaiting_answer = self._want_offer = False
            self._drop_copies("hub")
            for key in [k for k in self.remote if not k.startswith("p2p:")]:
                del self.remote[key]
            await self._close_pc(pc)
            self._spawn(self._republish())
        elif kind == "media_mode":
            await self._on_mode(msg)
        elif kind in ("offer", "answer", "ice") and "from" in msg:
            await self._on_direct(msg)
        elif kind == "offer" and self.pc is not None:
            async with self._neg:  # never while our own offer is being made
                if self.pc.signalingState == "have-local-offer":
                    # Glare: the hub's offer crossed ours. The hub is the polite side: it
                    # withdraws that offer, answers ours, then offers again. Ignore it.
                    self.glare += 1
                    return
                self.slots.update({s["mid"]: s for s in msg["tracks"]})
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                with policy_scope(self.policy):
                    await self.pc.setLocalDescription(await self.pc.createAnswer())
                await self.send({"type": "answer", "sdp": self.pc.localDescription.sdp})
            self._refresh_slots(msg["tracks"])
            self._maybe_offer_again()
        elif kind == "answer" and self.pc is not None:
            self.slots.update({s["mid"]: s for s in msg["tracks"]})
            async with self._neg:
                if not self._awaiting_answer or self.pc.signalingState != "have-local-offer":
                    return  # the answer to an offer of a connection since closed
                await self.pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
                self._awaiting_answer = False
            self._maybe_offer_again()
        elif kind == "track":
            for r in self.remote.values():  # a track is named by its owner and its id
                if r.participant == msg["participant"] and r.meta.get("id") == msg["track"]["id"]:
                    r.meta = msg["track"]

    def _maybe_offer_again(self) -> None:
        if self._want_offer:
            self._want_offer = False
            self._spawn(self._negotiate_hub(force=True))

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
        if self.pc is None:
            return
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
        old_peer = self.peer_id
        self.mode, self.peer_id = msg["mode"], msg.get("peer")
        if self.direct is not None and (self.mode != "p2p" or self.peer_id != old_peer):
            await self._close_direct()
        if self.mode == "p2p":
            self._direct_offerer = bool(msg.get("offerer"))
            if self._direct_offerer and self.direct is None:
                self._spawn(self._direct_offer())
        if self.pc is not None:
            # p2p: video leaves the hub connection; sfu: it comes back (renegotiates when
            # something changed)
            self._spawn(self._negotiate_hub())

    async def _close_direct(self) -> None:
        pc, self.direct = self.direct, None
        self._direct_want_offer = False
        for key in [k for k in self.remote if k.startswith("p2p:")]:
            del self.remote[key]
        if pc is not None:
            await self._close_pc(pc)

    def _new_direct(self) -> RTCPeerConnection:
        self._drop_copies("p2p")
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

    def _local_of(self, kind: str) -> MediaStreamTrack | None:
        return next((t for t, _ in self._live() if t.kind == kind), None)

    async def _direct_offer(self) -> None:
        """The offerer opens the direct connection: a send-receive section per kind, with our
        track where we have one, so either side can start sending later without an offer."""
        if self.direct is not None:
            await self._close_direct()
        pc = self._new_direct()
        for kind in ("audio", "video"):
            mine = self._local_of(kind)
            pc.addTransceiver(self._copy("p2p", mine) if mine else kind, direction="sendrecv")
        await self._direct_send_offer(pc)

    async def _direct_send_offer(self, pc: RTCPeerConnection) -> None:
        async with self._direct_neg:
            if pc is not self.direct:
                return
            if pc.signalingState != "stable":
                self._direct_want_offer = True
                return
            self._direct_before = _local_descriptions(pc)
            with policy_scope(self.policy):
                await pc.setLocalDescription(await pc.createOffer())
            await self.send({"type": "offer", "to": self.peer_id, "sdp": pc.localDescription.sdp})

    async def _sync_direct(self, offer: bool = False) -> None:
        """Put our current tracks on the direct connection: replaceTrack on a section that
        already sends, or a new offer when a kind has no sending section yet."""
        pc = self.direct
        if pc is None or self.mode != "p2p":
            return
        sources = {c: t for (where, t), c in self._copies.items() if where == "p2p"}
        for kind in ("audio", "video"):
            mine = self._local_of(kind)
            sections = [t for t in pc.getTransceivers() if t.kind == kind]
            tr = next((t for t in sections if t.sender.track is not None), None) or next(
                iter(sections), None
            )
            current = sources.get(tr.sender.track) if tr is not None else None
            if tr is None:
                if mine is not None:
                    pc.addTransceiver(self._copy("p2p", mine), direction="sendrecv")
                    offer = True
                continue
            if current is mine and (mine is None or tr.sender.track is not None):
                continue
            old = tr.sender.track
            tr.sender.replaceTrack(self._copy("p2p", mine) if mine is not None else None)
            if old is not None:
                old.stop()
                if current is not None:
                    self._copies.pop(("p2p", current), None)
            if mine is not None and tr.direction not in ("sendrecv", "sendonly"):
                tr.direction = "sendrecv"
                offer = True
        if offer:
            await self._direct_send_offer(pc)

    async def _on_direct(self, msg: dict[str, Any]) -> None:
        kind = msg["type"]
        if msg["from"] != self.peer_id or self.mode != "p2p":
            return  # a late message from a peer of an earlier pairing
        if kind == "offer":
            pc = self.direct if self.direct is not None else self._new_direct()
            async with self._direct_neg:
                if pc.signalingState == "have-local-offer":
                    if self._direct_offerer:
                        return  # impolite: ours stands, the peer gives way
                    _rollback(pc, self._direct_before)  # polite: answer, offer again later
                    self._direct_want_offer = True
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "offer"))
                used = {s.track for s in pc.getSenders() if s.track is not None}
                for t in pc.getTransceivers():
                    if t.kind not in ("audio", "video"):
                        continue
                    mine = self._local_of(t.kind)
                    if t.sender.track is None and mine is not None:
                        copy = self._copy("p2p", mine)
                        if copy not in used:
                            used.add(copy)
                            t.sender.replaceTrack(copy)
                    t.direction = "sendrecv"  # so we can send later without an offer
                with policy_scope(self.policy):
                    await pc.setLocalDescription(await pc.createAnswer())
                await self.send(
                    {"type": "answer", "to": msg["from"], "sdp": pc.localDescription.sdp}
                )
            await self._direct_offer_again(pc)
        elif kind == "answer" and self.direct is not None:
            pc = self.direct
            async with self._direct_neg:
                if pc.signalingState != "have-local-offer":
                    return  # an answer to an offer we gave up
                await pc.setRemoteDescription(RTCSessionDescription(msg["sdp"], "answer"))
            await self._direct_offer_again(pc)
            await self._sync_direct()  # tracks published while the offer was out
        elif kind == "ice" and self.direct is not None and msg["candidate"]:
            c = msg["candidate"]
            if not c.get("candidate"):
                return
            ice = candidate_from_sdp(c["candidate"].removeprefix("candidate:"))
            ice.sdpMid, ice.sdpMLineIndex = c.get("sdpMid"), c.get("sdpMLineIndex")
            await self.direct.addIceCandidate(ice)

    async def _direct_offer_again(self, pc: RTCPeerConnection) -> None:
        if self._direct_want_offer and pc is self.direct:
            self._direct_want_offer = False
            # sections our given-up offer added were dropped with it: sync adds them again
            self._spawn(self._sync_direct(offer=True))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if isinstance(exc, ConnectionError):
            log.debug("negotiation stopped: %s", exc)  # the socket went; a rejoin redoes it
        elif exc is not None:
            log.error("negotiation failed", exc_info=exc)
