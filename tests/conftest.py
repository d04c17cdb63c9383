"""Shared fixtures: a real hub on an ephemeral loopback port, tokens, clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer

from commhub import auth
from commhub.app import create_app
from commhub.config import Settings
from commhub.hub import Hub
from commhub.server.keys import HUB
from tests.wsclient import SignalClient

SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load({"data_dir": tmp_path / "data", "secret": SECRET}, env={})


class Running:
    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.url = str(server.make_url("")).rstrip("/")
        self.hub: Hub = server.app[HUB]
        self.clients: list[SignalClient] = []

    def token(self, room: str = "lobby", identity: str = "alice", **kw: Any) -> str:
        return auth.issue(SECRET, room=room, identity=identity, **kw)

    async def client(self, room: str = "lobby", identity: str = "alice", **kw: Any) -> SignalClient:
        c = await SignalClient.connect(self.url, self.token(room, identity, **kw))
        self.clients.append(c)
        return c

    async def joined(self, room: str = "lobby", identity: str = "alice", **kw: Any) -> SignalClient:
        join = {k: kw.pop(k) for k in ("name",) if k in kw}
        c = await self.client(room, identity, **kw)
        await c.join(**join)
        return c


StartHub = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_hub(settings: Settings) -> AsyncIterator[StartHub]:
    started: list[Running] = []

    async def start(**changes: Any) -> Running:
        server = TestServer(create_app(settings.replace(**changes), SECRET), host="127.0.0.1")
        await server.start_server()
        running = Running(server)
        started.append(running)
        return running

    yield start
    for running in started:
        for c in running.clients:
            await c.close()
        await running.server.close()


@pytest.fixture
async def hub(start_hub: StartHub) -> Running:
    return await start_hub()


class LoopWatch:
    """Measures how late the event loop wakes a 20 ms sleeper: a blocking call shows up."""

    def __init__(self) -> None:
        self.worst = 0.0
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(0.02)
            self.worst = max(self.worst, loop.time() - start - 0.02)

    async def stop(self) -> float:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        return self.worst


LOOP_BLOCK_LIMIT = 0.5  # seconds; model loads (~2 s) or recognition on the loop exceed it


@pytest.fixture
async def loop_watch() -> AsyncIterator[LoopWatch]:
    """Fail the test if anything blocked the event loop for longer than the limit."""
    watch = LoopWatch()
    yield watch
    worst = await watch.stop()
    assert worst < LOOP_BLOCK_LIMIT, f"the event loop was blocked for {worst:.2f} s"
