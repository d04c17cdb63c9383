"""Alembic, driven from code: the scripts ship inside the package (migrations/), so an
installed wheel migrates its database without an alembic.ini. Blocking: call it in a
worker thread (Store.start does)."""

from __future__ import annotations

from importlib import resources

from alembic import command
from alembic.config import Config


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(resources.files("commhub.store") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    cfg.attributes["url"] = url
    return cfg


def upgrade(url: str, revision: str = "heads") -> None:
    """Bring the database at url to the newest schema (every branch's head)."""
    command.upgrade(config(url), revision)


def current(url: str) -> None:
    command.current(config(url))
