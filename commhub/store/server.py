"""What a database server (PostgreSQL) needs beyond an embedded file: a connect timeout, one
clear error when it cannot be reached at start, and the advisory lock that serializes
migrations between nodes."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from commhub.store.writer import StoreUnreachable, describe

# pg_advisory_xact_lock's key for schema upgrades: any fixed 64-bit number; this one is
# derived from a name so that it says whose it is
LOCK_KEY = zlib.crc32(b"commhub.store.migrate")

CONNECT_TIMEOUT = 10.0  # seconds to open a connection (asyncpg's own default is 60)


def is_server(url: str) -> bool:
    return make_url(url).get_backend_name() != "sqlite"


def connect_args(url: str, given: dict[str, Any]) -> dict[str, Any]:
    """The driver's connect arguments: `given`, plus a connect timeout for asyncpg."""
    args = dict(given)
    if make_url(url).get_driver_name() == "asyncpg":
        args.setdefault("timeout", CONNECT_TIMEOUT)
    return args


def engine_options(url: str, given: dict[str, Any]) -> dict[str, Any]:
    """create_async_engine's options for url: a server's pooled connections are checked
    before use (a restarted server is reconnected to, not failed on once per connection)."""
    return {"connect_args": connect_args(url, given), "pool_pre_ping": is_server(url)}


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def unreachable(url: str, exc: BaseException) -> StoreUnreachable | None:
    """The error for a database server that could not be connected to (refused, timed out,
    unknown host, authentication, no such database): one line naming host:port and the URL
    without its password. None for SQLite (a file is never unreachable: the store starts and
    reports it through /readyz)."""
    if not is_server(url):
        return None
    parsed = make_url(url)
    name = {"postgresql": "PostgreSQL"}.get(parsed.get_backend_name(), parsed.get_backend_name())
    port = parsed.port or (5432 if parsed.get_backend_name() == "postgresql" else None)
    where = f"{parsed.host or 'localhost'}" + (f":{port}" if port else "")
    return StoreUnreachable(
        f"cannot connect to {name} at {where} ({redacted(url)}): {describe(exc)}"
    )


def side_engine(url: str, busy_timeout: float) -> tuple[AsyncEngine, dict[str, Any]]:
    """An engine for a part with its own tables in the store's database (desks, invites):
    an SQLite file's folder made and WAL on, a server's connections checked before use.
    Returns the engine and the driver's connect arguments (migrations use them too)."""
    parsed = make_url(url)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    args: dict[str, Any] = {"timeout": busy_timeout} if sqlite else {}
    engine = create_async_engine(url, **engine_options(url, args))
    if sqlite:

        @event.listens_for(engine.sync_engine, "connect")
        def _wal(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.close()

    return engine, args
