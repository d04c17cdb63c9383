"""The aiohttp application factory: wires the parts and owns start-up and shutdown."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator
from functools import cache
from importlib import resources
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from commhub.captions.live import LiveCaptions
from commhub.cluster import Cluster, Load, connect
from commhub.config import Settings
from commhub.hub import Hub
from commhub.looplag import LoopLag
from commhub.media import Media
from commhub.moderation import imagery
from commhub.moderation.text import text_moderation
from commhub.server import (
    admin,
    desks_api,
    forward,
    health,
    invites,
    languages,
    moderation_api,
    pages,
    reports_api,
    store_api,
    transcript_api,
)
from commhub.server.keys import ADMISSION, CAPTIONS, HUB, MEDIA
from commhub.server.limits import Admission, SharedAdmission
from commhub.server.signal import signal
from commhub.speech import SpeechModels
from commhub.store import Store, default_url
from commhub.translate import TranslationService, build_engines
from commhub.translate.cache import SharedCache

log = logging.getLogger("commhub.app")


def web_root() -> Path:
    return Path(str(resources.files("commhub") / "web"))


@cache
def shared_models(models_dir: Path, engines: tuple[tuple[str, str], ...]) -> SpeechModels:
    """One registry per process: a model loads once and every room (and app) shares it."""
    return SpeechModels(models_dir, dict(engines))


def create_app(settings: Settings, secret: str) -> web.Application:
    app = web.Application(client_max_size=settings.max_message_bytes)
    # Each part gets what it uses: media the settings, the room registry and the hub's
    # delivery (it is told of joins and leaves by the hub through its MediaPort);
    # captions also the audio taps and the metrics registry. No part holds the hub.
    hub = Hub(settings, secret)
    media = Media(settings, hub.rooms, outbox=hub)
    hub.media = media
    if settings.store:  # started (migrated, off the loop) and closed by the hub
        hub.store = Store(
            settings.database_url or default_url(settings.data_dir),
            queue=settings.store_queue,
            batch=settings.store_batch,
            busy_timeout=settings.store_busy_timeout,
            registry=hub.registry,
        )
    app[HUB] = hub
    app[MEDIA] = media
    app[ADMISSION] = Admission(
        settings.max_connections_per_ip,
        settings.max_connections_per_identity,
        settings.join_rate,
        settings.join_burst,
    )
    if settings.captions:
        models = shared_models(settings.models_dir, tuple(sorted(settings.speech_engines.items())))
        app[CAPTIONS] = LiveCaptions(
            settings, models, rooms=hub.rooms, audio=media, outbox=hub, registry=hub.registry
        )
    frames = imagery.setup(app, settings, media, hub.rooms, hub, hub.registry)
    if settings.redis_url:
        forward.setup(app)
    app.router.add_get("/v1/signal", signal)
    app.router.add_get("/healthz", health.healthz)
    app.router.add_get("/readyz", health.readyz)
    app.router.add_get("/metrics", health.metrics)
    app.router.add_routes(admin.routes)
    invites.setup(app, settings.data_dir)
    reports_api.setup(app, hub, media, frames.evidence_frames if frames else None)
    desks_api.setup(app, settings.data_dir)
    languages.setup(app)
    store_api.setup(app)
    transcript_api.setup(app)
    moderation_api.setup(app)
    root = web_root()
    if (root / "index.html").exists():
        app.router.add_get("/", _index)
        app.router.add_static("/static/", root)
        pages.setup(app, root)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if settings.redis_url:  # ClusterError when unreachable: `serve` says so and exits
            hub.cluster = await join_cluster(settings, hub, app.get(CAPTIONS))
        if settings.translation:
            hub.translator = await asyncio.to_thread(translation_service, settings, hub.registry)
        shared = share_through_redis(settings, hub, app[ADMISSION])
        if shared is not None:
            shared.start()
        if settings.moderation:  # engines load in a worker thread, once per process
            hub.moderation = await text_moderation(settings, hub)
        await hub.start()
        lag = LoopLag(hub.registry)
        lag.start()
        captions = app.get(CAPTIONS)
        if captions is not None:
            captions.moderation = hub.moderation
            captions.start()
        yield
        await lag.stop()
        if captions is not None:
            await captions.close()
        if isinstance(hub.translator, TranslationService):
            await hub.translator.aclose()
        if shared is not None:
            await shared.close()
        await hub.close_store()

    async def on_shutdown(app: web.Application) -> None:
        await hub.shutdown()

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(on_shutdown)
    return app


async def join_cluster(settings: Settings, hub: Hub, captions: LiveCaptions | None) -> Cluster:
    def load() -> Load:
        streams = captions.streams if captions is not None else 0
        return Load(hub.rooms.participant_count(), len(hub.rooms), streams)

    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return Cluster(
        await connect(settings.redis_url),
        node_id=settings.node_id or f"{socket.gethostname()[:40]}-{settings.port}",
        url=settings.node_url or f"http://{host}:{settings.port}",
        prefix=settings.redis_prefix,
        ttl=settings.lease_ttl,
        load=load,
    )


def share_through_redis(
    settings: Settings, hub: Hub, admission: Admission
) -> SharedAdmission | None:
    """With several nodes: the translation cache (a setting) and the per-address limits
    live in Redis too, so every node sees every node's."""
    if hub.cluster is None:
        return None
    redis, prefix = hub.cluster.redis, settings.redis_prefix
    if settings.translate_cache_shared and isinstance(hub.translator, TranslationService):
        hub.translator.shared = SharedCache(redis, prefix)
    admission.shared = SharedAdmission(
        redis, prefix, hub.cluster.id, settings.max_connections_per_ip, settings.join_rate,
        settings.join_burst, ttl=settings.lease_ttl,
    )  # fmt: skip
    return admission.shared


def translation_service(settings: Settings, registry: CollectorRegistry) -> TranslationService:
    """Engines found on disk (Argos packages, Apertium pairs); scans run off the loop."""
    service = TranslationService(
        build_engines(settings.models_dir),
        cache_size=settings.translate_cache,
        max_chars=settings.translate_max_chars,
        timeout=settings.translate_timeout,
        queue=settings.translate_queue,
        registry=registry,
        preferences=settings.translate_engines,
    )
    log.info("translation pairs: %s", service.describe() or "none installed")
    return service


async def _index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(web_root() / "index.html")
