"""Desk definitions in the hub's database (`<data_dir>/commhub.db`, table `desks`).

The table is created by the store's Alembic migrations; the hub talks to it from one worker
thread (no call blocks the event loop) and `commhub desk ...` from the command line, while
the hub runs: SQLite arbitrates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from commhub.desks.model import DeskDef, DeskError

T = TypeVar("T")

metadata = MetaData()
desks = Table(
    "desks",
    metadata,
    Column("name", String(63), primary_key=True),
    Column("title", String(120), nullable=False),
    Column("languages", JSON, nullable=False),
    Column("topics", JSON, nullable=False),
    Column("hours", Text, nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("closed_message", Text, nullable=False),
    Column("max_queue", Integer, nullable=False),
    Column("assign", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)


def db_path(data_dir: Path) -> Path:
    return data_dir / "commhub.db"


def sync_url(data_dir: Path) -> str:
    return f"sqlite:///{db_path(data_dir)}"


def _row(row: Any) -> DeskDef:
    m = row._mapping
    return DeskDef(
        name=m["name"],
        title=m["title"],
        languages=tuple(m["languages"]),
        topics=tuple(m["topics"]),
        hours=m["hours"],
        timezone=m["timezone"],
        closed_message=m["closed_message"],
        max_queue=m["max_queue"],
        assign=m["assign"],
        created_at=m["created_at"],
    )


def _values(d: DeskDef) -> dict[str, Any]:
    out = {f.name: getattr(d, f.name) for f in fields(d)}
    out["languages"], out["topics"] = list(d.languages), list(d.topics)
    return out


class DeskDB:
    """The desks table (synchronous): one per process and thread."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, connect_args={"timeout": 10.0})

        @event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    def ensure(self) -> None:
        """Create the table where migrations have not (a database the store never ran on)."""
        Path(self.engine.url.database or ".").parent.mkdir(parents=True, exist_ok=True)
        metadata.create_all(self.engine, checkfirst=True)

    def close(self) -> None:
        self.engine.dispose()

    def create(self, d: DeskDef) -> DeskDef:
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(desks).values(**_values(d), updated_at=time.time()))
        except IntegrityError:
            raise DeskError(409, "desk_exists", f"a desk named {d.name!r} exists") from None
        return d

    def get(self, name: str) -> DeskDef | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(desks).where(desks.c.name == name)).first()
        return _row(row) if row else None

    def list(self) -> list[DeskDef]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(desks).order_by(desks.c.name)).all()
        return [_row(r) for r in rows]

    def save(self, d: DeskDef) -> bool:
        values = _values(d)
        values.pop("name")
        with self.engine.begin() as conn:
            cur = conn.execute(
                update(desks).where(desks.c.name == d.name).values(**values, updated_at=time.time())
            )
        return cur.rowcount > 0

    def delete(self, name: str) -> bool:
        with self.engine.begin() as conn:
            cur = conn.execute(delete(desks).where(desks.c.name == name))
        return cur.rowcount > 0


class DeskStore:
    """The hub's async face of DeskDB: every call runs in the store's one thread."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="desks")
        self._db: DeskDB | None = None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _open(self) -> None:
        self._db = DeskDB(self.url)
        self._db.ensure()

    async def open(self) -> None:
        await self._call(self._open)

    @property
    def db(self) -> DeskDB:
        assert self._db is not None, "DeskStore.open() first"
        return self._db

    async def create(self, d: DeskDef) -> DeskDef:
        return await self._call(self.db.create, d)

    async def get(self, name: str) -> DeskDef | None:
        return await self._call(self.db.get, name)

    async def list(self) -> list[DeskDef]:
        return await self._call(self.db.list)

    async def save(self, d: DeskDef) -> bool:
        return await self._call(self.db.save, d)

    async def delete(self, name: str) -> bool:
        return await self._call(self.db.delete, name)

    async def close(self) -> None:
        if self._db is not None:
            await self._call(self._db.close)
            self._db = None
        self._executor.shutdown(wait=False)
