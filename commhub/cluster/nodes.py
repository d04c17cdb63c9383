"""The node registry: each node's record (URL, load, draining) lives as long as its heartbeat."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from redis.asyncio import Redis


@dataclass
class Node:
    id: str
    url: str
    participants: int = 0
    rooms: int = 0
    recognizers: int = 0  # open caption streams: the costly part of a room
    cpu: float = 0.0  # the process's CPU use, in cores, over the last heartbeat
    draining: bool = False
    started: float = field(default_factory=time.time)

    def load(self) -> float:
        """How busy the node is, in participants: a caption stream weighs eight (a core
        serves ~4-8 open-vocabulary speakers), a room one; CPU (noisy: other processes, model
        loads) only breaks near-ties."""
        return self.participants + 8 * self.recognizers + self.rooms + 2 * self.cpu

    def dumps(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def loads(cls, raw: str) -> Node | None:
        try:
            data = json.loads(raw)
            return cls(**data)
        except (ValueError, TypeError):
            return None  # a record from another version: treated as absent


class Registry:
    """`{prefix}:nodes` (a set of ids) and `{prefix}:node:{id}` (the record, with a TTL)."""

    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self.redis = redis
        self.prefix = prefix
        self.ttl_ms = int(ttl * 1000)

    def _key(self, node_id: str) -> str:
        return f"{self.prefix}:node:{node_id}"

    async def beat(self, node: Node) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key(node.id), node.dumps(), px=self.ttl_ms)
            pipe.sadd(f"{self.prefix}:nodes", node.id)
            await pipe.execute()

    async def remove(self, node_id: str) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._key(node_id))
            pipe.srem(f"{self.prefix}:nodes", node_id)
            await pipe.execute()

    async def get(self, node_id: str) -> Node | None:
        raw = await self.redis.get(self._key(node_id))
        return Node.loads(str(raw)) if raw else None

    async def live(self) -> list[Node]:
        """Every node whose heartbeat is fresh; ids whose record expired are forgotten."""
        ids = sorted(str(i) for i in await self.redis.smembers(f"{self.prefix}:nodes"))
        if not ids:
            return []
        raws = await self.redis.mget([self._key(i) for i in ids])
        nodes = [Node.loads(str(raw)) for raw in raws if raw]
        dead = [i for i, raw in zip(ids, raws, strict=True) if not raw]
        if dead:
            await self.redis.srem(f"{self.prefix}:nodes", *dead)
        return [n for n in nodes if n is not None]
