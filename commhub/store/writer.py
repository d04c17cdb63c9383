"""The store's single writer: a bounded queue drained in batches, one transaction (one
commit, one fsync) per batch. While a commit is in flight the next writes gather behind it,
so the commit rate, not the message rate, bounds throughput (group commit).

Back-pressure: `write` (awaited: a chat the hub acknowledges only once it is committed)
waits while the queue is at its bound; `submit` (fire-and-forget: translations, captions,
events) may use up to twice the bound, then drops and counts.

Faults: a write the database refuses for its content fails alone (its batch is split). A
database fault (unreachable, restarting, locked, full, read-only) marks the store unhealthy
for /readyz: awaited writes fail at once with StoreError (nothing is acknowledged that is not
committed), submitted writes stay queued, in order, and the writer probes with backoff until
the database takes writes again, then commits them. Each batch also records its number in
the writer's own row of store_meta, in the same transaction: when a batch's outcome is
unknown (the connection died around COMMIT), the probe reads that row and the batch is
retried only if it did not commit, so nothing is written twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table, delete, insert, select, update
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from commhub.store.metrics import StoreMetrics
from commhub.store.models import meta

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


class StoreUnreachable(StoreError):
    """The database server could not be connected to (at start: the hub cannot run). The
    message names host:port and the URL without its password, in one line."""


@dataclass(slots=True)
class _Item:
    op: Op
    what: str
    done: asyncio.Future[Any] | None
    tried: int = 0  # the batch it was last in, when that batch's outcome is unknown


def describe(exc: BaseException) -> str:
    """A database fault in one line: the driver's words, not SQLAlchemy's boilerplate."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    words = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {words}" if words else type(exc).__name__


def _data_fault(exc: BaseException) -> bool:
    """A write the database refused for its content (one item's fault, not the database's)."""
    return isinstance(exc, IntegrityError | DataError | ProgrammingError) or not isinstance(
        exc, DBAPIError | OSError | StoreUnreachable
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
        self.retry = retry  # the longest pause between probes of a faulty database
        self._recover = recover
        self._on_status = on_status
        self._metrics = metrics
        self._queue: deque[_Item] = deque()
        self._wake = asyncio.Event()
        self._space = asyncio.Event()
        self._space.set()
        self._healthy = True
        self._detail = "ok"
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._key = "commit:" + uuid.uuid4().hex  # this writer's row in store_meta
        self._batches = 0  # batches tried
        self._committed = 0  # the last batch known committed (the row's value)
        self._doubt = 0  # a batch whose outcome is unknown (0: none)
        self._delay = 0.0  # the next pause before a probe (backoff)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commhub-store-writer")

    def unhealthy(self, detail: str = "database error") -> None:
        """The store started without a usable database: probe before taking writes."""
        self._healthy = False
        self._detail = detail

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _unavailable(self) -> StoreError:
        return StoreError(f"not saved: the database is unavailable ({self._detail})")

    async def write(self, op: Op, what: str) -> Any:
        """Run op in the next batch; returns its result once the batch committed. Fails at
        once while the database is faulty (the writer is probing it)."""
        while len(self._queue) >= self.limit and not self._closing and self._healthy:
            self._space.clear()
            self._metrics.waits.inc()
            await self._space.wait()
        if self._closing or self._task is None:
            raise StoreError("the store is closed")
        if not self._healthy:
            raise self._unavailable()
        done: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(_Item(op, what, done))
        return await done

    def submit(self, op: Op, what: str) -> bool:
        """Queue op without waiting for its commit (kept through database faults, up to
        the bound); False when it was dropped."""
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
            if item.done is None:
                self._metrics.dropped.labels(item.what).inc()
            elif not item.done.done():
                item.done.set_exception(StoreError("the store closed before this was saved"))
        self._queue.clear()
        if self._healthy and self._batches:
            with contextlib.suppress(Exception):  # tidy only: a leftover row is harmless
                async with asyncio.timeout(timeout), self.engine.begin() as conn:
                    await conn.execute(delete(meta).where(meta.c.key == self._key))

    async def _run(self) -> None:
        while True:
            if not self._healthy:
                self._fail_waiting()
                if self._closing and not self._queue:
                    return
                await asyncio.sleep(self._delay)
                self._delay = min(self.retry, max(2 * self._delay, self.retry / 16))
                await self._probe()
                continue
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
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

    def _fail_waiting(self) -> None:
        """Awaited writes get their answer now; submitted ones wait for the database."""
        if not any(item.done is not None for item in self._queue):
            return
        error = self._unavailable()
        for item in self._queue:
            if item.done is not None and not item.done.done():
                item.done.set_exception(error)
        self._queue = deque(item for item in self._queue if item.done is None)
        self._metrics.queue.set(len(self._queue))
        self._space.set()

    def _requeue(self, items: list[_Item], at: int = 0) -> None:
        """Put items back at position `at` of the queue, in their order."""
        for offset, item in enumerate(items):
            self._queue.insert(at + offset, item)
        self._metrics.queue.set(len(self._queue))

    async def _probe(self) -> None:
        """Make the database usable (the store migrates it if it could not yet), learn
        whether the batch in doubt committed, and see that a write commits."""
        try:
            await self._recover()
            async with self.engine.begin() as conn:
                committed = bool(self._doubt) and await self._marked(conn) == self._doubt
                if committed:
                    self._committed = self._doubt
                await self._mark(conn, self._committed)
        except Exception as exc:
            self._fault(exc, "probe")
            return
        if self._doubt:
            if committed:  # its reply was lost, not its commit: do not write it again
                kept = [item for item in self._queue if item.tried != self._doubt]
                log.warning(
                    "store: %d writes whose commit went unanswered were saved",
                    len(self._queue) - len(kept),
                )
                self._queue = deque(kept)
                self._metrics.queue.set(len(self._queue))
            self._doubt = 0
        self._recovered()

    async def _marked(self, conn: AsyncConnection) -> int:
        value = await conn.scalar(select(meta.c.value).where(meta.c.key == self._key))
        return int(value) if value is not None else 0

    async def _mark(self, conn: AsyncConnection, number: int) -> None:
        done = await conn.execute(
            update(meta).where(meta.c.key == self._key).values(value=str(number))
        )
        if done.rowcount == 0:
            await conn.execute(insert(meta).values(key=self._key, value=str(number)))

    async def _commit(self, items: list[_Item]) -> None:
        started = time.perf_counter()
        self._batches += 1
        number = self._batches
        try:
            results = await self._transaction(items, number)
        except Exception as exc:
            if _data_fault(exc):
                if len(items) > 1:
                    await self._split(items)
                    return
                self._fault(exc, items[0].what)
                error = StoreError(f"not saved: {describe(exc)}")
                if items[0].done is None:
                    self._metrics.dropped.labels(items[0].what).inc()
                elif not items[0].done.done():
                    items[0].done.set_exception(error)
                return
            # the database's fault: keep them all (in order, at the head) for after the
            # probe; the batch may have committed before its reply was lost
            self._fault(exc, items[0].what if len(items) == 1 else f"{len(items)} writes")
            for item in items:
                item.tried = number
            self._doubt = number
            self._requeue(items)
            return
        self._committed = number
        self._delay = 0.0
        self._metrics.commit_seconds.observe(time.perf_counter() - started)
        self._metrics.batch.observe(len(items))
        self._recovered()
        for item, result in zip(items, results, strict=True):
            if item.done is not None and not item.done.done():
                item.done.set_result(result)

    async def _split(self, items: list[_Item]) -> None:
        """Find the write the database refused (each alone); keep the others."""
        for i, item in enumerate(items):
            if not self._healthy:  # the database failed meanwhile: the rest wait behind
                self._requeue(items[i:], at=1 if self._doubt else 0)
                return
            await self._commit([item])

    async def _transaction(self, items: list[_Item], number: int) -> list[Any]:
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
            await self._mark(conn, number)
        return results

    def _fault(self, exc: BaseException, what: str) -> None:
        self._metrics.errors.inc()
        detail = f"database error: {describe(exc)}"
        if self._healthy or what != "probe":
            log.error("store: %s failed: %s", what, describe(exc))
        self._healthy = _data_fault(exc) and self._healthy
        if not self._healthy:
            self._detail = detail
            self._on_status(False, detail)
            self._space.set()  # writers held back by a full queue get their answer now

    def _recovered(self) -> None:
        if not self._healthy:
            log.warning("store: the database takes writes again")
        self._healthy = True
        self._detail = "ok"
        self._on_status(True, "ok")
