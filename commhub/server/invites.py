"""Invites: join links a business or support centre hands out instead of access tokens.

An invite names a room and what its holders may do there (role, grants, media mode); it
expires, may be single- or multi-use, and can be revoked. Redeeming one (with a display name
and languages) mints an ordinary access token for a fresh guest identity, with no more
grants than the invite carries.

Invites live in SQLite under the data dir, so `commhub invite` (another process) can mint
one while the hub runs. The hub talks to the database from one worker thread only: no call
ever blocks the event loop, and the writes need no locking of their own.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from aiohttp import web

from commhub import auth
from commhub.server.admin import admin_claims, authorise, covers, json_body
from commhub.server.keys import HUB
from commhub.server.limits import AddressBuckets
from commhub.server.signal import json_error

DEFAULT_TTL = 86400.0  # an invite is valid for a day unless told otherwise
GUEST_TOKEN_TTL = 6 * 3600.0  # the token a redeem mints: one long call, reconnects included
KEEP_ENDED = 7 * 86400.0  # ended invites are still listed this long, then purged
NAME_MAX = 80
# per client address, for the public endpoints: enough for a page load and a few retries,
# far too few to try codes (which are 128-bit random anyway)
PUBLIC_RATE = 0.5  # requests per second, sustained
PUBLIC_BURST = 20
_CODE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

T = TypeVar("T")


MAX_USES = 1_000_000  # a bound SQLite's integers (and anyone's sense) can hold


class InviteError(Exception):
    """A refused invite or request: HTTP status, stable code, words for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Invite:
    code: str
    room: str
    created_at: float
    expires_at: float
    uses: int | None  # None: unlimited
    uses_left: int | None
    role: str
    grants: tuple[str, ...]
    media_mode: str | None
    revoked_at: float | None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.uses_left is not None and self.uses_left <= 0:
            return "used_up"
        return "active"

    def refusal(self, now: float) -> InviteError | None:
        state = self.status(now)
        words = {
            "revoked": "this invite was revoked",
            "expired": "this invite has expired",
            "used_up": "this invite has been used as many times as it allows",
        }
        if state == "active":
            return None
        return InviteError(410, f"invite_{state}", words[state])

    @property
    def url(self) -> str:
        return f"/join/{self.code}"

    def public(self) -> dict[str, Any]:
        return {"room": self.room, "expires_at": int(self.expires_at), "uses_left": self.uses_left}

    def wire(self, now: float) -> dict[str, Any]:
        return {
            "code": self.code,
            "room": self.room,
            "url": self.url,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            "uses": self.uses,
            "uses_left": self.uses_left,
            "role": self.role,
            "grants": list(self.grants),
            "media_mode": self.media_mode,
            "status": self.status(now),
        }


def validate(spec: Any, max_ttl: float) -> dict[str, Any]:
    """An invite request ({room, ttl?, uses?, role?, grants?, media_mode?}) checked and
    completed with defaults; InviteError(400, invalid_request) says what is wrong."""

    def bad(message: str) -> InviteError:
        return InviteError(400, "invalid_request", message)

    if not isinstance(spec, dict):
        raise bad("the body must be a JSON object")
    unknown = set(spec) - {"room", "ttl", "uses", "role", "grants", "media_mode"}
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)}")
    room = spec.get("room")
    if not isinstance(room, str) or not auth.valid_room_name(room):
        raise bad("room must be a room name: letters, digits, '.', '_', '-'")
    ttl = spec.get("ttl", DEFAULT_TTL)
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= max_ttl:
        raise bad(f"ttl must be seconds in (0, {max_ttl:g}]")
    uses = spec.get("uses")
    if uses is not None and (
        isinstance(uses, bool) or not isinstance(uses, int) or not 1 <= uses <= MAX_USES
    ):
        raise bad(f"uses must be an integer in 1..{MAX_USES}, or null for unlimited")
    role = spec.get("role", "guest")
    if role not in auth.ROLES or role == "admin":
        raise bad(f"role must be one of {', '.join(r for r in auth.ROLES if r != 'admin')}")
    grants = spec.get("grants", list(auth.DEFAULT_GRANTS))
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        raise bad("grants must be a list of grant names")
    if not set(grants) <= set(auth.GRANTS) - {"admin"}:
        allowed = ", ".join(g for g in auth.GRANTS if g != "admin")
        raise bad(f"grants may be {allowed} (an invite never grants admin)")
    mode = spec.get("media_mode")
    if mode not in auth.MEDIA_MODES:
        raise bad("media_mode must be sfu, p2p or auto")
    return {
        "room": room,
        "ttl": float(ttl),
        "uses": uses,
        "role": role,
        "grants": tuple(sorted(set(grants))),
        "media_mode": mode,
    }


class InviteDB:
    """The invite table (synchronous). One per process and thread; SQLite arbitrates
    between the hub and the command line."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(
            """CREATE TABLE IF NOT EXISTS invites (
                code TEXT PRIMARY KEY, room TEXT NOT NULL, created_at REAL NOT NULL,
                expires_at REAL NOT NULL, uses INTEGER, uses_left INTEGER,
                role TEXT NOT NULL, grants TEXT NOT NULL, media_mode TEXT, revoked_at REAL)"""
        )
        self.db.execute("CREATE INDEX IF NOT EXISTS invites_room ON invites (room)")
        self.db.execute("DELETE FROM invites WHERE expires_at < ?", (time.time() - KEEP_ENDED,))

    def close(self) -> None:
        self.db.close()

    def create(self, spec: dict[str, Any], now: float | None = None) -> Invite:
        """`spec` as validate() returns it."""
        now = time.time() if now is None else now
        invite = Invite(
            code=secrets.token_urlsafe(16),  # 128 random bits
            room=spec["room"],
            created_at=now,
            expires_at=now + spec["ttl"],
            uses=spec["uses"],
            uses_left=spec["uses"],
            role=spec["role"],
            grants=tuple(spec["grants"]),
            media_mode=spec["media_mode"],
            revoked_at=None,
        )
        self.db.execute(
            "INSERT INTO invites VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (invite.code, invite.room, invite.created_at, invite.expires_at, invite.uses,
             invite.uses_left, invite.role, json.dumps(invite.grants), invite.media_mode),
        )  # fmt: skip
        return invite

    def get(self, code: str) -> Invite | None:
        row = self.db.execute("SELECT * FROM invites WHERE code = ?", (code,)).fetchone()
        return _invite(row) if row else None

    def list(self, room: str | None = None) -> list[Invite]:
        if room is None:
            rows = self.db.execute("SELECT * FROM invites ORDER BY created_at").fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM invites WHERE room = ? ORDER BY created_at", (room,)
            ).fetchall()
        return [_invite(r) for r in rows]

    def revoke(self, code: str, now: float | None = None) -> bool:
        cur = self.db.execute(
            "UPDATE invites SET revoked_at = COALESCE(revoked_at, ?) WHERE code = ?",
            (time.time() if now is None else now, code),
        )
        return cur.rowcount > 0

    def redeem(self, code: str, now: float | None = None) -> Invite:
        """Take one use, atomically (two redeems of the last use: one wins, one gets
        invite_used_up), or raise the reason it cannot be used."""
        now = time.time() if now is None else now
        self.db.execute("BEGIN IMMEDIATE")
        try:
            invite = self.get(code)
            if invite is None:
                raise InviteError(404, "invite_not_found", "no such invite")
            refusal = invite.refusal(now)
            if refusal is not None:
                raise refusal
            if invite.uses_left is not None:
                self.db.execute(
                    "UPDATE invites SET uses_left = uses_left - 1 WHERE code = ?", (code,)
                )
                invite = self.get(code) or invite
            self.db.execute("COMMIT")
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        return invite


def _invite(row: tuple[Any, ...]) -> Invite:
    code, room, created, expires, uses, left, role, grants, mode, revoked = row
    return Invite(code, room, created, expires, uses, left, role,
                  tuple(json.loads(grants)), mode, revoked)  # fmt: skip


def db_path(data_dir: Path) -> Path:
    return data_dir / "invites.sqlite3"


class InviteStore:
    """The hub's async face of InviteDB: every call runs in the store's one thread."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="invites")
        self._db: InviteDB | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> InviteDB:
        self._db = InviteDB(self.path)
        return self._db

    async def open(self) -> None:
        await self._call(self._open)

    @property
    def db(self) -> InviteDB:
        assert self._db is not None, "InviteStore.open() first"
        return self._db

    async def create(self, spec: dict[str, Any]) -> Invite:
        return await self._call(self.db.create, spec)

    async def get(self, code: str) -> Invite | None:
        return await self._call(self.db.get, code)

    async def list(self, room: str | None = None) -> list[Invite]:
        return await self._call(self.db.list, room)

    async def revoke(self, code: str) -> bool:
        return await self._call(self.db.revoke, code)

    async def redeem(self, code: str) -> Invite:
        return await self._call(self.db.redeem, code)

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._executor.shutdown(wait=False)  # idle now: its last call has returned


INVITES = web.AppKey("invites", InviteStore)
_LIMITER = web.AppKey("invite_limiter", AddressBuckets)


def _refused(exc: InviteError) -> web.Response:
    return json_error(exc.status, exc.code, exc.message)


async def _found(request: web.Request) -> tuple[InviteStore, str] | web.Response:
    """The store and the code of a public request, or the refusal to send."""
    address = request.remote or "unknown"
    limiter = request.app[_LIMITER]
    if not limiter.take(address):
        response = json_error(429, "rate_limited", "too many invite requests; try again soon")
        response.headers["Retry-After"] = str(limiter.retry_after(address))
        return response
    code = request.match_info["code"]
    if not _CODE.match(code):
        return json_error(404, "invite_not_found", "no such invite")
    return request.app[INVITES], code


async def show(request: web.Request) -> web.Response:
    """GET /v1/invites/{code}: what a join page shows before the name is typed."""
    found = await _found(request)
    if isinstance(found, web.Response):
        return found
    store, code = found
    invite = await store.get(code)
    if invite is None:
        return json_error(404, "invite_not_found", "no such invite")
    refusal = invite.refusal(time.time())
    if refusal is not None:
        return _refused(refusal)
    return web.json_response(invite.public(), headers={"Cache-Control": "no-store"})


async def redeem(request: web.Request) -> web.Response:
    """POST /v1/invites/{code}/redeem {name, speak?, read?}: a token for a new guest."""
    found = await _found(request)
    if isinstance(found, web.Response):
        return found
    store, code = found
    body = await json_body(request)
    try:
        name, speak, read = _guest(body)
        invite = await store.redeem(code)
    except InviteError as exc:
        return _refused(exc)
    hub = request.app[HUB]
    identity = "guest-" + secrets.token_urlsafe(9)
    ttl = min(GUEST_TOKEN_TTL, hub.settings.admin_token_max_ttl)
    token = auth.issue(
        hub.secret,
        room=invite.room,
        identity=identity,
        name=name,
        role=invite.role,
        grants=invite.grants,  # never more than the invite carries
        speak=speak,
        read=read,
        ttl=ttl,
        issuer=hub.settings.issuer,
        media_mode=invite.media_mode,
    )
    return web.json_response(
        {
            "token": token,
            "room": invite.room,
            "identity": identity,
            "expires_at": int(time.time() + ttl),
        },
        headers={"Cache-Control": "no-store"},
    )


def _guest(body: Any) -> tuple[str, str, str]:
    def bad(message: str) -> InviteError:
        return InviteError(400, "invalid_request", message)

    if not isinstance(body, dict):
        raise bad('the body must be a JSON object: {"name", "speak", "read"}')
    unknown = set(body) - {"name", "speak", "read"}
    if unknown:
        raise bad(f"unknown field(s) {sorted(unknown)}")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
        raise bad(f"name must be 1..{NAME_MAX} characters")
    if _CONTROL.search(name):
        raise bad("name must not contain control characters")
    speak = body.get("speak", "en")
    read = body.get("read", speak)
    for field, lang in (("speak", speak), ("read", read)):
        if not isinstance(lang, str) or not auth.valid_language(lang):
            raise bad(f"{field} must be a language tag such as en or ko")
    return name.strip(), str(speak), str(read)


async def create(request: web.Request) -> web.Response:
    """POST /v1/admin/invites (admin of the room, or of every room)."""
    hub, claims = admin_claims(request)  # before the body is read
    spec = await json_body(request)
    room = spec.get("room")
    if not isinstance(room, str):
        return json_error(400, "invalid_request", "room (string) is required")
    covers(claims, room)
    try:
        checked = validate(spec, hub.settings.admin_token_max_ttl)
    except InviteError as exc:
        return _refused(exc)
    invite = await request.app[INVITES].create(checked)
    wire = invite.wire(time.time())
    body = {k: wire[k] for k in ("code", "room", "url", "expires_at", "uses_left")}
    return web.json_response(body, status=201)


async def list_invites(request: web.Request) -> web.Response:
    """GET /v1/admin/invites[?room=R]: a room's invites (its admin), or all (`*` admin)."""
    room = request.query.get("room")
    authorise(request, room)
    invites = await request.app[INVITES].list(room)
    now = time.time()
    return web.json_response({"invites": [i.wire(now) for i in invites]})


async def revoke(request: web.Request) -> web.Response:
    """DELETE /v1/admin/invites/{code}: the invite stops working at once (204)."""
    code = request.match_info["code"]
    store = request.app[INVITES]
    invite = await store.get(code) if _CODE.match(code) else None
    if invite is None:
        admin_claims(request)  # only an admin (of some room) learns that a code does not exist
        return json_error(404, "invite_not_found", "no such invite")
    authorise(request, invite.room)
    await store.revoke(code)
    return web.Response(status=204)


def setup(app: web.Application, data_dir: Path) -> None:
    store = InviteStore(db_path(data_dir))
    app[INVITES] = store
    app[_LIMITER] = AddressBuckets(PUBLIC_RATE, PUBLIC_BURST)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await store.open()
        yield
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/invites/{code}", show)
    app.router.add_post("/v1/invites/{code}/redeem", redeem)
    app.router.add_post("/v1/admin/invites", create)
    app.router.add_get("/v1/admin/invites", list_invites)
    app.router.add_delete("/v1/admin/invites/{code}", revoke)
