"""One signalling socket's outbound side: a bounded queue drained by a writer task."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque

from aiohttp import web

log = logging.getLogger("commhub.connection")

# WebSocket close codes (4000-4999 are the application's own)
CLOSE_CODES = {
    "left": 1000,
    "shutdown": 1001,
    "flooding": 1008,
    "slow_consumer": 1013,
    "replaced": 4002,
    "room_full": 4003,
    "removed": 4004,
    "room_closed": 4005,
    "join_timeout": 4008,
    "internal_error": 1011,
}
_BYE = {"left", "replaced", "removed", "room_closed"}


class Connection:
    def __init__(self, ws: web.WebSocketResponse, queue_size: int) -> None:
        self.ws = ws
        self.queue: deque[str] = deque()
        self.queue_size = queue_size
        self.wakeup = asyncio.Event()
        self.drained = asyncio.Event()
        self.ended = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False
        self.writer = asyncio.create_task(self._write(), name="commhub-ws-writer")

    def deliver(self, data: str) -> None:
        if self.closing:
            return
        if len(self.queue) >= self.queue_size:
            # A reader this far behind holds the room's memory hostage: drop it.
            log.warning("slow consumer: %d messages queued, closing", len(self.queue))
            task = asyncio.create_task(self.end("slow_consumer", "too many undelivered messages"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        self.queue.append(data)
        self.drained.clear()
        self.wakeup.set()

    async def _write(self) -> None:
        try:
            while True:
                await self.wakeup.wait()
                self.wakeup.clear()
                while self.queue:
                    await self.ws.send_str(self.queue.popleft())
                self.drained.set()
        except (ConnectionError, RuntimeError) as exc:  # peer gone mid-write
            log.debug("writer stopped: %s", exc)
        finally:
            self.drained.set()

    async def flush(self) -> None:
        """Wait (bounded) until what is queued has been written."""
        if self.queue:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):
                    await self.drained.wait()

    async def end(self, reason: str, message: str) -> None:
        """Send the last word (bye, when it has one), flush, and close with reason's code."""
        if self.closing:
            await self.ended.wait()
            return
        if reason in _BYE:
            self.deliver(json.dumps({"type": "bye", "reason": reason, "message": message}))
        self.closing = True
        await self.flush()
        code = CLOSE_CODES.get(reason, 1000)
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message[:120].encode())
        self.ended.set()

    async def stop(self) -> None:
        """Release the writer task (after the socket is gone)."""
        self.closing = True
        self.writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.writer
        self.ended.set()
