"""Engine calls in a bounded thread pool, with concurrent requests for one pair sharing a call.

Batching is "natural": an idle pair's first request is sent at once (no waiting window,
so no added latency when quiet); requests that arrive while that call runs queue up and
leave together in the next call. CTranslate2 decodes a batch in little more time than one
sentence, so under load this is where the throughput comes from (scripts/bench_translation.py).
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field

from .base import PartialFailure, TranslationError, Translator
from .metrics import TranslationMetrics

log = logging.getLogger(__name__)

LaneKey = tuple[str, str, str]  # (engine, source, target)


def _retrieve(fut: asyncio.Future[str]) -> None:
    # A waiter may have timed out and left; mark the outcome seen so asyncio does not log it.
    if not fut.cancelled():
        fut.exception()


@dataclass
class _Lane:
    pending: list[tuple[str, asyncio.Future[str]]] = field(default_factory=list)
    task: asyncio.Task[None] | None = None


class BatchingRunner:
    def __init__(
        self, executor: Executor, metrics: TranslationMetrics, max_batch: int | None
    ) -> None:
        self._executor = executor
        self._metrics = metrics
        self._max_batch = max_batch  # None: each engine's own max_batch attribute (default 16)
        self._lanes: dict[LaneKey, _Lane] = {}

    def submit(
        self, engine: Translator, source: str, target: str, text: str
    ) -> asyncio.Future[str]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()
        fut.add_done_callback(_retrieve)
        lane = self._lanes.setdefault((engine.name, source, target), _Lane())
        lane.pending.append((text, fut))
        if lane.task is None:
            lane.task = loop.create_task(self._drain(engine, source, target, lane))
        return fut

    def _limit(self, engine: Translator) -> int:
        if self._max_batch is not None:
            return max(1, self._max_batch)
        return max(1, int(getattr(engine, "max_batch", 16)))

    async def _drain(self, engine: Translator, source: str, target: str, lane: _Lane) -> None:
        limit = self._limit(engine)
        try:
            while lane.pending:
                batch = lane.pending[:limit]
                del lane.pending[:limit]
                unique = list(dict.fromkeys(text for text, _ in batch))
                self._metrics.engine_calls.labels(engine.name).inc()
                self._metrics.batch_size.labels(engine.name).observe(len(unique))
                try:
                    outcomes = await self._call(engine, unique, source, target)
                except Exception as exc:
                    log.warning("%s %s->%s failed: %s", engine.name, source, target, exc)
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                results = dict(zip(unique, outcomes, strict=True))
                for text, fut in batch:
                    if fut.done():
                        continue
                    outcome = results[text]
                    if isinstance(outcome, TranslationError):
                        fut.set_exception(outcome)
                    else:
                        fut.set_result(outcome)
        finally:
            lane.task = None
            for _, fut in lane.pending:  # only left over when this task was cancelled
                if not fut.done():
                    fut.set_exception(TranslationError("translation service closed"))
            lane.pending.clear()

    async def _call(
        self, engine: Translator, texts: list[str], source: str, target: str
    ) -> list[str | TranslationError]:
        loop = asyncio.get_running_loop()
        out: list[str | TranslationError]
        try:
            out = list(
                await loop.run_in_executor(
                    self._executor, engine.translate_batch, texts, source, target
                )
            )
        except PartialFailure as exc:  # only some texts failed: the others still count
            log.warning("%s %s->%s: %s", engine.name, source, target, exc)
            out = exc.outcomes
        if len(out) != len(texts):
            raise TranslationError(f"{engine.name} gave {len(out)} results for {len(texts)} texts")
        return out

    async def aclose(self) -> None:
        tasks = [lane.task for lane in self._lanes.values() if lane.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
