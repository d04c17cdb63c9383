"""Waiting in tests: poll for a condition, or prove that nothing more is on its way."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, Protocol

_refs = itertools.count()


async def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "") -> None:
    """Poll `cond` until true; fails the test naming `what` after `timeout` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not cond():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout:g} s waiting for {what or cond}") from None


class _Connection(Protocol):
    inbox: list[dict[str, Any]]

    async def send(self, msg: dict[str, Any]) -> None: ...


async def barrier(*connections: _Connection, timeout: float = 10.0) -> None:
    """A ping round trip through every connection: whatever the hub sent each of them before
    it answered is in its inbox now. Asserting that nothing arrived is then a fact, not a
    guess about how long to sleep."""
    refs = {id(c): f"barrier-{next(_refs)}" for c in connections}
    for c in connections:
        await c.send({"type": "ping", "id": refs[id(c)]})

    def answered() -> bool:
        return all(
            any(m["type"] == "pong" and m.get("ref") == refs[id(c)] for m in c.inbox)
            for c in connections
        )

    await wait_for(answered, timeout, "the barrier's pongs")
