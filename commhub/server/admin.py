"""Admin API: rooms, participants and tokens, for tokens with the `admin` grant."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from commhub import auth
from commhub.auth import AuthError, Claims
from commhub.hub import Hub
from commhub.protocol import unsafe
from commhub.server.keys import HUB, MEDIA
from commhub.server.signal import bearer, json_error

routes = web.RouteTableDef()


def authorise(request: web.Request, room: str | None = None) -> tuple[Hub, Claims]:
    """An admin token covering `room` (None: every room), checked before the body is read."""
    hub, claims = admin_claims(request)
    covers(claims, room)
    return hub, claims


def covers(claims: Claims, room: str | None) -> None:
    """Refuse (403) unless the admin token covers `room` (None: every room)."""
    if not (claims.admits(room) if room is not None else claims.room == auth.ANY_ROOM):
        raise refusal(web.HTTPForbidden, "forbidden", "this admin token does not cover that room")


def verified(request: web.Request) -> tuple[Hub, Claims]:
    """The request's bearer token, verified (401 with the refusal's code otherwise)."""
    hub = request.app[HUB]
    try:
        claims = auth.verify(
            hub.secret,
            bearer(request),
            issuer=hub.settings.issuer,
            leeway=hub.settings.token_leeway,
        )
    except AuthError as exc:
        raise refusal(web.HTTPUnauthorized, exc.code, exc.message) from None
    return hub, claims


def admin_claims(request: web.Request) -> tuple[Hub, Claims]:
    hub, claims = verified(request)
    if "admin" not in claims.grants:
        raise refusal(web.HTTPForbidden, "forbidden", "this API needs a token with the admin grant")
    return hub, claims


def refusal(kind: type[web.HTTPException], code: str, message: str) -> web.HTTPException:
    """The same JSON body as json_error, as an exception that stops the handler."""
    return kind(
        text=json.dumps({"error": code, "message": message}), content_type="application/json"
    )


async def json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object, refused as the signalling edge refuses a message."""
    try:
        body = json.loads(await request.text())
    except web.HTTPRequestEntityTooLarge as exc:
        text = json.dumps({"error": "message_too_large", "message": exc.text})
        raise web.HTTPRequestEntityTooLarge(
            request.app[HUB].settings.max_message_bytes,
            request.content_length or 0,
            text=text,
            content_type="application/json",
        ) from None
    except ValueError:
        raise refusal(web.HTTPBadRequest, "bad_json", "the body must be a JSON object") from None
    except RecursionError:
        raise refusal(web.HTTPBadRequest, "invalid_request", "nested too deeply") from None
    if not isinstance(body, dict):
        raise refusal(web.HTTPBadRequest, "invalid_request", "the body must be a JSON object")
    problem = unsafe(body, request.app[HUB].settings.max_json_depth)
    if problem:
        raise refusal(web.HTTPBadRequest, "invalid_request", problem)
    return body


@routes.get("/v1/admin/rooms")
async def list_rooms(request: web.Request) -> web.Response:
    hub, _ = authorise(request)
    return web.json_response({"rooms": [r.summary() for r in hub.rooms]})


@routes.get("/v1/admin/rooms/{room}")
async def show_room(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    hub, _ = authorise(request, name)
    room = hub.rooms.get(name)
    if room is None:
        return json_error(404, "room_not_found", f"no room {name!r}")
    body: dict[str, Any] = room.summary()
    body["participants"] = [p.wire() for p in room.participants.values()]
    return web.json_response(body)


@routes.delete("/v1/admin/rooms/{room}")
async def close_room(request: web.Request) -> web.Response:
    name = request.match_info["room"]
    hub, _ = authorise(request, name)
    if not await hub.close_room(name):
        return json_error(404, "room_not_found", f"no room {name!r}")
    return web.Response(status=204)


@routes.delete("/v1/admin/rooms/{room}/participants/{who}")
async def remove_participant(request: web.Request) -> web.Response:
    name, who = request.match_info["room"], request.match_info["who"]
    hub, _ = authorise(request, name)
    if not await hub.remove(name, who):
        return json_error(404, "participant_not_found", f"no participant {who!r} in room {name!r}")
    return web.Response(status=204)


@routes.post("/v1/admin/tokens")
async def mint_token(request: web.Request) -> web.Response:
    hub, claims = admin_claims(request)  # the room is in the body: covered is checked below
    spec = await json_body(request)
    if not isinstance(spec.get("room"), str):
        return json_error(
            400, "invalid_request", "room (string) and identity (string) are required"
        )
    covers(claims, spec["room"])
    allowed = {"room", "identity", "name", "role", "grants", "speak", "read", "ttl", "media_mode"}
    allowed.add("record")  # the room's recording policy, applied when the holder joins
    unknown = set(spec) - allowed
    if unknown:
        return json_error(400, "invalid_request", f"unknown field(s) {sorted(unknown)[:10]}")
    ttl = spec.get("ttl", 6 * 3600)
    cap = hub.settings.admin_token_max_ttl
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= cap:
        return json_error(
            400, "invalid_request", f"ttl must be a number of seconds in (0, {cap:g}]"
        )
    try:
        token = auth.issue(hub.secret, issuer=hub.settings.issuer, **spec)
    except (TypeError, ValueError) as exc:
        return json_error(400, "invalid_request", str(exc)[:200])
    return web.json_response({"token": token}, status=201)


@routes.put("/v1/admin/rooms/{room}/media")
async def set_media_mode(request: web.Request) -> web.Response:
    """Choose a room's media mode: sfu, p2p, or auto to follow the defaults."""
    name = request.match_info["room"]
    authorise(request, name)
    media = request.app[MEDIA]
    body = await json_body(request)
    mode = body.get("mode")
    if mode not in ("sfu", "p2p", "auto"):
        return json_error(400, "invalid_request", 'mode must be "sfu", "p2p" or "auto"')
    await media.set_mode(name, mode)
    return web.json_response({"room": name, "mode": mode, "effective": media.mode(name)})
