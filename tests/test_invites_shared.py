"""Invites in the hub's database, shared by every node on it: two real hub apps on one
database (each its own engine and connection pool, as two processes would have), the old
invites.sqlite3 imported once, the migration matching the table, a dead database refused
with 503 while the hub runs on."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from commhub.store import default_url
from commhub.store.invites import InviteError, InviteStore, metadata
from tests.conftest import Running, StartHub
from tests.helpers.http import admin_headers, call
from tests.helpers.hubproc import free_port


async def mint(hub: Running, http: aiohttp.ClientSession, **spec: Any) -> str:
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/invites", json=spec, headers=admin_headers(spec["room"])
    )
    assert status == 201, body
    return str(body["code"])


async def redeem(hub: Running, http: aiohttp.ClientSession, code: str) -> tuple[int, Any]:
    body = {"name": "Minji", "speak": "ko", "read": "en"}
    return await call(http, "POST", f"{hub.url}/v1/invites/{code}/redeem", json=body)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The nodes' database: the store's SQLite file ("" = the default under the data dir),
    or a real PostgreSQL (the postgres_url fixture of tests/conftest.py)."""
    if request.param == "sqlite":
        return ""
    try:
        return str(request.getfixturevalue("postgres_url"))
    except pytest.FixtureLookupError:
        pytest.skip("no postgres_url fixture in tests/conftest.py")


async def two_nodes(start_hub: StartHub, database_url: str) -> tuple[Running, Running]:
    # one after the other: the first migrates the database, the second finds it current
    a = await start_hub(database_url=database_url)
    b = await start_hub(database_url=database_url)
    assert a.hub is not b.hub
    return a, b


async def test_an_invite_minted_on_one_node_works_on_the_other(
    start_hub: StartHub, http: aiohttp.ClientSession, database_url: str
) -> None:
    a, b = await two_nodes(start_hub, database_url)
    code = await mint(a, http, room="desk-1", uses=3)
    status, shown = await call(http, "GET", f"{b.url}/v1/invites/{code}")
    assert (status, shown["room"], shown["uses_left"]) == (200, "desk-1", 3)
    assert (await redeem(b, http, code))[0] == 200
    assert (await redeem(a, http, code))[0] == 200
    # each node sees the uses the other took
    for node in (a, b):
        status, shown = await call(http, "GET", f"{node.url}/v1/invites/{code}")
        assert (status, shown["uses_left"]) == (200, 1)
    # revoked on b: refused on a at once, and a's admin list says so
    async with http.delete(f"{b.url}/v1/admin/invites/{code}", headers=admin_headers()) as r:
        assert r.status == 204
    status, body = await redeem(a, http, code)
    assert (status, body["error"]) == (410, "invite_revoked")
    status, listed = await call(
        http, "GET", f"{a.url}/v1/admin/invites?room=desk-1", headers=admin_headers("desk-1")
    )
    assert status == 200
    mine = [(i["status"], i["uses_left"]) for i in listed["invites"] if i["code"] == code]
    assert mine == [("revoked", 1)]


async def test_the_last_use_goes_to_exactly_one_node(
    start_hub: StartHub, http: aiohttp.ClientSession, database_url: str
) -> None:
    a, b = await two_nodes(start_hub, database_url)
    for _ in range(5):  # several rounds: each is a fresh race between the two databases' pools
        code = await mint(a, http, room="lobby", uses=2)
        assert (await redeem(a, http, code))[0] == 200  # one use left
        results = await asyncio.gather(*(redeem(n, http, code) for n in (a, b, a, b)))
        statuses = sorted(s for s, _ in results)
        assert statuses == [200, 410, 410, 410], results
        assert {b["error"] for s, b in results if s == 410} == {"invite_used_up"}
        status, shown = await call(http, "GET", f"{b.url}/v1/invites/{code}")
        assert (status, shown["error"]) == (410, "invite_used_up")


def old_invite_file(path: Path, rows: list[tuple[Any, ...]]) -> None:
    """The file the hub used before invites moved into its database, in that schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(
        """CREATE TABLE invites (
            code TEXT PRIMARY KEY, room TEXT NOT NULL, created_at REAL NOT NULL,
            expires_at REAL NOT NULL, uses INTEGER, uses_left INTEGER,
            role TEXT NOT NULL, grants TEXT NOT NULL, media_mode TEXT, revoked_at REAL)"""
    )
    db.executemany("INSERT INTO invites VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    db.commit()
    db.close()


async def test_the_old_invite_file_is_imported_once(
    start_hub: StartHub, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    now = time.time()
    grants = json.dumps(["chat", "publish"])
    old = tmp_path / "data" / "invites.sqlite3"
    old_invite_file(old, [
        ("A" * 22, "desk-1", now, now + 3600, 2, 1, "guest", grants, None, None),
        ("B" * 22, "desk-2", now, now + 3600, None, None, "guest", grants, "p2p", now),
    ])  # fmt: skip
    hub = await start_hub()
    assert not old.exists() and old.with_name("invites.sqlite3.imported").is_file()
    status, shown = await call(http, "GET", f"{hub.url}/v1/invites/{'A' * 22}")
    assert (status, shown["room"], shown["uses_left"]) == (200, "desk-1", 1)  # one was used
    status, got = await redeem(hub, http, "A" * 22)
    assert status == 200 and got["room"] == "desk-1"
    status, body = await redeem(hub, http, "B" * 22)
    assert (status, body["error"]) == (410, "invite_revoked")

    # a file that turns up again (a restored backup) adds what is new, keeps what is there
    old_invite_file(old, [
        ("A" * 22, "desk-1", now, now + 3600, 2, 2, "guest", grants, None, None),
        ("C" * 22, "desk-3", now, now + 3600, 1, 1, "host", grants, None, None),
    ])  # fmt: skip
    store = InviteStore(default_url(tmp_path / "data"), legacy_dir=tmp_path / "data")
    try:
        await store.open()
        a, c = await store.get("A" * 22), await store.get("C" * 22)
    finally:
        await store.close()
    assert a is not None and a.uses_left == 0  # not reset to the file's 2
    assert c is not None and (c.room, c.role, c.grants) == ("desk-3", "host", ("chat", "publish"))


def about_invites(diff: Any) -> bool:
    """Other tables are other parts' (tests/test_store.py checks the store's)."""
    first = diff[0] if isinstance(diff, list) else diff
    for item in first[1:]:
        table = getattr(item, "table", item)
        if getattr(table, "name", table) == "invites":
            return True
    return False


async def test_the_migration_builds_the_invites_table_the_code_uses(tmp_path: Path) -> None:
    store = InviteStore(default_url(tmp_path))
    try:
        await store.open()

        def compare(conn: Any) -> list[Any]:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            return [d for d in compare_metadata(context, metadata) if about_invites(d)]

        async with store.engine.connect() as conn:
            assert await conn.run_sync(compare) == []
    finally:
        await store.close()


async def test_a_dead_database_is_503_and_the_hub_runs_on(
    start_hub: StartHub, http: aiohttp.ClientSession
) -> None:
    # nothing listens there: every call fails fast, as when the cluster's database is down
    url = f"postgresql+asyncpg://commhub:x@127.0.0.1:{free_port()}/commhub"
    hub = await start_hub(database_url=url, store=False)
    status, body = await call(http, "GET", f"{hub.url}/v1/invites/{'A' * 22}")
    assert (status, body["error"]) == (503, "store_unavailable")
    status, body = await call(
        http, "POST", f"{hub.url}/v1/admin/invites", json={"room": "r"}, headers=admin_headers()
    )
    assert (status, body["error"]) == (503, "store_unavailable")
    assert "x@" not in body["message"]  # the password stays out of answers
    status, _ = await call(http, "GET", f"{hub.url}/healthz")
    assert status == 200


async def test_a_hanging_database_is_503_within_the_timeout_not_a_hung_page() -> None:
    # a database host that accepts connections and never answers (a hung server, a
    # half-open network path): each call gives up after the store's timeout
    accepted: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    store = InviteStore(f"postgresql+asyncpg://commhub:x@127.0.0.1:{port}/commhub", timeout=1.0)
    try:
        for _ in range(2):
            with pytest.raises(InviteError) as refused:
                await store.get("A" * 22)
            assert (refused.value.status, refused.value.code) == (503, "store_unavailable")
        assert len(accepted) == 1  # the second call waited for the first's migration
    finally:
        server.close()
        for writer in accepted:  # the migration thread's connection fails now, and it ends
            writer.close()
        await server.wait_closed()
        await store.close()
