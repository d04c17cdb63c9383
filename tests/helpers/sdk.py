"""Helpers for SDK tests: ears that drain every remote track a client receives, and record
which publisher's audio (or video) arrived when, with how much energy."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import numpy as np
from aiortc.mediastreams import MediaStreamError

from commhub.sdk import RemoteTrack, RoomClient

LEVEL = 1000.0  # RMS of a frame that carries the test tone (silence and noise: far below)


@dataclass
class Arrival:
    at: float  # loop time
    participant: str  # the publisher, as the receiver knows it then
    kind: str
    direct: bool
    rms: float


class Ears:
    """Reads every remote track of one client as it appears (on_track), so nothing piles up
    unread, and remembers each frame's arrival."""

    def __init__(self, client: RoomClient) -> None:
        self.client = client
        self.arrivals: list[Arrival] = []
        self._tasks: set[asyncio.Task[None]] = set()
        client.on_track = self._on_track

    def _on_track(self, remote: RemoteTrack) -> None:
        task = asyncio.create_task(self._drain(remote))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, remote: RemoteTrack) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                frame = await remote.track.recv()
            except MediaStreamError:
                return
            if remote.track.kind == "audio":
                rms = float(np.sqrt(np.mean(frame.to_ndarray().astype(np.float64) ** 2)))
            else:
                rms = LEVEL  # a decoded video frame is what counts
            self.arrivals.append(
                Arrival(loop.time(), remote.participant, remote.track.kind, remote.direct, rms)
            )

    def heard(
        self,
        who: RoomClient,
        since: float,
        kind: str = "audio",
        frames: int = 25,
        direct: bool | None = None,
    ) -> bool:
        """At least `frames` frames of `kind` with energy from `who` (its id now) since then."""
        got = [
            a
            for a in self.arrivals
            if a.at >= since
            and a.kind == kind
            and a.participant == who.pid
            and a.rms >= LEVEL
            and (direct is None or a.direct == direct)
        ]
        return len(got) >= frames

    def count(self, who: RoomClient, since: float, kind: str = "audio") -> int:
        return sum(
            1
            for a in self.arrivals
            if a.at >= since and a.kind == kind and a.participant == who.pid and a.rms >= LEVEL
        )

    async def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def now() -> float:
    return asyncio.get_running_loop().time()


async def close_all(*things: RoomClient | Ears) -> None:
    for t in things:
        with contextlib.suppress(Exception):
            await t.close()
