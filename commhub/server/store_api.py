"""Admin API of the store: a room's recording policy."""

from __future__ import annotations

from aiohttp import web

from commhub.auth import valid_room_name
from commhub.server.admin import authorise, json_body
from commhub.server.signal import json_error
from commhub.store import StoreError

routes = web.RouteTableDef()


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)


def _room(request: web.Request) -> str:
    name = request.match_info["room"]
    if not valid_room_name(name):
        raise web.HTTPBadRequest(
            text='{"error": "room_invalid", "message": "not a valid room name"}',
            content_type="application/json",
        )
    return name


@routes.get("/v1/rooms/{room}/policy")
async def get_policy(request: web.Request) -> web.Response:
    name = _room(request)
    hub, _ = authorise(request, name)
    if hub.store is None:
        return json_error(409, "store_disabled", "the hub runs without a store")
    try:
        policy = await hub.store.recording(name)
    except Exception as exc:  # the database's fault: say so, the hub runs on
        return json_error(503, "store_unavailable", f"the store failed: {exc}"[:300])
    return web.json_response(
        {
            "room": name,
            "recording": hub.settings.recording if policy is None else policy,
            "policy": {"recording": policy},
            "default": {"recording": hub.settings.recording},
        }
    )


@routes.put("/v1/rooms/{room}/policy")
async def put_policy(request: web.Request) -> web.Response:
    """{"recording": true|false|null}: whether the room records its transcript (null: the
    hub's `recording` setting decides). A live room is told at once (`recording`)."""
    name = _room(request)
    hub, _ = authorise(request, name)
    body = await json_body(request)
    unknown = set(body) - {"recording"}
    if unknown or "recording" not in body:
        return json_error(
            400, "invalid_request", 'expected {"recording": true, false or null}, nothing else'
        )
    value = body["recording"]
    if value is not None and not isinstance(value, bool):
        return json_error(400, "invalid_request", "recording must be true, false or null")
    if hub.store is None:
        return json_error(409, "store_disabled", "the hub runs without a store: nothing records")
    try:
        on = await hub.set_recording(name, value)
    except StoreError as exc:
        return json_error(503, "store_unavailable", str(exc)[:300])
    return web.json_response({"room": name, "recording": on, "policy": {"recording": value}})
