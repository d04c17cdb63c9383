"""Invites: join links a business or support centre hands out instead of access tokens.

An invite names a room and what its holders may do there (role, grants, media mode); it
expires, may be single- or multi-use, and can be revoked. Redeeming one (with a display name
and languages) mints an ordinary access token for a fresh guest identity, with no more
grants than the invite carries.

Invites live in the hub's database (commhub.store.invites: the store's SQLite file under the
data dir, or `database_url`), so `commhub invite` (another process) can mint one while the
hub runs, and every node of a cluster sees the same invites and counts each use once.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from aiohttp import web

from commhub import auth
from commhub.server.admin import admin_claims, authorise, covers, json_body
from commhub.server.keys import HUB
from commhub.server.limits import AddressBuckets
from commhub.server.signal import json_error
from commhub.store import default_url
from commhub.store.invites import (
    DATABASE_FAULTS,
    Invite,
    InviteError,
    InviteStore,
    unavailable,
)

__all__ = ["INVITES", "Invite", "InviteError", "InviteStore", "mint", "setup", "validate"]

log = logging.getLogger("commhub.invites")

DEFAULT_TTL = 86400.0  # an invite is valid for a day unless told otherwise
GUEST_TOKEN_TTL = 6 * 3600.0  # the token a redeem mints: one long call, reconnects included
NAME_MAX = 80
# per client address, for the public endpoints: enough for a page load and a few retries,
# far too few to try codes (which are 128-bit random anyway)
PUBLIC_RATE = 0.5  # requests per second, sustained
PUBLIC_BURST = 20
_CODE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

MAX_USES = 1_000_000  # a bound SQLite's integers (and anyone's sense) can hold


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
    try:
        invite = await store.get(code)
    except InviteError as exc:
        return _refused(exc)
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
        invite = await request.app[INVITES].create(checked)
    except InviteError as exc:
        return _refused(exc)
    wire = invite.wire(time.time())
    body = {k: wire[k] for k in ("code", "room", "url", "expires_at", "uses_left")}
    return web.json_response(body, status=201)


async def list_invites(request: web.Request) -> web.Response:
    """GET /v1/admin/invites[?room=R]: a room's invites (its admin), or all (`*` admin)."""
    room = request.query.get("room")
    authorise(request, room)
    try:
        invites = await request.app[INVITES].list(room)
    except InviteError as exc:
        return _refused(exc)
    now = time.time()
    return web.json_response({"invites": [i.wire(now) for i in invites]})


async def revoke(request: web.Request) -> web.Response:
    """DELETE /v1/admin/invites/{code}: the invite stops working at once (204), on every
    node: they all read the same row."""
    code = request.match_info["code"]
    store = request.app[INVITES]
    try:
        invite = await store.get(code) if _CODE.match(code) else None
        if invite is None:
            admin_claims(request)  # only an admin (of some room) learns that a code does not exist
            return json_error(404, "invite_not_found", "no such invite")
        authorise(request, invite.room)
        await store.revoke(code)
    except InviteError as exc:
        return _refused(exc)
    return web.Response(status=204)


def store_for(url: str, data_dir: Path, busy_timeout: float = 5.0) -> InviteStore:
    """The invites of the hub's database: `url` (database_url), else the store's SQLite
    file under data_dir; the data dir's old invite file is imported on open()."""
    return InviteStore(url or default_url(data_dir), legacy_dir=data_dir, busy_timeout=busy_timeout)


async def mint(url: str, data_dir: Path, spec: dict[str, Any]) -> Invite:
    """One invite from outside the hub (`commhub invite`): `spec` as validate() returns it."""
    store = store_for(url, data_dir)
    try:
        try:
            await store.open()
        except DATABASE_FAULTS as exc:
            raise unavailable(exc) from exc
        return await store.create(spec)
    finally:
        await store.close()


def setup(app: web.Application, data_dir: Path) -> None:
    settings = app[HUB].settings
    store = store_for(settings.database_url, data_dir, settings.store_busy_timeout)
    app[INVITES] = store
    app[_LIMITER] = AddressBuckets(PUBLIC_RATE, PUBLIC_BURST)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        try:
            await store.open()
        except Exception:  # the hub runs on; invite calls answer 503 until the database works
            log.exception("the invites' database at %s is unusable", store.engine.url)
        yield
        await store.close()

    app.cleanup_ctx.append(lifecycle)
    app.router.add_get("/v1/invites/{code}", show)
    app.router.add_post("/v1/invites/{code}/redeem", redeem)
    app.router.add_post("/v1/admin/invites", create)
    app.router.add_get("/v1/admin/invites", list_invites)
    app.router.add_delete("/v1/admin/invites/{code}", revoke)
