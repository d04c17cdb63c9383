"""The store: SQLAlchemy 2 (async) over SQLite by default, PostgreSQL later; Alembic
migrations shipped in the package and run at start, off the event loop."""

from commhub.store.store import Store, default_url
from commhub.store.writer import StoreError

__all__ = ["Store", "StoreError", "default_url"]
