"""Room (and desk) leases: one owner node at a time, a TTL its owner renews. Every change is
one Lua script, so it is atomic in Redis: no home-made consensus."""

from __future__ import annotations

from collections.abc import Collection

from redis.asyncio import Redis

# Renew what is ours; take back what vanished (a Redis restart); report what another took.
_RENEW = """
local lost = {}
for i, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  if owner == false or owner == ARGV[1] then
    redis.call('SET', key, ARGV[1], 'PX', ARGV[2])
  else
    table.insert(lost, key)
  end
end
return lost
"""
# Compare and set: move a lease from one owner to another (or delete it: ARGV[2] == '').
_MOVE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""


class Leases:
    def __init__(self, redis: Redis, prefix: str, ttl: float) -> None:
        self.redis = redis
        self.prefix = f"{prefix}:lease:"
        self.ttl_ms = int(ttl * 1000)
        self._renew = redis.register_script(_RENEW)
        self._move = redis.register_script(_MOVE)

    def key(self, name: str) -> str:
        return self.prefix + name

    async def owner(self, name: str) -> str | None:
        owner = await self.redis.get(self.key(name))
        return None if owner is None else str(owner)

    async def claim(self, name: str, node_id: str) -> str:
        """Give the lease to node_id if nobody holds it; returns the owner after the call."""
        if await self.redis.set(self.key(name), node_id, px=self.ttl_ms, nx=True):
            return node_id
        return await self.owner(name) or await self.claim(name, node_id)

    async def move(self, name: str, from_node: str, to_node: str | None) -> bool:
        """Hand the lease over (to_node None: release it), only if from_node holds it."""
        done = await self._move(keys=[self.key(name)], args=[from_node, to_node or "", self.ttl_ms])
        return bool(done)

    async def renew(self, names: Collection[str], node_id: str) -> list[str]:
        """Renew node_id's leases on names; returns the names another node holds now."""
        if not names:
            return []
        lost = await self._renew(keys=[self.key(n) for n in names], args=[node_id, self.ttl_ms])
        return [k[len(self.prefix) :] for k in lost]

    async def all(self) -> dict[str, str]:
        """Every lease: name -> owner (for the admin API; SCAN, never KEYS)."""
        names = [k async for k in self.redis.scan_iter(match=self.prefix + "*", count=500)]
        if not names:
            return {}
        owners = await self.redis.mget(names)
        pairs = zip(names, owners, strict=True)
        return {k[len(self.prefix) :]: str(o) for k, o in pairs if o is not None}
