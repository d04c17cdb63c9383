"""Admin API of the text filters: a room's own word list.

GET/PUT/DELETE /v1/rooms/{room}/wordlist, for an admin token covering the room. The list
applies in every language, besides the hub's engines and lists; `allow` names words never
to flag in that room. Kept in memory by the node (a room's list outlives the room).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from aiohttp import web

from commhub.auth import valid_room_name
from commhub.moderation.text import TextModeration
from commhub.server.admin import authorise, json_body
from commhub.server.signal import json_error

MAX_WORDS = 2000
MAX_WORD = 64

routes = web.RouteTableDef()


def setup(app: web.Application) -> None:
    app.router.add_routes(routes)


def _moderation(request: web.Request) -> tuple[str, TextModeration | web.Response]:
    name = request.match_info["room"]
    if not valid_room_name(name):
        return name, json_error(
            400, "room_invalid", "a room name is 1..128 letters, digits, '.', '_' or '-'"
        )
    hub, _ = authorise(request, name)
    if hub.moderation is None:
        return name, json_error(
            409, "moderation_off", "text moderation is off on this hub (setting moderation)"
        )
    return name, hub.moderation


def _terms(body: dict[str, Any], field: str) -> list[str] | str:
    """The list in `field`, or why it is refused."""
    value = body.get(field, [])
    if not isinstance(value, list) or len(value) > MAX_WORDS:
        return f"{field} must be a list of at most {MAX_WORDS} strings"
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or not 0 < len(item.strip()) <= MAX_WORD:
            return f"each of {field} must be a string of 1..{MAX_WORD} characters"
        if any(unicodedata.category(c) in ("Cc", "Cs", "Cn") for c in item):
            return f"{field}: control or unassigned characters are not allowed"
        out.append(item.strip())
    return list(dict.fromkeys(out))


def _body(name: str, moderation: TextModeration) -> dict[str, Any]:
    current = moderation.room_lists.get(name)
    return {
        "room": name,
        "words": list(current.words) if current else [],
        "allow": list(current.allowed) if current else [],
    }


@routes.get("/v1/rooms/{room}/wordlist")
async def get_wordlist(request: web.Request) -> web.Response:
    name, moderation = _moderation(request)
    if isinstance(moderation, web.Response):
        return moderation
    return web.json_response(_body(name, moderation))


@routes.put("/v1/rooms/{room}/wordlist")
async def put_wordlist(request: web.Request) -> web.Response:
    name, moderation = _moderation(request)
    if isinstance(moderation, web.Response):
        return moderation
    body = await json_body(request)
    unknown = set(body) - {"words", "allow"}
    if unknown:
        return json_error(400, "invalid_request", f"unknown field(s) {sorted(unknown)[:10]}")
    words, allow = _terms(body, "words"), _terms(body, "allow")
    for problem in (words, allow):
        if isinstance(problem, str):
            return json_error(400, "invalid_request", problem)
    assert isinstance(words, list) and isinstance(allow, list)
    moderation.set_room_list(name, words, allow)
    return web.json_response(_body(name, moderation))


@routes.delete("/v1/rooms/{room}/wordlist")
async def delete_wordlist(request: web.Request) -> web.Response:
    name, moderation = _moderation(request)
    if isinstance(moderation, web.Response):
        return moderation
    moderation.set_room_list(name, [], [])
    return web.Response(status=204)
