"""Alembic environment: the hub runs it in a worker thread (commhub.store.migrate), with
its own event loop, through the same async driver as the hub (aiosqlite, asyncpg).

On PostgreSQL several nodes may start together against one database: the upgrade runs
under a transaction-level advisory lock, so one node migrates and the others wait, then
find the schema current (SQLite's write lock does the same for one file)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from commhub.store.models import metadata
from commhub.store.server import LOCK_KEY, connect_args, unreachable

config = context.config
url = str(config.attributes.get("url") or config.get_main_option("sqlalchemy.url"))


def _migrate(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # held until this transaction (every migration: PostgreSQL's DDL is transactional)
        # commits or rolls back; Alembic then runs inside it
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": LOCK_KEY})
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite cannot ALTER much
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run() -> None:
    args = connect_args(url, config.attributes.get("connect_args") or {})
    engine = create_async_engine(url, connect_args=args)
    try:
        conn = engine.connect()
        try:
            await conn.start()
        except Exception as exc:
            if (error := unreachable(url, exc)) is not None:
                raise error from None
            raise
        try:
            await conn.run_sync(_migrate)
            await conn.commit()
        finally:
            await conn.close()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=url, target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run())
