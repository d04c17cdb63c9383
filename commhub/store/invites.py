"""Invites in the hub's database (the store's: `<data_dir>/commhub.db` by default, or
`database_url`), table `invites`, created by the store's Alembic migrations (0003_invites).

Every node of a cluster reads and writes the same rows, so an invite minted on one node is
redeemable on any other, a revoke is seen everywhere, and a use is counted once: redeeming
is one conditional UPDATE (`uses_left > 0`), which the database serialises, never a read
then a write. SQLAlchemy async: no call blocks the event loop. `commhub invite` uses the same
class from the command line while the hub runs.

Invites used to live in their own SQLite file under the data dir (`invites.sqlite3`); open()
copies its rows in once (codes already present are kept) and renames it `.imported`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    and_,
    delete,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from commhub.store import migrate, server
from commhub.store.writer import StoreError, describe

log = logging.getLogger("commhub.invites")

# what a database that is down, hung or refusing raises (StoreError: the store's migration
# says "unreachable" in its own words); TimeoutError is an OSError
DATABASE_FAULTS = (SQLAlchemyError, OSError, StoreError)
KEEP_ENDED = 7 * 86400.0  # ended invites are still listed this long, then purged
LEGACY_FILE = "invites.sqlite3"  # where invites lived before they moved to the store

metadata = MetaData()
invites = Table(
    "invites",
    metadata,
    Column("code", String(64), primary_key=True),
    Column("room", String(128), nullable=False, index=True),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False, index=True),
    Column("uses", Integer, nullable=True),  # None: unlimited
    Column("uses_left", Integer, nullable=True),
    Column("role", String(16), nullable=False),
    Column("grants", JSON, nullable=False),
    Column("media_mode", String(8), nullable=True),
    Column("revoked_at", Float, nullable=True),
)


class InviteError(Exception):
    """A refused invite or request: HTTP status, stable code, words for people."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unavailable(exc: BaseException) -> InviteError:
    """A database fault: the details to the log, not to whoever called."""
    log.warning("the invite database failed: %s", describe(exc))
    return InviteError(503, "store_unavailable", "the invite database cannot answer now; retry")


@dataclass(frozen=True)
class Invite:
    code: str
    room: str
    created_at: float
    expires_at: float
    uses: int | None  # None: unlimited
    uses_left: int | None
    role: str
    grants: tuple[str, ...]
    media_mode: str | None
    revoked_at: float | None

    def status(self, now: float) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if now >= self.expires_at:
            return "expired"
        if self.uses_left is not None and self.uses_left <= 0:
            return "used_up"
        return "active"

    def refusal(self, now: float) -> InviteError | None:
        state = self.status(now)
        words = {
            "revoked": "this invite was revoked",
            "expired": "this invite has expired",
            "used_up": "this invite has been used as many times as it allows",
        }
        if state == "active":
            return None
        return InviteError(410, f"invite_{state}", words[state])

    @property
    def url(self) -> str:
        return f"/join/{self.code}"

    def public(self) -> dict[str, Any]:
        return {"room": self.room, "expires_at": int(self.expires_at), "uses_left": self.uses_left}

    def wire(self, now: float) -> dict[str, Any]:
        return {
            "code": self.code,
            "room": self.room,
            "url": self.url,
            "created_at": int(self.created_at),
            "expires_at": int(self.expires_at),
            "uses": self.uses,
            "uses_left": self.uses_left,
            "role": self.role,
            "grants": list(self.grants),
            "media_mode": self.media_mode,
            "status": self.status(now),
        }


def _row(row: Any) -> Invite:
    m = row._mapping
    return Invite(
        code=m["code"],
        room=m["room"],
        created_at=m["created_at"],
        expires_at=m["expires_at"],
        uses=m["uses"],
        uses_left=m["uses_left"],
        role=m["role"],
        grants=tuple(m["grants"]),
        media_mode=m["media_mode"],
        revoked_at=m["revoked_at"],
    )


def _values(invite: Invite) -> dict[str, Any]:
    return {
        "code": invite.code,
        "room": invite.room,
        "created_at": invite.created_at,
        "expires_at": invite.expires_at,
        "uses": invite.uses,
        "uses_left": invite.uses_left,
        "role": invite.role,
        "grants": list(invite.grants),
        "media_mode": invite.media_mode,
        "revoked_at": invite.revoked_at,
    }


class InviteStore:
    """The invite table, async. `legacy_dir`: the data dir whose old `invites.sqlite3` is
    imported by open() (None: nothing to import)."""

    def __init__(
        self,
        url: str,
        legacy_dir: Path | None = None,
        busy_timeout: float = 5.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.legacy_dir = legacy_dir
        self.engine, self._connect_args = server.side_engine(url, busy_timeout)
        self._migrated = False
        self._migration: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """The schema at its newest (a no-op once the hub's store migrated it), the old
        file imported, invites that ended long ago purged. Raises when the database cannot
        be used; every call tries again later (see _ready)."""
        async with asyncio.timeout(self.timeout):
            await self._ready()
        if self.legacy_dir is not None:
            await self.import_legacy(self.legacy_dir / LEGACY_FILE)
        async with asyncio.timeout(self.timeout), self.engine.begin() as conn:
            await conn.execute(
                delete(invites).where(invites.c.expires_at < time.time() - KEEP_ENDED)
            )

    async def _ready(self) -> None:
        """Migrated once. One migration at a time: a caller that gives up (timeout) leaves
        it running for the next, which waits for it instead of starting another."""
        if self._migrated:
            return
        running = self._migration
        if running is None:
            running = self._migration = asyncio.ensure_future(
                asyncio.to_thread(migrate.upgrade, self.url, connect_args=self._connect_args)
            )
            running.add_done_callback(lambda f: f.cancelled() or f.exception())  # seen
        try:
            await asyncio.shield(running)
        except Exception:
            if self._migration is running:
                self._migration = None  # failed: the next call tries again
            raise
        self._migrated = True

    @contextlib.asynccontextmanager
    async def _guard(self) -> AsyncIterator[None]:
        """A call on a migrated database, bounded in time (a database that hangs must not
        hold a join page); any fault becomes InviteError 503 store_unavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                await self._ready()
                yield
        except DATABASE_FAULTS as exc:
            raise unavailable(exc) from exc

    async def close(self) -> None:
        await self.engine.dispose()

    async def create(self, spec: dict[str, Any], now: float | None = None) -> Invite:
        """`spec` as commhub.server.invites.validate() returns it."""
        now = time.time() if now is None else now
        invite = Invite(
            code=secrets.token_urlsafe(16),  # 128 random bits
            room=spec["room"],
            created_at=now,
            expires_at=now + spec["ttl"],
            uses=spec["uses"],
            uses_left=spec["uses"],
            role=spec["role"],
            grants=tuple(spec["grants"]),
            media_mode=spec["media_mode"],
            revoked_at=None,
        )
        async with self._guard(), self.engine.begin() as conn:
            await conn.execute(insert(invites).values(**_values(invite)))
        return invite

    async def get(self, code: str) -> Invite | None:
        async with self._guard(), self.engine.connect() as conn:
            row = (await conn.execute(select(invites).where(invites.c.code == code))).first()
        return _row(row) if row else None

    async def list(self, room: str | None = None) -> list[Invite]:
        query = select(invites).order_by(invites.c.created_at)
        if room is not None:
            query = query.where(invites.c.room == room)
        async with self._guard(), self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [_row(r) for r in rows]

    async def revoke(self, code: str, now: float | None = None) -> bool:
        stamp = time.time() if now is None else now
        async with self._guard(), self.engine.begin() as conn:
            cur = await conn.execute(
                update(invites)
                .where(invites.c.code == code, invites.c.revoked_at.is_(None))
                .values(revoked_at=stamp)
            )
            if cur.rowcount == 0:  # revoked before (kept as it was) or no such code
                found = await conn.execute(select(invites.c.code).where(invites.c.code == code))
                return found.first() is not None
        return True

    async def redeem(self, code: str, now: float | None = None) -> Invite:
        """Take one use, or raise the reason it cannot be used. One conditional UPDATE: of
        two redeems of the last use, on one node or two, one wins and one gets
        invite_used_up (the database orders them; the loser's WHERE no longer holds)."""
        now = time.time() if now is None else now
        usable = and_(
            invites.c.code == code,
            invites.c.revoked_at.is_(None),
            invites.c.expires_at > now,
            or_(invites.c.uses_left.is_(None), invites.c.uses_left > 0),
        )
        async with self._guard(), self.engine.begin() as conn:
            # uses_left NULL (unlimited) stays NULL: NULL - 1 is NULL
            cur = await conn.execute(
                update(invites).where(usable).values(uses_left=invites.c.uses_left - 1)
            )
            # in the same transaction: the row is ours (locked) until the commit
            row = (await conn.execute(select(invites).where(invites.c.code == code))).first()
        if row is None:
            raise InviteError(404, "invite_not_found", "no such invite")
        invite = _row(row)
        if cur.rowcount == 1:
            return invite
        refusal = invite.refusal(now)
        # the UPDATE missed, so the row cannot be usable; used_up is the only race left
        raise refusal or InviteError(410, "invite_used_up", "this invite has been used up")

    async def import_legacy(self, path: Path) -> int:
        """Copy the invites of the old SQLite file in (codes already here are kept as they
        are), then rename the file `<name>.imported` so it is read once. The number copied."""
        rows = await asyncio.to_thread(_read_legacy, path)
        if rows is None:
            return 0
        async with self.engine.begin() as conn:
            have = set((await conn.execute(select(invites.c.code))).scalars())
            fresh = [r for r in rows if r.code not in have]
            if fresh:
                await conn.execute(insert(invites), [_values(r) for r in fresh])
        copied = len(fresh)
        try:
            await asyncio.to_thread(path.rename, path.with_name(path.name + ".imported"))
        except OSError as exc:  # read-only data dir: the next start copies nothing new again
            log.warning("invites imported from %s, but it cannot be renamed: %s", path, exc)
        log.info("imported %d invite(s) from %s into the hub's database", copied, path)
        return copied


def _read_legacy(path: Path) -> list[Invite] | None:
    """The old file's invites; None (and the file left alone) when there is none, or it
    cannot be read."""
    if not path.is_file():
        return None
    db = sqlite3.connect(path, timeout=10.0)
    try:
        rows = db.execute(
            "SELECT code, room, created_at, expires_at, uses, uses_left, role, grants,"
            " media_mode, revoked_at FROM invites"
        ).fetchall()
    except sqlite3.DatabaseError as exc:  # not an invite file after all: leave it alone
        log.warning("cannot read old invites from %s: %s", path, exc)
        return None
    finally:
        db.close()  # the last connection: its write-ahead log is checkpointed and removed
    out = []
    for code, room, created, expires, uses, left, role, grants, mode, revoked in rows:
        out.append(Invite(code, room, created, expires, uses, left, role,
                          tuple(json.loads(grants)), mode, revoked))  # fmt: skip
    return out
