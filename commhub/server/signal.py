"""The signalling endpoint: GET /v1/signal?access_token=... upgraded to a WebSocket."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiohttp import WSMsgType, web

from commhub import protocol
from commhub.auth import ANY_ROOM, DESK_ROOM_PREFIX, AuthError, Claims, valid_room_name, verify
from commhub.cluster import HERE, Route, Unroutable
from commhub.desks.service import Desks
from commhub.desks.state import Link
from commhub.hub import Hub
from commhub.media import Media
from commhub.moderation.actions import Actions
from commhub.protocol import CloseReason, ErrorCode, Message, ProtocolError
from commhub.rooms import Participant, Room, RoomFull
from commhub.server.connection import Connection
from commhub.server.keys import ACTIONS, ADMISSION, DESKS, HUB, MEDIA
from commhub.server.limits import RateLimiter

log = logging.getLogger("commhub.signal")

# aiohttp itself closes with 1009 beyond this multiple of the configured limit;
# below it the hub reads the message and answers message_too_large.
_HARD_LIMIT_FACTOR = 4


def json_error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.query.get("access_token")


async def signal(request: web.Request) -> web.StreamResponse:
    answer = await _signal(request)
    if isinstance(answer, web.Response):  # a refusal: a page served by another node of the
        answer.headers["Access-Control-Allow-Origin"] = "*"  # cluster may read why (no cookies)
    return answer


async def _signal(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    if hub.closing:
        return json_error(503, "shutting_down", "the hub is shutting down")
    try:
        claims = verify(
            hub.secret,
            bearer(request),
            issuer=hub.settings.issuer,
            leeway=hub.settings.token_leeway,
        )
    except AuthError as exc:
        hub.metrics.errors.labels(exc.code).inc()
        return json_error(401, exc.code, exc.message)
    room = request.query.get("room") or claims.room
    if room == ANY_ROOM:
        return json_error(400, "room_required", "an any-room token needs ?room=NAME")
    if not valid_room_name(room):  # the rule tokens follow holds for ?room= too
        return json_error(
            400, "room_invalid", "a room name is 1..128 letters, digits, '.', '_' or '-'"
        )
    if not claims.admits(room):
        hub.metrics.errors.labels("token_wrong_room").inc()
        return json_error(
            401, "token_wrong_room", f"the access token is not valid for room {room!r}"
        )

    ws = web.WebSocketResponse(
        heartbeat=hub.settings.heartbeat,
        max_msg_size=hub.settings.max_message_bytes * _HARD_LIMIT_FACTOR,
        timeout=2.0,
        compress=False,  # frames are written pre-built (server/connection.py)
    )
    if not ws.can_prepare(request).ok:
        # A browser cannot read why an upgrade was refused; it asks again without upgrading
        # and reads the refusal above, or this answer when the token would have been taken.
        route = await _route(hub, room)
        if isinstance(route, web.Response):
            return route
        return json_error(426, "upgrade_required", "the token is valid; upgrade to a WebSocket")
    admission, ip = request.app[ADMISSION], request.remote or ""
    refusal = admission.admit(ip, room, claims.identity)
    if refusal is not None:
        hub.metrics.errors.labels(refusal[0]).inc()
        return json_error(429, *refusal)
    shared = None  # the cluster's count of this address's sockets, once it stays here
    try:
        route = await _route(hub, room)
        if isinstance(route, web.Response):
            return route
        if route.local and admission.shared is not None:
            refusal = await admission.shared.admit(ip)
            if refusal is not None:
                hub.metrics.errors.labels(refusal[0]).inc()
                return json_error(429, *refusal)
            shared = admission.shared
        await ws.prepare(request)
        transport = request.transport
        if not isinstance(transport, asyncio.Transport):
            return ws  # the peer went away during the handshake
        if not route.local:  # the room runs on another node: the client goes there
            conn = Connection(ws, transport, hub.settings.send_buffer, hub.outgoing)
            hub.send(conn, protocol.redirect(route.url, "owner"))
            await conn.end(CloseReason.REDIRECT, "the room runs on another node")
            conn.stop()
            return ws
        session = Session(
            hub,
            request.app[MEDIA],
            ws,
            transport,
            claims,
            room,
            request.app.get(ACTIONS),
            request.app.get(DESKS),
        )
        hub.metrics.connections.inc()
        try:
            await session.run()
        finally:
            hub.metrics.connections.dec()
    finally:
        admission.release(ip, room, claims.identity)
        if shared is not None:
            shared.release(ip)
    return ws


async def _route(hub: Hub, room: str) -> Route | web.Response:
    """Where the room runs (always here on one node), or the refusal when nobody can say."""
    if hub.cluster is None:
        return HERE
    try:
        return await hub.cluster.route(room)
    except Unroutable as exc:
        hub.metrics.errors.labels("cluster_unavailable").inc()
        return json_error(503, "cluster_unavailable", f"{exc}; try again shortly")


class Session:
    """One connection's inbound side and its participant."""

    def __init__(
        self,
        hub: Hub,
        media: Media,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        claims: Claims,
        room: str,
        actions: Actions | None = None,
        desks: Desks | None = None,
    ) -> None:
        self.hub = hub
        self.actions = actions  # reports, moderator actions, bans
        self.desks = desks  # desk_* messages go there (a desk token's connection)
        self.desk_link: Link | None = None
        self.media = media  # offers, answers, candidates and track notes go here
        self.ws = ws
        self.claims = claims
        self.room_name = room
        self.conn = Connection(ws, transport, hub.settings.send_buffer, hub.outgoing)
        s = hub.settings
        self.limiter = RateLimiter(
            s.rate_limit, s.rate_burst, s.flood_strikes, s.byte_rate, s.byte_burst
        )
        self.participant: Participant | None = None
        self.room: Room | None = None
        self.leave_reason = "disconnected"

    async def run(self) -> None:
        s = self.hub.settings
        join_by = time.monotonic() + s.join_timeout
        # time.monotonic() at which the token runs out, when that ends the session
        expire_at = (
            time.monotonic() + self.claims.expires + s.token_leeway - time.time()
            if s.end_session_at_expiry
            else None
        )
        try:
            while not self.conn.closing:
                engaged = self.participant or (self.desk_link and self.desk_link.tried)
                deadline = min(
                    (d for d in (None if engaged else join_by, expire_at) if d),
                    default=None,
                )
                try:
                    async with asyncio.timeout_at(deadline):
                        msg = await self.ws.receive()
                except TimeoutError:
                    await self.timed_out(expire_at)
                    break
                if msg.type == WSMsgType.TEXT:
                    await self.on_frame(msg.data, _text_size(msg.data))
                elif msg.type == WSMsgType.BINARY:
                    await self.on_frame(None, len(msg.data))
                else:  # CLOSE, CLOSING, CLOSED, ERROR
                    break
        finally:
            # A missed heartbeat pong closes the transport, and aiohttp then cancels
            # this handler: the socket's exception tells the two cases apart.
            if isinstance(self.ws.exception(), TimeoutError):
                self.leave_reason = "timeout"
            if self.participant is not None:
                await self.hub.leave(self.room_name, self.participant, self.leave_reason)
            if self.desk_link is not None and self.desks is not None:
                await self.desks.disconnected(self.desk_link)
            if not self.ws.closed:
                await self.conn.end("left", "bye")
            self.conn.stop()

    async def timed_out(self, expire_at: float | None) -> None:
        if expire_at is not None and time.monotonic() >= expire_at:
            self.leave_reason = "expired"
            if self.participant is not None:
                await self.hub.leave(self.room_name, self.participant, "expired")
                self.participant = None
            await self.conn.end("expired", "the access token has expired; join again")
        else:
            await self.fatal(
                ErrorCode.JOIN_TIMEOUT, "no join within the join timeout", "join_timeout"
            )

    async def on_frame(self, data: str | None, size: int) -> None:
        """Every frame, text or binary, counts against the rate, byte and flood limits
        before anything else is done with it."""
        if not self.limiter.allow(size):
            if self.limiter.flooding:
                await self.fatal(ErrorCode.FLOODING, "too many messages; closing", "flooding")
            else:
                self.error(
                    ErrorCode.RATE_LIMITED,
                    f"over {self.hub.settings.rate_limit:g} messages/s or "
                    f"{self.hub.settings.byte_rate} bytes/s; message dropped",
                )
            return
        if data is None:
            self.error(ErrorCode.INVALID_MESSAGE, "binary frames are not part of the protocol")
        elif size > self.hub.settings.max_message_bytes:
            self.error(
                ErrorCode.MESSAGE_TOO_LARGE,
                f"message exceeds {self.hub.settings.max_message_bytes} bytes",
            )
        else:
            await self.on_text(data)

    async def on_text(self, data: str) -> None:
        started = time.perf_counter()
        kind = "invalid"
        try:
            msg = self.hub.schemas.parse_client(data, self.hub.settings.max_json_depth)
            kind = msg["type"]
            self.hub.metrics.messages_in.labels(kind).inc()
            await self.dispatch(msg)
        except ProtocolError as exc:
            self.error(exc.code, exc.message, exc.ref)
        except Exception:
            log.exception("handling %s failed", kind)
            self.error(ErrorCode.INTERNAL_ERROR, "the hub failed to handle this message")
        finally:
            self.hub.metrics.handle_seconds.labels(kind).observe(time.perf_counter() - started)

    async def dispatch(self, msg: Message) -> None:
        kind, ref = msg["type"], msg.get("id")
        if kind == "ping":
            self.send(protocol.pong(time.time(), ref))
            return
        if kind.startswith("desk_"):
            await self.desk(msg)
            return
        if kind == "join":
            if self.claims.desk is not None:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "a desk token enters with desk_join, not join", ref
                )
            await self.join(msg)
            return
        p, room = self.participant, self.room
        if p is None or room is None:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"send join before {kind}", ref)
        if kind == "leave":
            self.leave_reason = "left"
            await self.hub.leave(self.room_name, p, "left")
            self.participant = None
            await self.conn.end(CloseReason.LEFT, "left the room", ref)
        elif kind == "chat":
            if not p.can("chat"):
                raise ProtocolError(ErrorCode.FORBIDDEN, "your token has no chat grant", ref)
            await self.hub.chat(room, p, msg["text"].strip(), ref)
        elif kind in ("report", "moderate"):
            if self.actions is None:
                raise ProtocolError(ErrorCode.NOT_SUPPORTED, f"this hub does not take {kind}", ref)
            handle = self.actions.report if kind == "report" else self.actions.moderate
            await handle(room, p, msg)
        elif kind == "set_language":
            p.speak = msg.get("speak", p.speak)
            p.read = msg.get("read", p.read)
            await self.hub.update(self.room_name, p, ref)
        else:  # offer / answer / ice / track: media negotiation
            await self.media.handle(self.room_name, p, msg)

    async def desk(self, msg: Message) -> None:
        """A desk message: only on a desk token's connection (commhub.desks)."""
        ref, claim = msg.get("id"), self.claims.desk
        if self.desks is None:
            raise ProtocolError(ErrorCode.NOT_SUPPORTED, "this hub runs no desks", ref)
        if claim is None or self.claims.room != DESK_ROOM_PREFIX + claim.name:
            raise ProtocolError(ErrorCode.FORBIDDEN, "desk messages need a desk token", ref)
        if self.desk_link is None:
            self.desk_link = self.desks.link(self.conn, self.claims)
        if msg["type"] == "desk_join":
            self.desk_link.tried = True  # answered: no join timeout while it tries again
        await self.desks.handle(self.desk_link, msg)

    async def join(self, msg: Message) -> None:
        if self.participant is not None:
            raise ProtocolError(ErrorCode.ALREADY_JOINED, "already joined", msg.get("id"))
        if self.desks is not None and self.desks.ended(self.room_name):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this desk session has ended", msg.get("id"))
        c = self.claims
        ban = await self.actions.active_ban(self.room_name, c.identity) if self.actions else None
        if ban is not None:  # whatever token it holds: the ban is on the identity
            until = ban.get("until")
            when = (
                "for good"
                if until is None
                else "until " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(until))
            )
            self.hub.metrics.errors.labels(ErrorCode.BANNED.value).inc()
            self.send(protocol.banned(f"you are banned from this room {when}", until))
            await self.conn.end(CloseReason.BANNED, "banned from this room")
            return
        # A name the token's issuer chose is verified and stands; `join` may name only a
        # participant whose token left the name out (it then equals the identity).
        name = msg.get("name", c.name) if c.name == c.identity else c.name
        p = Participant(
            identity=c.identity,
            name=name,
            role=c.role,
            grants=c.grants,
            speak=msg.get("speak", c.speak),
            read=msg.get("read", c.read),
            conn=self.conn,
        )
        try:
            self.room = await self.hub.join(
                self.room_name,
                p,
                ref=msg.get("id"),
                capabilities=msg.get("capabilities", {}),
                media_mode=self.claims.media_mode,  # the token's issuer chose the room's mode
                record=self.claims.record,  # and may choose whether the room records
            )
        except RoomFull as exc:
            await self.fatal(ErrorCode.ROOM_FULL, str(exc), "room_full")
            return
        self.participant = p
        if self.actions is not None:
            await self.actions.joined(self.room_name, p)

    def send(self, msg: dict[str, Any]) -> None:
        self.hub.send(self.conn, msg)

    def error(
        self, code: ErrorCode, message: str, ref: str | None = None, fatal: bool = False
    ) -> None:
        self.hub.metrics.errors.labels(code.value).inc()
        self.send(protocol.error(code, message, ref, fatal))

    async def fatal(self, code: ErrorCode, message: str, reason: str) -> None:
        self.error(code, message, fatal=True)
        await self.conn.end(reason, message)


def _text_size(data: str) -> int:
    """UTF-8 size of a text frame; ASCII (most frames) needs no encoding to measure."""
    return len(data) if data.isascii() else len(data.encode())
