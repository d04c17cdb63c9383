"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from commhub.server.keys import HUB


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    if hub.closing:
        return web.json_response({"status": "shutting_down"}, status=503)
    body = {
        "status": "ready",
        "rooms": len(hub.rooms),
        "participants": hub.rooms.participant_count(),
    }
    if hub.cluster is not None:
        c = hub.cluster
        body["cluster"] = {"node": c.id, "redis": "ok" if c.reachable else "unreachable"}
        if c.draining:  # a load balancer sends new clients elsewhere
            body["status"] = "draining"
            return web.json_response(body, status=503)
    if hub.store is not None:
        ok, detail = hub.store.status()
        body["store"] = detail
        if not ok:  # chat cannot be acknowledged: send people elsewhere until it can
            body["status"] = "store_unavailable"
            return web.json_response(body, status=503)
    return web.json_response(body)


async def metrics(request: web.Request) -> web.Response:
    hub = request.app[HUB]
    hub.metrics.asyncio_tasks.set(len(asyncio.all_tasks()))
    body = generate_latest(hub.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
