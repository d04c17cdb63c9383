"""The per-node budget of recognizers decoding at once: one shared pool of worker threads."""

from __future__ import annotations

import asyncio
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
    """At most ``max_active`` decode jobs run at once, node-wide.

    Vosk and pocketsphinx release the GIL, so one thread per core is the ceiling that
    makes sense; a stream whose job waits for a thread merges its audio (fewer partials)
    rather than queueing more work.
    """

    def __init__(self, max_active: int | None = None) -> None:
        self.max_active = max_active or available_cpus()
        self._executor = ThreadPoolExecutor(self.max_active, thread_name_prefix="recognize")
        self.in_flight = 0

    async def run(self, fn: Callable[[], T]) -> T:
        self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn)
        finally:
            self.in_flight -= 1

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.max_active

    def shutdown(self) -> None:
        self._executor.shutdown(wait=True)


_default: RecognitionBudget | None = None


def default_budget() -> RecognitionBudget:
    global _default
    if _default is None:
        _default = RecognitionBudget()
    return _default
