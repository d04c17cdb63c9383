"""Ordered, non-blocking delivery of one source's texts to readers of other languages.

A chat's sender and a caption stream's recognizer must not wait for a translation: what
readers of the source language get goes out at once, and what needs translating is queued
on the source's own lane (one per chat sender, one per caption stream), whose task
translates and publishes in order. A slow engine then delays only the translated copies of
that source, never the source's next message, nor any other source.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger("commhub.lanes")

LANE_MAX = 64  # jobs waiting per source before its partials are dropped and the rest untranslated


@dataclass
class Job:
    run: Callable[[bool], Awaitable[None]]  # run(busy): busy = deliver without translating
    droppable: bool = False  # a partial caption: superseded by what follows
    busy: bool = False


class Lanes:
    def __init__(self, limit: int = LANE_MAX) -> None:
        self.limit = limit
        self._queues: dict[str, deque[Job]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self.dropped = 0

    def put(self, lane: str, job: Job) -> None:
        """Queue job behind the lane's earlier ones; never waits."""
        queue = self._queues.setdefault(lane, deque())
        if len(queue) >= self.limit:
            kept = deque(j for j in queue if not j.droppable)
            self.dropped += len(queue) - len(kept)
            queue.clear()
            queue.extend(kept)
            if len(queue) >= self.limit:
                job.busy = True  # still delivered, in order, but not translated
        queue.append(job)
        if lane not in self._tasks:
            task = asyncio.create_task(self._drain(lane, queue), name=f"commhub-lane-{lane}")
            self._tasks[lane] = task

    async def _drain(self, lane: str, queue: deque[Job]) -> None:
        try:
            while queue:
                job = queue.popleft()
                try:
                    await job.run(job.busy)
                except Exception:
                    log.exception("delivering on lane %s failed", lane)
        finally:
            self._tasks.pop(lane, None)
            if self._queues.get(lane) is queue and not queue:
                del self._queues[lane]

    def idle(self, lane: str) -> bool:
        """Nothing of this lane is waiting or being delivered (the next may skip the queue)."""
        return lane not in self._tasks

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._queues.clear()
