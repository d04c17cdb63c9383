"""Admin API for reports and bans (tokens with the `admin` grant; a room's admin sees and acts
on that room only)."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from commhub.auth import valid_room_name
from commhub.hub import Hub
from commhub.moderation.actions import Actions, FramesOf, MediaControl, ReportStore
from commhub.protocol import ErrorCode, ProtocolError
from commhub.server.admin import admin_claims, authorise, covers, json_body, refusal
from commhub.server.keys import ACTIONS
from commhub.server.signal import json_error
from commhub.store import StoreError

routes = web.RouteTableDef()
STATUSES = ("open", "resolved")
MAX_BAN = 365 * 86400.0  # the longest ban with an end (longer: no duration, no end)
_TEXT_MAX = 1000


def setup(
    app: web.Application, hub: Hub, media: MediaControl | None, frames: FramesOf | None = None
) -> None:
    """Actions (signalling's `report`/`moderate`, bans at join) and these routes.
    `frames`: the imagery moderator's evidence_frames(room, identity), when it runs."""
    app[ACTIONS] = Actions(hub, media, evidence_frames=frames)
    app.router.add_routes(routes)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _faults(handler: Handler) -> Handler:
    """A database fault is 503 store_unavailable, as the signalling edge says it."""

    @functools.wraps(handler)
    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except StoreError as exc:
            return json_error(503, ErrorCode.STORE_UNAVAILABLE.value, str(exc)[:300])
        except ProtocolError as exc:
            return json_error(503 if exc.code == ErrorCode.STORE_UNAVAILABLE else 400,
                              exc.code.value, exc.message)  # fmt: skip

    return run


def _store(request: web.Request) -> tuple[Actions, ReportStore]:
    actions = request.app[ACTIONS]
    store = actions.store
    if store is None:
        raise refusal(web.HTTPServiceUnavailable, "no_store", "this hub keeps no reports or bans")
    return actions, store


def _room_query(request: web.Request) -> str | None:
    room = request.query.get("room")
    if room is not None and not valid_room_name(room):
        raise refusal(web.HTTPBadRequest, "room_invalid", "not a valid room name")
    return room


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    """A report in a list: how much evidence it has, not the evidence."""
    evidence = report.get("evidence") or {}
    counts = {k: len(v) for k, v in evidence.items() if isinstance(v, list)}
    return {**{k: v for k, v in report.items() if k != "evidence"}, "evidence": counts}


def _text(value: Any, name: str, required: bool = False) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > _TEXT_MAX:
        raise refusal(
            web.HTTPBadRequest, "invalid_request", f"{name} must be text of 1..{_TEXT_MAX} chars"
        )
    return value.strip()


@routes.get("/v1/reports")
@_faults
async def list_reports(request: web.Request) -> web.StreamResponse:
    room = _room_query(request)
    authorise(request, room)
    status = request.query.get("status")
    if status is not None and status not in STATUSES:
        return json_error(400, "invalid_request", f"status must be one of {', '.join(STATUSES)}")
    _, store = _store(request)
    found = await store.reports(room=room, status=status)
    return web.json_response({"reports": [_summary(r) for r in found]})


@routes.get("/v1/reports/{id}")
@_faults
async def show_report(request: web.Request) -> web.StreamResponse:
    _, claims = admin_claims(request)
    _, store = _store(request)
    report = await store.get_report(request.match_info["id"])
    if report is None:
        return json_error(404, "report_not_found", "no such report")
    covers(claims, report["room"])
    return web.json_response(report)


@routes.post("/v1/reports/{id}/resolve")
@_faults
async def resolve_report(request: web.Request) -> web.StreamResponse:
    _, claims = admin_claims(request)
    _, store = _store(request)
    report_id = request.match_info["id"]
    report = await store.get_report(report_id)
    if report is None:
        return json_error(404, "report_not_found", "no such report")
    covers(claims, report["room"])
    body = await json_body(request)
    resolution = _text(body.get("resolution"), "resolution", required=True)
    assert resolution is not None
    if not await store.resolve_report(report_id, resolution, claims.identity):
        return json_error(409, "already_resolved", "the report is already resolved")
    return web.json_response(await store.get_report(report_id))


@routes.get("/v1/bans")
@_faults
async def list_bans(request: web.Request) -> web.StreamResponse:
    room = _room_query(request)
    authorise(request, room)
    _, store = _store(request)
    return web.json_response({"bans": await store.bans(room)})


@routes.post("/v1/rooms/{room}/bans")
@_faults
async def add_ban(request: web.Request) -> web.StreamResponse:
    room = request.match_info["room"]
    if not valid_room_name(room):
        return json_error(400, "room_invalid", "not a valid room name")
    authorise(request, room)
    actions, _ = _store(request)
    body = await json_body(request)
    unknown = set(body) - {"identity", "duration", "reason"}
    if unknown:
        return json_error(400, "invalid_request", f"unknown field(s) {sorted(unknown)[:10]}")
    identity = body.get("identity")
    if not isinstance(identity, str) or not 0 < len(identity) <= 128:
        return json_error(400, "invalid_request", "identity must be 1..128 characters")
    duration = body.get("duration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, int | float)
        or not 0 < duration <= MAX_BAN
    ):
        return json_error(
            400, "invalid_request", f"duration must be seconds in (0, {MAX_BAN:g}] or null"
        )
    reason = _text(body.get("reason"), "reason")
    ban = await actions.ban(room, identity, duration, None, reason)
    return web.json_response(ban, status=201)


@routes.delete("/v1/bans/{id}")
@_faults
async def lift_ban(request: web.Request) -> web.StreamResponse:
    _, claims = admin_claims(request)
    actions, store = _store(request)
    ban_id = request.match_info["id"]
    ban = next((b for b in await store.bans() if b["id"] == ban_id), None)
    if ban is None:
        return json_error(404, "ban_not_found", "no ban in force with that id")
    covers(claims, ban["room"])
    if not await store.lift_ban(ban_id):
        return json_error(404, "ban_not_found", "no ban in force with that id")
    if ban["room"] != "*":
        await actions.announce_unban(ban["room"], ban["identity"], None)
    return web.Response(status=204)
