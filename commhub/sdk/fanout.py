"""One local track, several senders: each gets its own copy (hub and direct peer in p2p).

Like aiortc's MediaRelay, but owned by the client: `close()` stops the readers even when the
source track never ends (MediaRelay keeps reading a live source after every copy stopped).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

_COPY_QUEUE = 50  # frames a copy may fall behind before its oldest are dropped


class _Copy(MediaStreamTrack):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[Any] = asyncio.Queue(_COPY_QUEUE)

    def push(self, frame: Any) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(frame)

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class Fanout:
    def __init__(self) -> None:
        self._copies: dict[MediaStreamTrack, list[_Copy]] = {}
        self._readers: dict[MediaStreamTrack, asyncio.Task[None]] = {}

    def copy(self, source: MediaStreamTrack) -> MediaStreamTrack:
        c = _Copy(source.kind)
        self._copies.setdefault(source, []).append(c)
        if source not in self._readers:
            self._readers[source] = asyncio.create_task(self._read(source))
        return c

    async def _read(self, source: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await source.recv()
                live = [c for c in self._copies.get(source, []) if c.readyState == "live"]
                self._copies[source] = live
                for c in live:
                    c.push(frame)
        except MediaStreamError:
            for c in self._copies.get(source, []):
                c.push(None)

    async def close(self) -> None:
        for task in self._readers.values():
            task.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)
        for copies in self._copies.values():
            for c in copies:
                c.stop()
        self._readers.clear()
        self._copies.clear()
