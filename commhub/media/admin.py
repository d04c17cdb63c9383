"""Admin API for media: choose a room's mode (sfu, p2p, or auto to follow the defaults)."""

from __future__ import annotations

from aiohttp import web

routes = web.RouteTableDef()


@routes.put("/v1/admin/rooms/{room}/media")
async def set_media_mode(request: web.Request) -> web.Response:
    from commhub.server.admin import _admin  # the admin API's token check, imported late:
    from commhub.server.signal import json_error  # server imports the hub, which imports us

    name = request.match_info["room"]
    hub, _ = _admin(request, name)
    try:
        body = await request.json()
    except ValueError:
        return json_error(400, "bad_json", "the body must be a JSON object")
    mode = body.get("mode") if isinstance(body, dict) else None
    if mode not in ("sfu", "p2p", "auto"):
        return json_error(400, "invalid_request", 'mode must be "sfu", "p2p" or "auto"')
    await hub.media.set_mode(name, mode)
    return web.json_response({"room": name, "mode": mode, "effective": hub.media.mode(name)})
