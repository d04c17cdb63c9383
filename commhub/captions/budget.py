"""The per-node budget of recognizers decoding at once: one shared pool of worker threads."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import os
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
THREADS_PER_CORE = 2


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class RecognitionBudget:
    """At most ``max_active`` decode jobs run at once, node-wide; the oldest audio goes first.

    Vosk and pocketsphinx release the GIL. Two threads per core by default: with one, a
    long job holds a core while short ones (other speakers' next chunks) wait behind it;
    with two the OS time-slices them (measured, 2 cores, 8 open-vocabulary speakers: final
    p95 2.40 s with 2 threads, 1.03 s with 4, 1.25 s with 8). A stream whose job waits for
    a thread merges its audio (fewer partials) rather than queueing more work. Each stream
    has at most one job waiting, and a job's ``deadline`` is when the oldest audio in it
    arrived: serving the earliest deadline first is round-robin weighted by lag, so past
    capacity every stream falls behind by the same amount instead of some streams starving
    (finals-first across streams made a stream that had caught up wait behind everyone
    else's finals). Inside a stream the order is the stream's own: an utterance's final
    comes before its next one's audio.
    """

    def __init__(self, max_active: int | None = None) -> None:
        self.max_active = max_active or THREADS_PER_CORE * available_cpus()
        self._executor = ThreadPoolExecutor(self.max_active, thread_name_prefix="recognize")
        self._waiting: list[tuple[float, int, asyncio.Future[None]]] = []  # (deadline, seq, slot)
        self._seq = itertools.count()
        self.in_flight = 0  # jobs holding a thread
        self._strained_until = -1.0  # monotonic: until then the node is over capacity
        # wall seconds per audio second decoded, node-wide (a moving estimate: it counts
        # contention too); a stream's own estimate starts from it
        self.rtf = 0.5

    async def run(self, fn: Callable[[], T], deadline: float | None = None) -> T:
        """Run ``fn`` on a worker thread; ``deadline`` (monotonic) orders waiting jobs, now
        if not given."""
        async with self.slot(deadline):
            return await self.execute(fn)

    @contextlib.asynccontextmanager
    async def slot(self, deadline: float | None = None) -> AsyncIterator[None]:
        """Hold a thread: a stream decides what to decode only once it has one, with the
        freshest view of its backlog (what is too old by then is shed, not decoded)."""
        await self._acquire(time.monotonic() if deadline is None else deadline)
        try:
            yield
        finally:
            self._release()

    async def execute(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a worker thread, inside a held ``slot``."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def strain(self, hold_s: float) -> None:
        """A stream found its oldest audio waiting too long: the node is over capacity for
        at least ``hold_s`` more (new utterances then decode with the fast preset)."""
        self._strained_until = max(self._strained_until, time.monotonic() + hold_s)

    @property
    def strained(self) -> bool:
        return time.monotonic() < self._strained_until

    async def _acquire(self, deadline: float) -> None:
        if self.in_flight < self.max_active and not self._waiting:
            self.in_flight += 1
            return
        slot = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (deadline, next(self._seq), slot))
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
