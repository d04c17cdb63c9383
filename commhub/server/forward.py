"""With several nodes, the HTTP API answers the same on every node: a request about one
room's (or desk's) live state is forwarded to the node that runs it, and the room and desk
lists gather every node's. Stored things (reports, bans, transcripts) need neither: the
database is shared."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from redis.exceptions import RedisError

from commhub.cluster import Cluster, Node
from commhub.server.keys import HUB

log = logging.getLogger("commhub.forward")

FORWARDED = "X-Commhub-Forwarded"  # set on a forwarded request: answered where it lands
_TIMEOUT = aiohttp.ClientTimeout(total=10)
_HEADERS = ("Authorization", "Content-Type", "Accept")
_KEPT = ("Content-Type", "Retry-After", "Cache-Control")

# a path about one room's or desk's live state -> the lease it belongs to
_OWNED = (
    (re.compile(r"/v1/admin/rooms/([^/]+)(?:/.*)?"), ""),
    (re.compile(r"/v1/rooms/([^/]+)/(?:wordlist|policy|bans)"), ""),
    (re.compile(r"/v1/desks/([^/]+)(?:/visit)?"), "desk."),
    (re.compile(r"/v1/admin/desks/([^/]+)(?:/.*)?"), "desk."),
)
# lists that gather every node's entries: path -> (the list's field, the lease of an entry)
_GATHERED = {"/v1/admin/rooms": ("rooms", ""), "/v1/admin/desks": ("desks", "desk.")}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
SESSION = web.AppKey("forward_session", aiohttp.ClientSession)


def lease_of(path: str) -> str | None:
    for pattern, prefix in _OWNED:
        m = pattern.fullmatch(path)
        if m:
            return prefix + m.group(1)
    return None


@web.middleware
async def forwarding(request: web.Request, handler: Handler) -> web.StreamResponse:
    cluster = request.app[HUB].cluster
    if cluster is None or FORWARDED in request.headers:
        return await handler(request)
    try:
        if request.method == "GET" and request.path in _GATHERED:
            return await _gather(request, handler, cluster)
        name = lease_of(request.path)
        owner = await cluster.leases.owner(name) if name else None
        node = await cluster.registry.get(owner) if owner and owner != cluster.id else None
    except (RedisError, OSError):
        return await handler(request)  # Redis away: this node answers for what it knows
    if node is None:
        return await handler(request)
    return await _forward(request, node)


async def _forward(request: web.Request, node: Node) -> web.StreamResponse:
    headers = {h: request.headers[h] for h in _HEADERS if h in request.headers}
    headers[FORWARDED] = request.app[HUB].cluster.id  # type: ignore[union-attr]
    body = await request.read()
    try:
        async with request.app[SESSION].request(
            request.method, node.url + str(request.rel_url), data=body, headers=headers
        ) as resp:
            payload = await resp.read()
            return web.Response(
                status=resp.status,
                body=payload,
                headers={k: v for k, v in resp.headers.items() if k in _KEPT},
            )
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.warning("forwarding %s %s to %s failed: %s", request.method, request.path, node.id, exc)
        return web.json_response(
            {"error": "node_unavailable", "message": f"the node running it did not answer: {exc}"},
            status=502,
        )


async def _gather(request: web.Request, handler: Handler, cluster: Cluster) -> web.StreamResponse:
    """This node's answer, plus every other live node's entries; an entry of a room or desk
    comes from the node holding its lease, with `node` saying which."""
    local = await handler(request)
    if not isinstance(local, web.Response) or local.status != 200 or local.body is None:
        return local
    field, prefix = _GATHERED[request.path]
    nodes = [n for n in await cluster.nodes() if n.id != cluster.id]
    owners = await cluster.leases.all()
    answers = await asyncio.gather(*(_list(request, n, field) for n in nodes))
    mine: list[dict[str, Any]] = _json(local)[field]
    by_node = {cluster.id: mine, **{n.id: a for n, a in zip(nodes, answers, strict=True)}}
    merged: dict[str, dict[str, Any]] = {}
    for node_id, entries in by_node.items():
        for entry in entries:
            key = entry.get("name")
            owner = owners.get(prefix + str(key))
            if key not in merged or owner == node_id:
                merged[str(key)] = {**entry, "node": owner or node_id}
    body = {**_json(local), field: sorted(merged.values(), key=lambda e: str(e.get("name")))}
    return web.json_response(body, status=200)


async def _list(request: web.Request, node: Node, field: str) -> list[dict[str, Any]]:
    headers = {h: request.headers[h] for h in _HEADERS if h in request.headers}
    headers[FORWARDED] = "gather"
    try:
        async with request.app[SESSION].get(
            node.url + str(request.rel_url), headers=headers
        ) as resp:
            if resp.status != 200:
                return []
            found = (await resp.json()).get(field, [])
            return [e for e in found if isinstance(e, dict)]
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        log.warning("node %s did not list its %s: %s", node.id, field, exc)
        return []


def _json(resp: web.Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resp.body)  # type: ignore[arg-type]
    return data


def setup(app: web.Application) -> None:
    app.middlewares.append(forwarding)

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession(timeout=_TIMEOUT)
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)
