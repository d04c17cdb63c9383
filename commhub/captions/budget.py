"""The per-node budget of recognizers decoding at once: one shared pool of worker threads."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class RecognitionBudget:
    """At most ``max_active`` decode jobs run at once, node-wide; urgent jobs go first.

    Vosk and pocketsphinx release the GIL, so one thread per core is the ceiling that
    makes sense; a stream whose job waits for a thread merges its audio (fewer partials)
    rather than queueing more work. A final (someone stopped speaking and waits for the
    caption) is urgent: it overtakes partial jobs waiting for a thread, which is what holds
    the end-of-speech latency when many speakers stop at once.
    """

    def __init__(self, max_active: int | None = None) -> None:
        self.max_active = max_active or available_cpus()
        self._executor = ThreadPoolExecutor(self.max_active, thread_name_prefix="recognize")
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []  # (priority, seq, slot)
        self._seq = itertools.count()
        self.in_flight = 0  # jobs holding a thread

    async def run(self, fn: Callable[[], T], urgent: bool = False) -> T:
        await self._acquire(urgent)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self.in_flight < self.max_active and not self._waiting:
            self.in_flight += 1
            return
        slot = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (0 if urgent else 1, next(self._seq), slot))
        try:
            await slot  # _release hands its thread over: in_flight already counts us
        except asyncio.CancelledError:
            if slot.done() and not slot.cancelled():
                self._release()  # handed over just as we were cancelled: pass it on
            raise

    def _release(self) -> None:
        while self._waiting:
            _, _, slot = heapq.heappop(self._waiting)
            if not slot.done():
                slot.set_result(None)
                return
        self.in_flight -= 1

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.max_active

    @property
    def waiting(self) -> int:
        return sum(1 for *_, slot in self._waiting if not slot.done())

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


_default: RecognitionBudget | None = None


def default_budget() -> RecognitionBudget:
    global _default
    if _default is None:
        _default = RecognitionBudget()
    return _default
