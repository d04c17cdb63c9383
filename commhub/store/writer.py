"""The store's single writer: a bounded queue drained in batches, one transaction (one
commit, one fsync) per batch. While a commit is in flight the next writes gather behind it,
so the commit rate, not the message rate, bounds throughput (group commit).

Back-pressure: `write` (awaited: a chat the hub acknowledges only once it is committed)
waits while the queue is at its bound; `submit` (fire-and-forget: translations, captions,
events) may use up to twice the bound, then drops and counts. A database fault (locked,
full, read-only, I/O) fails the batch's writes with StoreError, marks the store unhealthy
for /readyz, and the writer probes until the database takes writes again."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commhub.store.metrics import StoreMetrics

log = logging.getLogger("commhub.store")


@dataclass(frozen=True, slots=True)
class Row:
    """A plain insert: consecutive rows of one table go to the database as one statement
    (executemany), not one round trip each."""

    table: Table
    values: dict[str, Any]


Op = Callable[[AsyncConnection], Awaitable[Any]] | Row


class StoreError(Exception):
    """The store could not do what was asked (the message says why, for people)."""


@dataclass(slots=True)
class _Item:
    op: Op
    what: str
    done: asyncio.Future[Any] | None


def describe(exc: BaseException) -> str:
    """A database fault in one line: the driver's words, not SQLAlchemy's boilerplate."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return f"{type(exc.orig).__name__}: {exc.orig}"
    return f"{type(exc).__name__}: {exc}"


def _data_fault(exc: BaseException) -> bool:
    """A write the database refused for its content (one item's fault, not the database's)."""
    return isinstance(exc, IntegrityError | DataError | ProgrammingError) or not isinstance(
        exc, DBAPIError | OSError
    )


class Writer:
    def __init__(
        self,
        engine: AsyncEngine,
        *,
        limit: int,
        batch: int,
        recover: Callable[[], Awaitable[None]],
        on_status: Callable[[bool, str], None],
        metrics: StoreMetrics,
        retry: float = 2.0,
    ) -> None:
        self.engine = engine
        self.limit = limit
        self.batch = batch
        self.retry = retry
        self._recover = recover
        self._on_status = on_status
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._healthy = True
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commhub-store-writer")

    def unhealthy(self) -> None:
        """The store started without a usable database: probe before taking writes."""
        self._healthy = False

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def write(self, op: Op, what: str) -> Any:
        """Run op in the next batch; returns its result once the batch committed."""
        while len(self._queue) >= self.limit and not self._closing:
            self._space.clear()
            self._metrics.waits.inc()
            await self._space.wait()
        if self._closing or self._task is None:
            raise StoreError("the store is closed")
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Item(op, what, done))
        return await done

    def submit(self, op: Op, what: str) -> bool:
        """Queue op without waiting for its commit; False when it was dropped."""
        if self._closing or self._task is None or len(self._queue) >= 2 * self.limit:
            self._metrics.dropped.labels(what).inc()
            why = "closed" if self._closing or self._task is None else "queue full"
            log.warning("store %s: dropped a %s write", why, what)
            return False
        self._put(_Item(op, what, None))
        return True

    def _put(self, item: _Item) -> None:
        self._queue.append(item)
        self._metrics.queue.set(len(self._queue))
        self._wake.set()

    async def close(self, timeout: float) -> None:
        """Commit what is queued (within timeout), then stop."""
        self._closing = True
        self._wake.set()
        self._space.set()
        if self._task is None:
            return
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self._task)
        except TimeoutError:
            log.error("store: %d writes not committed at shutdown", len(self._queue))
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for item in self._queue:
            if item.done is not None and not item.done.done():
                item.done.set_exception(StoreError("the store closed before this was saved"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                if self._healthy:
                    await self._wake.wait()
                    continue
                try:  # unhealthy and idle: probe now and then, so /readyz recovers
                    async with asyncio.timeout(self.retry):
                        await self._wake.wait()
                except TimeoutError:
                    await self._probe()
                continue
            items = [self._queue.popleft() for _ in range(min(self.batch, len(self._queue)))]
            self._metrics.queue.set(len(self._queue))
            if len(self._queue) < self.limit:
                self._space.set()
            try:
                await self._commit(items)
            except asyncio.CancelledError:  # close() gave up on this batch: say so to its writers
                for item in items:
                    if item.done is not None and not item.done.done():
                        item.done.set_exception(
                            StoreError("the store closed before this was saved")
                        )
                raise

    async def _probe(self) -> None:
        try:
            await self._recover()
        except Exception as exc:
            self._fault(exc, "probe")
        else:
            self._recovered()

    async def _commit(self, items: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            results = await self._transaction(items)
        except Exception as exc:
            if len(items) > 1 and _data_fault(exc):
                for item in items:  # find the one the database refused; keep the others
                    await self._commit([item])
                return
            self._fault(exc, items[0].what if len(items) == 1 else f"{len(items)} writes")
            error = StoreError(f"not saved: {describe(exc)}")
            for item in items:
                if item.done is None:
                    self._metrics.dropped.labels(item.what).inc()
                elif not item.done.done():
                    item.done.set_exception(error)
            return
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.batch.observe(len(items))
        self._recovered()
        for item, result in zip(items, results, strict=True):
            if item.done is not None and not item.done.done():
                item.done.set_result(result)

    async def _transaction(self, items: list[_Item]) -> list[Any]:
        results: list[Any] = []
        async with self.engine.begin() as conn:
            i = 0
            while i < len(items):
                op = items[i].op
                if isinstance(op, Row):
                    j = i + 1
                    while j < len(items):
                        nxt = items[j].op
                        if not (isinstance(nxt, Row) and nxt.table is op.table):
                            break
                        j += 1
                    rows = [
                        r.values for r in (items[k].op for k in range(i, j)) if isinstance(r, Row)
                    ]
                    await conn.execute(insert(op.table), rows)
                    results += [None] * (j - i)
                    i = j
                else:
                    results.append(await op(conn))
                    i += 1
        return results

    def _fault(self, exc: BaseException, what: str) -> None:
        self._metrics.errors.inc()
        detail = f"database error: {describe(exc)}"
        if self._healthy or what != "probe":
            log.error("store: %s failed: %s", what, describe(exc))
        self._healthy = _data_fault(exc) and self._healthy
        if not self._healthy:
            self._on_status(False, detail)

    def _recovered(self) -> None:
        if not self._healthy:
            log.warning("store: the database takes writes again")
        self._healthy = True
        self._on_status(True, "ok")
