"""Shared fixtures: a real hub on an ephemeral loopback port, tokens, clients."""

from __future__ import annotations

import asyncio
import logging
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from commhub import auth
from commhub.app import create_app
from commhub.config import Settings
from commhub.hub import Hub
from commhub.sdk import RoomClient, signal
from commhub.server.keys import HUB
from commhub.speech import SpeechModel, SpeechModels
from tests.helpers.media import census
from tests.helpers.services import PostgresServer, RedisServer
from tests.wsclient import SignalClient

SECRET = "test-secret-" + "x" * 40
signal.CHECK_DEFAULT = True  # every SDK client in the suite checks what the hub sends it


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`commhub ARGS` in a fresh interpreter, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "commhub.cli", *args],
        input=stdin, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # every message a test hub sends is checked against its schema (tests/hubproc.py too);
    # imagery (on by default) is off unless a test asks: loading its detector costs every hub
    # a second, and with it on `auto` rooms never go p2p (tests/test_config.py checks both);
    # warm spares too (seconds of CPU each, tests/test_warmup.py turns them on)
    return Settings.load(
        {"data_dir": tmp_path / "data", "secret": SECRET, "check_outgoing": True, "imagery": False,
         "caption_warm_recognizers": 0},
        env={},
    )  # fmt: skip


class _Violations(logging.Handler):
    def __init__(self, only_flagged: bool = False) -> None:
        super().__init__(logging.ERROR)
        self.only_flagged = only_flagged
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not self.only_flagged or getattr(record, "schema_violation", False):
            self.seen.append(record.getMessage())


@pytest.fixture(autouse=True)
def outgoing_checked() -> Iterator[None]:
    """Fail the test when an in-process hub sent a message that breaks its schema (the hub
    raises OutgoingViolation where it happened; this catches it even when that was inside
    a task or turned into an internal_error)."""
    handler = _Violations()
    logger = logging.getLogger("commhub.protocol")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.seen, f"the hub sent messages that break their schema: {handler.seen}"


@pytest.fixture(autouse=True)
def incoming_checked() -> Iterator[_Violations]:
    """Fail the test when a client channel (test client or SDK) received a message that
    breaks its schema, even if the test never looked at that channel again. A test that
    provokes violations on purpose clears `.seen` once it has checked them."""
    handler = _Violations(only_flagged=True)
    logger = logging.getLogger("commhub.sdk.signal")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
    assert not handler.seen, f"a client received messages that break their schema: {handler.seen}"


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

    async def start(port: int = 0, **changes: Any) -> Running:
        app = create_app(settings.replace(**changes), SECRET)
        server = TestServer(app, host="127.0.0.1", port=port or None)
        await server.start_server()
        running = Running(server)
        started.append(running)
        return running

    yield start
    for running in started:
        for c in running.clients:
            await c.close(quiet=True)  # incoming_checked reports any violation
        await running.server.close()


@pytest.fixture
async def room_clients() -> AsyncIterator[list[RoomClient]]:
    """SDK clients a test makes, closed after it."""
    made: list[RoomClient] = []
    yield made
    for c in made:
        await c.close()


@pytest.fixture
async def hub(start_hub: StartHub) -> Running:
    return await start_hub()


class LoopWatch(logging.Handler):
    """Catches event-loop callbacks that ran too long: a blocking call inside a coroutine.

    Uses asyncio's own slow-callback detection (debug mode), which times each callback,
    so a loop that is merely starved of CPU by busy threads on a loaded machine does not
    count, but a model load or a recognizer call made on the loop does.
    """

    def __init__(self, limit: float) -> None:
        super().__init__(logging.WARNING)
        self.slow: list[str] = []
        self.loop = asyncio.get_running_loop()
        self.was_debug = self.loop.get_debug()
        self.loop.set_debug(True)
        self.loop.slow_callback_duration = limit
        logging.getLogger("asyncio").addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if "took" in record.getMessage():
            self.slow.append(record.getMessage())

    def stop(self) -> list[str]:
        logging.getLogger("asyncio").removeHandler(self)
        self.loop.set_debug(self.was_debug)
        return self.slow


LOOP_BLOCK_LIMIT = 1.0  # seconds; a model load (~2 s) on the loop exceeds it, even on a busy CI


@pytest.fixture
async def loop_watch() -> AsyncIterator[LoopWatch]:
    """Fail the test if a callback blocked the event loop for longer than the limit."""
    watch = LoopWatch(LOOP_BLOCK_LIMIT)
    yield watch
    slow = watch.stop()
    assert not slow, f"the event loop was blocked: {slow}"


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> SpeechModels:
    return SpeechModels(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def ko(models: SpeechModels) -> SpeechModel:
    return models.get("ko")


@pytest.fixture(scope="session")
def en(models: SpeechModels) -> SpeechModel:
    return models.get("en")


@pytest.fixture
async def no_leaks() -> AsyncIterator[None]:
    """Fail the test when peer connections, tasks or decoder threads outlive it."""
    before = census()
    tasks_before = asyncio.all_tasks()
    yield
    for _ in range(150):  # closing transports settle over loop turns (slower when busy)
        now = census()
        if all(now[k] <= before[k] for k in now):
            return
        await asyncio.sleep(0.1)
    left = sorted(f"{t.get_name()} {t.get_coro()!r}" for t in asyncio.all_tasks() - tasks_before)
    pytest.fail(f"leaked: before {before}, after {census()}; tasks: {left}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A client session for plain HTTP calls to a hub (admin API, invites, metrics)."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A real redis-server on a loopback port, killed after the test."""
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (scripts/test installs it)")
    server = RedisServer(tmp_path / "redis")
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL cluster on a loopback port, for the whole session (initdb is slow);
    a test that stops it starts it again (tests/test_store_pg.py)."""
    if not PostgresServer.available():
        pytest.skip("PostgreSQL is not installed (scripts/test installs `postgresql`)")
    server = PostgresServer()
    server.setup()
    try:
        yield server
    finally:
        server.teardown()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh, empty database on the session's PostgreSQL, dropped after the test."""
    import asyncpg  # only the PostgreSQL tests need the driver loaded

    if not postgres_server.running:  # a test that stopped it failed before starting it again
        await postgres_server.start()
    name = "t_" + secrets.token_hex(6)
    admin = {"host": "127.0.0.1", "port": postgres_server.port, "user": PostgresServer.USER,
             "database": "postgres"}  # fmt: skip
    conn = await asyncpg.connect(**admin)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    yield postgres_server.url_of(name)
    if not postgres_server.running:
        await postgres_server.start()
    conn = await asyncpg.connect(**admin)
    try:  # FORCE: a hub or store a failed test left open must not keep it
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
