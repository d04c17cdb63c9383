"""This node in a cluster: its heartbeat in the registry, the leases it holds, and where a
room (or desk) runs. Every room has one owner; a node asked for a room it does not own
sends the client there (README, "Several nodes")."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import psutil
from redis.asyncio import Redis
from redis.exceptions import RedisError

from commhub.cluster.leases import Leases
from commhub.cluster.nodes import Node, Registry

log = logging.getLogger("commhub.cluster")

_UNREACHABLE = (RedisError, OSError)


class Unroutable(Exception):
    """Redis cannot say where a room runs, and it does not run here."""


@dataclass(frozen=True)
class Route:
    local: bool
    url: str = ""  # the owner's base URL when not local


HERE = Route(local=True)


@dataclass
class Load:
    participants: int = 0
    rooms: int = 0
    recognizers: int = 0


class Cluster:
    """`held` providers name what runs here (rooms, desks): their leases are renewed;
    `on_lost` is told of each one another node took (after Redis lost this node's lease)."""

    def __init__(
        self,
        redis: Redis,
        *,
        node_id: str,
        url: str,
        prefix: str = "commhub",
        ttl: float = 10.0,
        load: Callable[[], Load] = Load,
    ) -> None:
        self.redis = redis
        self.node = Node(node_id, url)
        self.registry = Registry(redis, prefix, ttl)
        self.leases = Leases(redis, prefix, ttl)
        self.ttl = ttl
        self.load = load
        self.held: list[Callable[[], Iterable[str]]] = []
        self.on_lost: Callable[[str, str], Awaitable[None]] | None = None
        self.reachable = True
        self._claimed: dict[str, float] = {}  # leases taken for arrivals not yet joined
        self._placed: dict[str, list[float]] = {}  # node id -> times this node placed there
        self._task: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self._process.cpu_percent(None)

    @property
    def id(self) -> str:
        return self.node.id

    @property
    def draining(self) -> bool:
        return self.node.draining

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self._beat()  # raises when Redis is unreachable: the caller says so and exits
        log.info("node %s (%s) joined the cluster", self.id, self.node.url)
        self._task = asyncio.create_task(self._loop(), name="commhub-cluster-heartbeat")

    async def close(self) -> None:
        """Leave the registry and give up every lease still held (they would otherwise
        keep their rooms away from the other nodes for a TTL)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(*_UNREACHABLE):
            for name in self.names():
                await self.leases.move(name, self.id, None)
            await self.registry.remove(self.id)
        await self.redis.aclose()

    async def drain(self) -> None:
        """No new room lands here from now on (the registry says so at once)."""
        self.node.draining = True
        with contextlib.suppress(*_UNREACHABLE):
            await self._beat()

    # -- routing ---------------------------------------------------------------------------

    async def route(self, name: str) -> Route:
        """Where `name` runs: here, or the owner's URL. A room nobody holds is placed on
        the least-loaded node; a dead owner's lease is taken over at once."""
        try:
            return await self._route(name)
        except _UNREACHABLE as exc:
            if name in self.names():
                return HERE  # it runs here: Redis being away changes nothing for it
            raise Unroutable(f"the cluster's Redis is unreachable: {exc}") from None

    async def _route(self, name: str) -> Route:
        owner = await self.leases.owner(name)
        if owner == self.id:
            return HERE
        if owner is not None:
            node = await self.registry.get(owner)
            if node is not None:
                return Route(local=False, url=node.url)
        target = await self._place()
        if owner is None:
            owner = await self.leases.claim(name, target.id)
        elif await self.leases.move(name, owner, target.id):
            log.info("room %s: node %s is gone; placed on %s", name, owner, target.id)
            owner = target.id
        else:
            owner = await self.leases.owner(name) or target.id
        if owner == self.id:
            self._claimed[name] = time.monotonic()
            return HERE
        node = target if owner == target.id else await self.registry.get(owner)
        if node is None:
            return await self._route(name)  # its owner vanished meanwhile: again
        return Route(local=False, url=node.url)

    async def claim_here(self, name: str) -> bool:
        """Take `name` for this node if nobody holds it (a desk's call room goes where the
        desk runs); False when another node holds it."""
        try:
            owner = await self.leases.claim(name, self.id)
        except _UNREACHABLE:
            return False
        if owner == self.id:
            self._claimed[name] = time.monotonic()
        return owner == self.id

    async def _place(self) -> Node:
        """The least-loaded live node that takes rooms (this one when no other does). Rooms
        this node placed since the target's last heartbeat count too: many rooms starting at
        once spread instead of all landing on the node that looked idlest."""
        live = await self.registry.live()
        if all(n.id != self.id for n in live):  # Redis came back empty: register first, so
            await self.registry.beat(self._measure())  # a room placed here is seen as alive
            live.append(self.node)
        nodes = [n for n in live if not n.draining] or [self._measure()]
        now, fresh = time.monotonic(), self.ttl * 2 / 3  # until the next heartbeat shows it

        def score(n: Node) -> float:
            recent = [t for t in self._placed.get(n.id, []) if now - t < fresh]
            self._placed[n.id] = recent
            return n.load() + len(recent) + random.random() * 0.1

        target = min(nodes, key=score)
        # counted before any await: placements running at once see each other's choices
        self._placed.setdefault(target.id, []).append(now)
        return target

    async def handover(self, name: str) -> str | None:
        """Give `name` to the least-loaded other node; its URL, or None when there is none."""
        try:
            others = [n for n in await self.registry.live() if n.id != self.id and not n.draining]
            if not others:
                return None
            target = min(others, key=Node.load)
            self._claimed.pop(name, None)
            if await self.leases.move(name, self.id, target.id):
                return target.url
        except _UNREACHABLE:
            log.warning("room %s: Redis unreachable, not handed over", name)
        return None

    async def release(self, name: str) -> None:
        """The room ended here: its lease goes at once."""
        self._claimed.pop(name, None)
        with contextlib.suppress(*_UNREACHABLE):
            await self.leases.move(name, self.id, None)

    async def nodes(self) -> list[Node]:
        return await self.registry.live()

    # -- heartbeat -------------------------------------------------------------------------

    def names(self) -> set[str]:
        cutoff = time.monotonic() - self.ttl
        self._claimed = {k: t for k, t in self._claimed.items() if t > cutoff}
        names = set(self._claimed)
        for held in self.held:
            names.update(held())
        return names

    def _measure(self) -> Node:
        load = self.load()
        self.node.participants = load.participants
        self.node.rooms = load.rooms
        self.node.recognizers = load.recognizers
        self.node.cpu = round(self._process.cpu_percent(None) / 100, 3)
        return self.node

    async def _beat(self) -> None:
        await self.registry.beat(self._measure())
        lost = await self.leases.renew(sorted(self.names()), self.id)
        for name in lost:
            self._claimed.pop(name, None)
            owner = await self.leases.owner(name)
            node = await self.registry.get(owner) if owner else None
            log.warning("room %s: lease now held by %s", name, owner)
            if self.on_lost is not None:
                await self.on_lost(name, node.url if node else "")

    async def _loop(self) -> None:
        period = self.ttl / 3
        delay = period
        while True:
            await asyncio.sleep(delay)
            try:
                await self._beat()
            except _UNREACHABLE as exc:
                if self.reachable:
                    log.warning("Redis unreachable (%s); rooms here go on, retrying", exc)
                self.reachable = False
                delay = min(period, 0.5)  # re-register and re-assert leases soon after it is back
                continue
            except Exception:  # a bug must not stop the heartbeat: the leases would lapse
                log.exception("cluster heartbeat failed")
                continue
            if not self.reachable:
                log.info("Redis reachable again; node %s re-registered", self.id)
            self.reachable = True
            delay = period
