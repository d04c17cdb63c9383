"""Transcripts over HTTP, and erasure of one identity's stored data.

`GET /v1/rooms/{room}/transcript` is for an admin token covering the room, or a token with
the `transcript` grant for that room; `DELETE /v1/identities/{identity}` for a hub admin.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from sqlalchemy.exc import SQLAlchemyError

from commhub import auth
from commhub.auth import Claims
from commhub.hub import Hub
from commhub.protocol import unsafe
from commhub.server.admin import authorise, covers, refusal, verified
from commhub.server.keys import HUB
from commhub.store import export
from commhub.store.retention import Retention, erase
from commhub.store.writer import StoreError

log = logging.getLogger("commhub.transcripts")

routes = web.RouteTableDef()
RETENTION = web.AppKey("retention", Retention)
QUERY = frozenset({"format", "lang", "bilingual", "access_token"})
MAX_LANG = 35  # BCP 47 tags the hub keeps are far shorter
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no", "")


def setup(app: web.Application) -> None:
    """The routes, and the periodic retention purge while the hub runs."""
    app.router.add_routes(routes)
    hub = app[HUB]
    s = hub.settings
    app[RETENTION] = Retention(
        lambda: hub.store, s.data_dir, s.retention_days, s.retention_interval, hub.rooms
    )

    # on_startup runs after every cleanup_ctx started (the store is open by then), and this
    # on_shutdown before the hub's (which closes the store)
    async def start(app: web.Application) -> None:
        app[RETENTION].start()

    async def stop(app: web.Application) -> None:
        await app[RETENTION].close()

    app.on_startup.append(start)
    app.on_shutdown.append(stop)
    app.on_cleanup.append(stop)


def reader(request: web.Request, room: str) -> tuple[Hub, Claims]:
    """A token that may read `room`'s transcript: admin covering it, or its transcript grant."""
    hub, claims = verified(request)
    if "admin" in claims.grants:
        covers(claims, room)
    elif "transcript" not in claims.grants:
        raise refusal(
            web.HTTPForbidden, "forbidden", "reading a transcript needs the transcript grant"
        )
    elif claims.room != room:
        raise refusal(
            web.HTTPForbidden, "forbidden", "this token's transcript grant is for another room"
        )
    return hub, claims


def options(request: web.Request) -> tuple[export.Format, str | None, bool]:
    """format, lang and bilingual from the query, each refused precisely."""
    query = request.query
    for key in query:
        if key not in QUERY:
            name = key[:32] if unsafe(key, 1) is None else "(not valid Unicode)"
            raise bad("invalid_request", f"unknown query parameter {name!r}; known: "
                      "format, lang, bilingual")  # fmt: skip
        if len(query.getall(key)) > 1:
            raise bad("invalid_request", f"query parameter {key!r} given more than once")
    fmt = query.get("format", "vtt")
    if fmt not in export.FORMATS:
        raise bad("invalid_format", f"format must be one of {', '.join(export.FORMATS)}")
    lang: str | None = query.get("lang") or None
    if lang is not None and (
        len(lang) > MAX_LANG or unsafe(lang, 1) is not None or not auth.valid_language(lang)
    ):
        raise bad("invalid_language", "lang must be a language tag like ko, en or pt-BR")
    flag = query.get("bilingual", "").lower()
    if flag not in _TRUE + _FALSE:
        raise bad("invalid_request", "bilingual must be 1 or 0")
    bilingual = flag in _TRUE
    if bilingual and lang is None:
        raise bad("invalid_request", "bilingual needs lang: the language to show beside each line")
    return fmt, lang, bilingual


def unavailable(exc: Exception) -> web.HTTPException:
    """The database failed (logged; /readyz says what is wrong until it recovers)."""
    log.warning("store call failed: %s", exc)
    return refusal(
        web.HTTPServiceUnavailable, "store_unavailable", "the store cannot answer now; retry"
    )


def bad(code: str, message: str) -> web.HTTPException:
    return refusal(web.HTTPBadRequest, code, message)


@routes.get("/v1/rooms/{room}/transcript")
async def transcript(request: web.Request) -> web.Response:
    room = request.match_info["room"]
    if not auth.valid_room_name(room):
        raise bad("room_invalid", "room names are 1..128 letters, digits, '.', '_', '-'")
    hub, _ = reader(request, room)
    fmt, lang, bilingual = options(request)
    store = hub.store
    if store is None:
        raise refusal(web.HTTPServiceUnavailable, "store_unavailable", "this hub stores nothing")
    try:
        rows = await store.transcript(room)
    except (StoreError, SQLAlchemyError) as exc:
        raise unavailable(exc) from None
    if not rows and hub.rooms.get(room) is None:
        raise refusal(web.HTTPNotFound, "room_not_found", f"nothing is stored for room {room!r}")
    # rendering a long transcript is CPU work: off the loop
    body = await asyncio.to_thread(
        export.render, rows, fmt, lang=lang, bilingual=bilingual, room=room
    )
    suffix = f".{lang}" if lang else ""
    return web.Response(
        text=body,
        content_type=export.CONTENT_TYPES[fmt],
        charset="utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{room}{suffix}.{fmt}"',
            "Cache-Control": "no-store",
        },
    )


@routes.delete("/v1/identities/{identity}")
async def erase_identity(request: web.Request) -> web.Response:
    hub, _ = authorise(request)  # every room's data: a hub admin only
    identity = request.match_info["identity"]
    if not 0 < len(identity) <= 128 or unsafe(identity, 1) is not None:
        raise bad("invalid_request", "identity must be 1..128 characters of valid Unicode")
    if hub.store is None:
        raise refusal(web.HTTPServiceUnavailable, "store_unavailable", "this hub stores nothing")
    try:
        counts = await erase(hub.store, hub.settings.data_dir, identity)
    except (StoreError, SQLAlchemyError) as exc:
        raise unavailable(exc) from None
    # a live room's history (what newcomers get in `joined.chat`) forgets it too
    counts["live_chat"] = sum(room.forget(identity=identity) for room in hub.rooms)
    return web.json_response({"identity": identity, "erased": counts})
