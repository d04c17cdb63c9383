"""The aiohttp application factory: wires the parts and owns start-up and shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from importlib import resources
from pathlib import Path

from aiohttp import web

from commhub.config import Settings
from commhub.hub import Hub
from commhub.server import admin, health
from commhub.server.keys import HUB
from commhub.server.signal import signal


def web_root() -> Path:
    return Path(str(resources.files("commhub") / "web"))


def create_app(settings: Settings, secret: str) -> web.Application:
    app = web.Application(client_max_size=settings.max_message_bytes)
    hub = Hub(settings, secret)
    app[HUB] = hub
    app.router.add_get("/v1/signal", signal)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_routes(admin.routes)
    root = web_root()
    if (root / "index.html").exists():
        app.router.add_get("/", _index)
        app.router.add_static("/static/", root)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await hub.start()
        yield

    async def on_shutdown(app: web.Application) -> None:
        await hub.shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return app


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_root() / "index.html")
