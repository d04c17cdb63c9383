"""Desk definitions in the hub's database (the store's: `<data_dir>/commhub.db` by default,
or `database_url`), table `desks`, created by the store's Alembic migrations (0002_desks).

SQLAlchemy async: no call blocks the event loop. `commhub desk ...` uses the same class from
the command line while the hub runs (the database arbitrates); the hub reads a definition
again within seconds (commhub.desks.service.DEF_CACHE)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import fields
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
    Text,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from commhub.desks.model import DeskDef, DeskError
from commhub.store import default_url, migrate, server

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


def database_url(database_url: str, data_dir: Path) -> str:
    """The store's database: the setting, else SQLite under the data dir."""
    return database_url or default_url(data_dir)


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


class DeskStore:
    def __init__(self, url: str, busy_timeout: float = 5.0) -> None:
        self.url = url
        self.engine, _ = server.side_engine(url, busy_timeout)

    async def open(self) -> None:
        """The schema at its newest (a no-op when the hub's store migrated it already)."""
        await asyncio.to_thread(migrate.upgrade, self.url)

    async def close(self) -> None:
        await self.engine.dispose()

    async def create(self, d: DeskDef) -> DeskDef:
        try:
            async with self.engine.begin() as conn:
                await conn.execute(insert(desks).values(**_values(d), updated_at=time.time()))
        except IntegrityError:
            raise DeskError(409, "desk_exists", f"a desk named {d.name!r} exists") from None
        return d

    async def get(self, name: str) -> DeskDef | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(select(desks).where(desks.c.name == name))).first()
        return _row(row) if row else None

    async def list(self) -> list[DeskDef]:
        async with self.engine.connect() as conn:
            rows = (await conn.execute(select(desks).order_by(desks.c.name))).all()
        return [_row(r) for r in rows]

    async def save(self, d: DeskDef) -> bool:
        values = _values(d)
        values.pop("name")
        async with self.engine.begin() as conn:
            cur = await conn.execute(
                update(desks).where(desks.c.name == d.name).values(**values, updated_at=time.time())
            )
        return cur.rowcount > 0

    async def delete(self, name: str) -> bool:
        async with self.engine.begin() as conn:
            cur = await conn.execute(delete(desks).where(desks.c.name == name))
        return cur.rowcount > 0
