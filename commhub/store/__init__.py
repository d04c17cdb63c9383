"""The store: SQLAlchemy 2 (async) over SQLite by default, or PostgreSQL (several hub
nodes share one); Alembic migrations shipped in the package and run at start, off the
event loop."""

from commhub.store.store import Store, default_url
from commhub.store.writer import StoreError, StoreUnreachable

__all__ = ["Store", "StoreError", "StoreUnreachable", "default_url"]
