"""HTTP for the desks: the public link (what the pre-join screen shows, and the visitor
token it mints) and the admin API (desks, their queues and agents)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aiohttp import web

from commhub import auth
from commhub.desks import model
from commhub.desks.db import DeskStore, database_url
from commhub.desks.model import DeskError
from commhub.desks.service import Desks
from commhub.desks.tokens import AGENT_TOKEN_TTL, issue_agent
from commhub.hub import Hub
from commhub.server.admin import authorise, json_body
from commhub.server.invites import INVITES, PUBLIC_BURST, PUBLIC_RATE
from commhub.server.keys import DESKS, HUB
from commhub.server.limits import AddressBuckets
from commhub.server.signal import json_error

NAME_MAX = 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LIMITER = web.AppKey("desk_limiter", AddressBuckets)


def _refused(exc: DeskError, **extra: Any) -> web.Response:
    return web.json_response(
        {"error": exc.code, "message": exc.message, **extra}, status=exc.status
    )


def _not_found(name: str) -> web.Response:
    return json_error(404, "desk_not_found", f"no desk {name[:64]!r}")


def _limited(request: web.Request) -> web.Response | None:
    address = request.remote or "unknown"
    limiter = request.app[_LIMITER]
    if limiter.take(address):
        return None
    response = json_error(429, "rate_limited", "too many desk requests; try again soon")
    response.headers["Retry-After"] = str(limiter.retry_after(address))
    return response


# -- public ------------------------------------------------------------------------------------


async def show(request: web.Request) -> web.Response:
    """GET /v1/desks/{desk}: what the visitor's pre-join screen shows."""
    limited = _limited(request)
    if limited is not None:
        return limited
    name = request.match_info["desk"]
    state = await request.app[DESKS].state(name)
    if state is None:
        return _not_found(name)
    return web.json_response(
        request.app[DESKS].public(state), headers={"Cache-Control": "no-store"}
    )


async def visit(request: web.Request) -> web.Response:
    """POST /v1/desks/{desk}/visit {name, speak, read?, topic?}: a visitor token."""
    limited = _limited(request)
    if limited is not None:
        return limited
    desks, name = request.app[DESKS], request.match_info["desk"]
    state = await desks.state(name)
    if state is None:
        return _not_found(name)
    body = await json_body(request)
    try:
        who, speak, read, topic = _visitor(body, state.defn.topics)
    except DeskError as exc:
        return _refused(exc)
    refusal = desks.refusal(state)
    if refusal is not None:
        public = desks.public(state)
        extra: dict[str, Any] = {"opens_at": public["opens_at"]}
        if refusal.code == "desk_full":
            extra["estimated_wait"] = public["estimated_wait"]
        return _refused(refusal, **extra)
    token, identity, expires = desks.visitor_token(state, who, speak, read, topic)
    return web.json_response(
        {"token": token, "desk": state.name, "identity": identity, "expires_at": int(expires)},
        headers={"Cache-Control": "no-store"},
    )


def _visitor(body: Any, topics: tuple[str, ...]) -> tuple[str, str, str, str | None]:
    unknown = set(body) - {"name", "speak", "read", "topic"}
    if unknown:
        raise model.bad(f"unknown field(s) {sorted(unknown)[:10]}")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= NAME_MAX:
        raise model.bad(f"name must be 1..{NAME_MAX} characters")
    if _CONTROL.search(name):
        raise model.bad("name must not contain control characters")
    speak = body.get("speak")
    read = body.get("read", speak)
    for field, lang in (("speak", speak), ("read", read)):
        if not isinstance(lang, str) or not auth.valid_language(lang):
            raise model.bad(f"{field} must be a language tag such as en or ko")
    topic = body.get("topic")
    if topic is not None and topic not in topics:
        listed = ", ".join(topics) if topics else "none: this desk has no topics"
        raise model.bad(f"topic must be one of the desk's topics ({listed})")
    return name.strip(), str(speak), str(read), topic


# -- admin -------------------------------------------------------------------------------------


def _admin(request: web.Request) -> tuple[Hub, Desks]:
    """Desks are hub-wide: an admin token for every room (room "*")."""
    hub, _ = authorise(request)
    return hub, request.app[DESKS]


async def list_desks(request: web.Request) -> web.Response:
    _, desks = _admin(request)
    found = await desks.store.list()
    return web.json_response({"desks": [desks.summary(d) for d in found]})


async def create(request: web.Request) -> web.Response:
    hub, desks = _admin(request)
    spec = await json_body(request)
    try:
        d = model.validate(spec, default_max_queue=hub.settings.desk_max_queue)
        made = await desks.create(d)
    except DeskError as exc:
        return _refused(exc)
    return web.json_response(made.wire(), status=201)


async def show_admin(request: web.Request) -> web.Response:
    _, desks = _admin(request)
    name = request.match_info["desk"]
    state = await desks.state(name)
    if state is None:
        return _not_found(name)
    return web.json_response({**desks.summary(state.defn), **desks.admin_view(state)})


async def change(request: web.Request) -> web.Response:
    _, desks = _admin(request)
    name = request.match_info["desk"]
    spec = await json_body(request)
    current = await desks.definition(name)
    if current is None:
        return _not_found(name)
    try:
        d = model.validate(spec, current=current)
    except DeskError as exc:
        return _refused(exc)
    await desks.save(d)
    return web.json_response(d.wire())


async def delete(request: web.Request) -> web.Response:
    _, desks = _admin(request)
    name = request.match_info["desk"]
    if not auth.valid_desk_name(name) or not await desks.delete(name):
        return _not_found(name)
    return web.Response(status=204)


async def agent_token(request: web.Request) -> web.Response:
    """POST /v1/admin/desks/{desk}/agent-token {identity, name?, speak?, read?, languages?,
    ttl?}."""
    hub, desks = _admin(request)
    name = request.match_info["desk"]
    spec = await json_body(request)
    if await desks.definition(name) is None:
        return _not_found(name)
    unknown = set(spec) - {"identity", "name", "speak", "read", "languages", "ttl"}
    if unknown:
        return json_error(400, "invalid_request", f"unknown field(s) {sorted(unknown)[:10]}")
    ttl = spec.get("ttl", AGENT_TOKEN_TTL)
    cap = hub.settings.admin_token_max_ttl
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not 0 < ttl <= cap:
        return json_error(400, "invalid_request", f"ttl must be seconds in (0, {cap:g}]")
    try:
        token = issue_agent(
            hub.secret,
            desk=name,
            identity=spec.get("identity"),
            name=spec.get("name"),
            speak=spec.get("speak", "en"),
            read=spec.get("read"),
            languages=spec.get("languages"),
            ttl=float(ttl),
            issuer=hub.settings.issuer,
        )
    except (TypeError, ValueError) as exc:
        return json_error(400, "invalid_request", str(exc)[:200])
    return web.json_response({"token": token}, status=201)


def setup(app: web.Application, data_dir: Path) -> None:
    hub = app[HUB]
    url = database_url(hub.settings.database_url, data_dir)
    store = DeskStore(url, hub.settings.store_busy_timeout)
    desks = Desks(hub, store, invites=app.get(INVITES))
    app[DESKS] = desks
    app[_LIMITER] = AddressBuckets(PUBLIC_RATE, PUBLIC_BURST)

    # on_startup runs after every cleanup context has started: the hub's store has
    # migrated the database (desks too) by then; on_cleanup after they have closed
    async def started(app: web.Application) -> None:
        await desks.start()

    async def cleanup(app: web.Application) -> None:
        await desks.close()

    async def stopping(app: web.Application) -> None:
        await desks.shutdown()

    app.on_startup.append(started)
    app.on_shutdown.append(stopping)
    app.on_cleanup.append(cleanup)
    app.router.add_get("/v1/desks/{desk}", show)
    app.router.add_post("/v1/desks/{desk}/visit", visit)
    app.router.add_get("/v1/admin/desks", list_desks)
    app.router.add_post("/v1/admin/desks", create)
    app.router.add_get("/v1/admin/desks/{desk}", show_admin)
    app.router.add_patch("/v1/admin/desks/{desk}", change)
    app.router.add_delete("/v1/admin/desks/{desk}", delete)
    app.router.add_post("/v1/admin/desks/{desk}/agent-token", agent_token)
