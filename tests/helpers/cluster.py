"""Several hub processes sharing a real redis-server (and one store): the cluster as an
operator runs it, on loopback, for tests and the cluster benchmark.

Every node is `python -m commhub.cli serve` (tests/helpers/hubproc.py) on a port picked up
front, so its advertised URL (COMMHUB_NODE_URL) is known before it starts. The nodes share
the signing secret, the Redis URL and the store (`database_url`: PostgreSQL, or one SQLite
file all nodes open, the default until a PostgreSQL server is given).

`Member` is a participant written from signalling/PROTOCOL.md ("Several nodes"): it enters
through its entry URL, follows `redirect` at once (at most three in a row), and after any
other drop reconnects with backoff through the entry URL again. Every message it receives,
on every socket it had, lands in one `inbox`, so a test can check a chat id arrived exactly
once across reconnections.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from commhub import auth
from commhub.sdk.signal import ChannelClosed, Refused
from tests.helpers.hubproc import HubProcess, free_port
from tests.helpers.services import RedisServer
from tests.wsclient import SignalClient

SECRET = "cluster-secret-" + "c" * 40  # the same on every node (32+ characters)
PREFIX = "commhub"

# What the cluster tests do not need: no models loaded, no captions, no translation, no
# imagery, so three nodes start in seconds on a loaded machine.
QUIET = {
    "COMMHUB_CAPTIONS": "false",
    "COMMHUB_CAPTION_PRELOAD": "[]",
    "COMMHUB_TRANSLATION": "false",
    "COMMHUB_IMAGERY": "false",
    "COMMHUB_MODERATION": "false",
    "COMMHUB_LOG_LEVEL": "info",
}


@dataclass
class Node:
    index: int
    node_id: str
    port: int
    proc: HubProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        p = self.proc.proc
        return p is not None and p.returncode is None


class Cluster:
    """`nodes` hub processes on one redis-server (`redis=False`: no Redis, each node alone).
    `env`: COMMHUB_* settings for every node, over the quiet defaults."""

    def __init__(
        self,
        folder: Path,
        nodes: int = 3,
        *,
        redis: bool = True,
        database_url: str | None = None,
        lease_ttl: float = 3.0,
        drain_timeout: float = 2.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.folder = folder
        self.redis: RedisServer | None = RedisServer(folder / "redis") if redis else None
        # one store for all nodes, so the history survives a room's move to another node
        # (None: one SQLite file they all open; "": each node its own, in its data dir)
        if database_url is None:
            database_url = f"sqlite+aiosqlite:///{(folder / 'store.db').resolve()}"
        self.database_url = database_url
        self.lease_ttl = lease_ttl
        self.drain_timeout = drain_timeout
        self.extra = dict(env or {})
        self.nodes: list[Node] = []
        for i in range(nodes):
            port = free_port()
            node_id = f"node{i}"
            self.nodes.append(Node(i, node_id, port, HubProcess(folder / node_id, port)))

    def node_env(self, node: Node) -> dict[str, str]:
        env = {**QUIET, "COMMHUB_SECRET": SECRET, "COMMHUB_SHUTDOWN_TIMEOUT": "5"}
        if self.database_url:
            env["COMMHUB_DATABASE_URL"] = self.database_url
        if self.redis is not None:
            env |= {
                "COMMHUB_REDIS_URL": self.redis.url,
                "COMMHUB_REDIS_PREFIX": PREFIX,
                "COMMHUB_NODE_ID": node.node_id,
                "COMMHUB_NODE_URL": node.url,
                "COMMHUB_LEASE_TTL": f"{self.lease_ttl:g}",
                "COMMHUB_DRAIN_TIMEOUT": f"{self.drain_timeout:g}",
            }
        return env | self.extra

    async def start(self, timeout: float = 120.0) -> None:
        if self.redis is not None:
            await self.redis.start()
        # started one after the other: the first one runs the store's migrations alone
        for node in self.nodes:
            await self.start_node(node, timeout)

    async def start_node(self, node: Node, timeout: float = 120.0) -> None:
        proc = HubProcess(node.proc.data_dir, node.port, self.node_env(node))
        proc.lines = node.proc.lines  # one record across restarts
        node.proc = proc
        await proc.start(timeout)

    async def stop_node(self, node: Node, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        return await node.proc.stop(sig, timeout)

    async def close(self) -> None:
        for node in self.nodes:
            await node.proc.close()
        if self.redis is not None:
            await self.redis.stop()

    def node_at(self, url: str) -> Node:
        return next(n for n in self.nodes if n.url == url.rstrip("/"))

    def token(self, room: str, identity: str, **claims: Any) -> str:
        return auth.issue(SECRET, room=room, identity=identity, **claims)

    def admin_headers(self) -> dict[str, str]:
        token = auth.issue(SECRET, room="*", identity="ops", grants=["admin"])
        return {"Authorization": f"Bearer {token}"}

    def logs(self) -> str:
        """Every node's log, for an assertion message."""
        return "\n".join(f"--- {n.node_id}\n{n.proc.log()[-3000:]}" for n in self.nodes)

    async def owner(self, room: str) -> str | None:
        """The node id holding the room's lease in Redis (None: no lease)."""
        assert self.redis is not None
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(self.redis.url, decode_responses=True)
        try:
            value = await client.get(f"{PREFIX}:lease:{room}")
        finally:
            await client.aclose()
        return None if value is None else str(value)


class Gone(Exception):
    """A member could not get into its room within its deadline."""


@dataclass
class Member:
    """A participant that follows redirects and reconnects, as PROTOCOL.md says a client does.

    `entries`: the entry URLs, tried in turn when one refuses connections (what a load
    balancer in front of the nodes does); the first is the member's own entry."""

    entries: Sequence[str]
    token: str
    name: str = ""
    inbox: list[dict[str, Any]] = field(default_factory=list)
    channel: SignalClient | None = None
    node_url: str = ""  # where it is joined now
    joins: list[str] = field(default_factory=list)  # node URL of every join, in order
    redirects: list[dict[str, Any]] = field(default_factory=list)
    max_redirects: int = 3
    _task: asyncio.Task[None] | None = None
    _stop: bool = False
    _since: int = 0  # where the current socket's messages start in `inbox`

    async def enter(self, url: str | None = None, timeout: float = 60.0) -> None:
        """Connect (through the entry, or `url`) and join, following redirects, retrying with
        backoff; returns once joined."""
        async with asyncio.timeout(timeout):
            await self._enter(url)

    async def _enter(self, first: str | None) -> None:
        backoff = 0.2
        attempt = 0
        target = first
        in_a_row = 0
        while True:
            url = target or self.entries[attempt % len(self.entries)]
            target = None
            try:
                kind = await self._try(url)
            except (aiohttp.ClientConnectionError, ChannelClosed, Refused, OSError) as exc:
                if isinstance(exc, Refused) and not exc.retryable:
                    raise
                kind = "failed"
            if kind == "joined":
                return
            if kind == "redirect" and in_a_row < self.max_redirects:
                in_a_row += 1
                target = self.redirects[-1]["url"]  # at once, not counted as a failure
                continue
            in_a_row = 0
            attempt += 1
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, 2.0)

    async def _try(self, url: str) -> str:
        channel = await SignalClient.connect(url, self.token, inbox=self.inbox)
        try:
            with contextlib.suppress(ChannelClosed):  # a redirect may have closed it already
                await channel.send({"type": "join", **({"name": self.name} if self.name else {})})
            first = await channel.expect(None, timeout=30.0)
            while first["type"] not in ("joined", "redirect", "error", "bye"):
                first = await channel.expect(None, timeout=30.0)
        except BaseException:
            await channel.close(quiet=True)
            raise
        if first["type"] == "joined":
            self.channel = channel
            self._since = len(self.inbox)
            channel.joined = first
            self.node_url = url.rstrip("/")
            self.joins.append(self.node_url)
            return "joined"
        await channel.close(quiet=True)
        if first["type"] == "redirect":
            self.redirects.append(first)
            return "redirect"
        return "failed"

    def keep_connected(self) -> None:
        """From now on, rejoin by itself after a redirect or a drop (a task)."""
        self._task = asyncio.create_task(self._supervise(), name=f"member-{self.name}")

    async def _supervise(self) -> None:
        while not self._stop:
            channel = self.channel
            assert channel is not None
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(channel.reader)
            if self._stop:
                return
            # the socket ended: a redirect on it (drain, moved) is followed at once, any
            # other end goes back through the entry with backoff
            redirect = next(
                (m for m in reversed(self.inbox[self._since :]) if m["type"] == "redirect"), None
            )
            moved_to = None
            if redirect is not None:
                self.redirects.append(redirect)
                moved_to = str(redirect["url"])
            await channel.close(quiet=True)
            with contextlib.suppress(Exception):
                await self._enter(moved_to)

    @property
    def pid(self) -> str:
        assert self.channel is not None
        return self.channel.pid

    async def chat(self, text: str, timeout: float = 30.0) -> dict[str, Any]:
        """Send a chat message and wait for its echo (the hub echoes it once stored)."""
        assert self.channel is not None
        return await self.channel.request({"type": "chat", "text": text}, timeout=timeout)

    def chats(self) -> list[dict[str, Any]]:
        """Chat events received live, on every socket (not the history in `joined`)."""
        return [m for m in self.inbox if m["type"] == "chat"]

    def history(self) -> list[dict[str, Any]]:
        """The chat history of the latest `joined`."""
        joined = [m for m in self.inbox if m["type"] == "joined"]
        return list(joined[-1]["chat"]) if joined else []

    async def close(self) -> None:
        self._stop = True
        if self.channel is not None:
            await self.channel.close(quiet=True)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
