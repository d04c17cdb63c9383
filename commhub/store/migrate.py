"""Alembic, driven from code: the scripts ship inside the package (migrations/), so an
installed wheel migrates its database without an alembic.ini. Blocking: call it in a
worker thread (Store.start does)."""

from __future__ import annotations

import threading
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config


def config(url: str, connect_args: dict[str, Any] | None = None) -> Config:
    cfg = Config()
    cfg.attributes["connect_args"] = connect_args or {}
    cfg.set_main_option("script_location", str(resources.files("commhub.store") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["url"] = url
    return cfg


# Alembic's `context` is one proxy per process: two upgrades in two threads at once would
# tear it down under each other. Between processes (nodes) the database serializes them
# (env.py: an advisory lock on PostgreSQL, the write lock on SQLite).
_ONE_AT_A_TIME = threading.Lock()


def upgrade(url: str, revision: str = "heads", connect_args: dict[str, Any] | None = None) -> None:
    """Bring the database at url to the newest schema (every branch's head)."""
    with _ONE_AT_A_TIME:
        command.upgrade(config(url, connect_args), revision)


def current(url: str) -> None:
    command.current(config(url))
