"""Retention: stored transcripts, reports and evidence older than `retention_days` are purged
periodically; `erase` removes everything stored about one identity. Disk and database work
run off the event loop (the store's own worker, or a thread for the evidence files)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Protocol

from commhub.store.writer import StoreError

log = logging.getLogger("commhub.retention")
DAY = 86400.0


class Purging(Protocol):
    """What retention needs of the store."""

    async def purge(self, older_than: float) -> dict[str, int]: ...
    async def erase_identity(self, identity: str) -> dict[str, int]: ...


def evidence_root(data_dir: Path) -> Path:
    return data_dir / "evidence"


class Forgetting(Protocol):
    """A live room: its chat history (what newcomers get) forgets old lines too."""

    def forget(self, identity: str | None = None, before: float | None = None) -> int: ...


class Retention:
    """Every `interval` seconds, purge what is older than `days` (0: keep forever)."""

    def __init__(
        self,
        store: Callable[[], Purging | None],
        data_dir: Path,
        days: float,
        interval: float,
        rooms: Iterable[Forgetting] = (),
    ) -> None:
        self.store = store
        self.rooms = rooms
        self.root = evidence_root(data_dir)
        self.days = days
        self.interval = interval
        self.last: dict[str, int] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.days > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="retention")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def purge(self, now: float | None = None) -> dict[str, int]:
        """Purge once: what was stored before `now - days` goes, counted by kind (nothing
        when days is 0: kept forever)."""
        if self.days <= 0:
            return {}
        cutoff = (time.time() if now is None else now) - self.days * DAY
        store = self.store()
        counts = dict(await store.purge(cutoff)) if store is not None else {}
        counts["evidence_files"] = await asyncio.to_thread(purge_files, self.root, cutoff)
        counts["live_chat"] = sum(room.forget(before=cutoff) for room in self.rooms)
        self.last = counts
        return counts

    async def _run(self) -> None:
        while True:
            try:
                counts = await self.purge()
                if any(counts.values()):
                    log.info("retention purge (older than %g days): %s", self.days, counts)
            except StoreError as exc:  # the store says what is wrong (and /readyz)
                log.warning("retention purge failed, next in %g s: %s", self.interval, exc)
            except Exception:  # the next round tries again; a failure must not end the task
                log.exception("retention purge failed")
            await asyncio.sleep(self.interval)


def purge_files(root: Path, older_than: float) -> int:
    """Remove regular files under `root` last modified before `older_than` (Unix seconds),
    then directories left empty. Symbolic links are neither followed nor kept."""
    removed = 0
    if not root.is_dir():
        return 0
    for here, dirs, files in os.walk(root, topdown=False, followlinks=False):
        for name in files:
            path = Path(here) / name
            with contextlib.suppress(FileNotFoundError):
                st = path.lstat()
                if path.is_symlink() or st.st_mtime < older_than:
                    path.unlink()
                    removed += 1
        for name in dirs:
            with contextlib.suppress(OSError):  # not empty, or gone
                (Path(here) / name).rmdir()
    return removed


async def erase(store: Purging, data_dir: Path, identity: str) -> dict[str, int]:
    """Everything stored about `identity`, in every room: chat, captions, reports by or
    about it, and its evidence files; counted by kind."""
    counts = dict(await store.erase_identity(identity))
    counts["evidence_files"] = await asyncio.to_thread(
        erase_files, evidence_root(data_dir), identity
    )
    return counts


def identity_key(identity: str) -> str:
    """The folder an identity's evidence frames are kept in (<evidence>/<room>/<key>/): the
    layout of commhub.moderation.evidence_frames, which must stay in step with it."""
    return hashlib.sha256(identity.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def erase_files(root: Path, identity: str) -> int:
    """Remove one identity's evidence files in every room; returns how many."""
    removed = 0
    if not root.is_dir():
        return 0
    key = identity_key(identity)
    for room in root.iterdir():
        folder = room / key
        if room.is_symlink() or folder.is_symlink() or not folder.is_dir():
            continue
        removed += purge_files(folder, float("inf"))
        with contextlib.suppress(OSError):
            folder.rmdir()
    return removed
