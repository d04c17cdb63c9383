"""The store on a real PostgreSQL, where it differs from one SQLite file: nodes migrating
one database together, the server restarting under a running store and hub (writes queued,
none lost, none twice), a server that cannot be reached at start (one clear line, exit 3),
desk definitions shared through it. tests/test_store.py runs every store test on both."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from typing import Any

import aiohttp
import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from commhub import protocol
from commhub.store import Store, StoreError, StoreUnreachable, migrate
from commhub.store.server import LOCK_KEY
from tests.conftest import SECRET, StartHub, run_cli
from tests.helpers.desks import make_desk
from tests.helpers.http import admin_headers, call
from tests.helpers.hubproc import free_port
from tests.helpers.services import PostgresServer
from tests.helpers.wait import barrier

QUIET = {"captions": False, "translation": False}


def plain(url: str) -> dict[str, Any]:
    """asyncpg.connect arguments for a postgresql+asyncpg:// URL of the test server."""
    rest = url.split("@", 1)[1]
    hostport, database = rest.split("/", 1)
    host, port = hostport.split(":")
    return {"host": host, "port": int(port), "user": PostgresServer.USER, "database": database}


async def tables(url: str) -> set[str]:
    conn = await asyncpg.connect(**plain(url))
    try:
        rows = await conn.fetch("select tablename from pg_tables where schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


def chat(n: int, identity: str = "alice") -> dict[str, Any]:
    return protocol.chat(
        chat_id=f"CH_{identity}_{n}",
        sender={"id": f"PA_{identity}", "identity": identity, "name": identity.title()},
        text=f"message {n} from {identity}",
        lang="en",
        ts=1_700_000_000 + n,
    )


def caption(n: int) -> dict[str, Any]:
    final = protocol.caption(
        segment=f"SG_{n}", speaker="PA_bob", lang="en", final=True, text=f"caption {n}",
        start=n, end=n + 1.0, track_start=1_700_000_000.0, words=[], confidence=0.9,
    )  # fmt: skip
    return {**final, "identity": "bob", "name": "Bob"}


# -- migrations ----------------------------------------------------------------------------


async def test_nodes_starting_together_migrate_once(postgres_url: str) -> None:
    """Three processes upgrade an empty database at once (three nodes starting): the
    advisory lock lets one create the schema; the others wait, then find it current."""
    code = "import sys; from commhub.store import migrate; migrate.upgrade(sys.argv[1])"
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, postgres_url, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    outcomes = [await asyncio.wait_for(p.communicate(), 180) for p in procs]
    for p, (_, err) in zip(procs, outcomes, strict=True):
        assert p.returncode == 0, err.decode()[-2000:]
    heads = ScriptDirectory.from_config(migrate.config(postgres_url)).get_heads()
    conn = await asyncpg.connect(**plain(postgres_url))
    try:
        versions = [r["version_num"] for r in await conn.fetch("select * from alembic_version")]
    finally:
        await conn.close()
    assert sorted(versions) == sorted(heads)
    assert {"chat", "captions", "desks", "store_meta"} <= await tables(postgres_url)


async def test_an_upgrade_waits_for_the_migration_lock(postgres_url: str) -> None:
    holder = await asyncpg.connect(**plain(postgres_url))
    try:
        await holder.execute("select pg_advisory_lock($1)", LOCK_KEY)
        done = threading.Event()

        def upgrade() -> None:
            migrate.upgrade(postgres_url)
            done.set()

        upgrading = asyncio.create_task(asyncio.to_thread(upgrade))
        await asyncio.sleep(2.0)  # long enough for an unlocked upgrade on a busy machine
        assert not done.is_set() and "chat" not in await tables(postgres_url)
        await holder.execute("select pg_advisory_unlock($1)", LOCK_KEY)
        await asyncio.wait_for(upgrading, 120)
    finally:
        await holder.close()
    assert "chat" in await tables(postgres_url)


# -- a server that cannot be reached at start ----------------------------------------------


async def test_an_unreachable_server_at_start_is_one_clear_error(
    postgres_server: PostgresServer,
) -> None:
    port = free_port()  # nothing listens there
    s = Store(f"postgresql+asyncpg://commhub:s3cret@127.0.0.1:{port}/hub")
    with pytest.raises(StoreUnreachable) as refused:
        await s.start()
    said = str(refused.value)
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in said
    assert "commhub:***@" in said and "s3cret" not in said and "\n" not in said
    assert "Connect call failed" in said or "Connection refused" in said
    assert s.status()[0] is False

    missing = Store(postgres_server.url_of("no_such_db"))  # reached, but no database
    with pytest.raises(StoreUnreachable, match=r"no_such_db.*does not exist"):
        await missing.start()


def test_serve_says_which_database_it_cannot_reach_and_exits_3(tmp_path: Any) -> None:
    port = free_port()
    url = f"postgresql+asyncpg://commhub:s3cret@127.0.0.1:{port}/hub"
    env = {**os.environ, "COMMHUB_DATA_DIR": str(tmp_path / "data"), "COMMHUB_SECRET": SECRET,
           "COMMHUB_DATABASE_URL": url, "COMMHUB_TRANSLATION": "false",
           "COMMHUB_CAPTIONS": "false", "COMMHUB_MODERATION": "false"}  # fmt: skip
    done = run_cli("serve", "--port", "0", env=env)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "listening" not in done.stdout
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr and "s3cret" not in done.stderr
    said = [line for line in lines if line.startswith("commhub serve:")]
    assert len(said) == 1, done.stderr
    assert f"cannot connect to PostgreSQL at 127.0.0.1:{port}" in said[0]
    assert "postgresql+asyncpg://commhub:***@" in said[0]


# -- the server restarting under a running store -------------------------------------------


async def test_a_server_restart_loses_no_queued_write_and_writes_none_twice(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    """Captions, events and translations are queued through the outage and committed after
    it; a chat is acknowledged only once committed (during the outage it fails at once).
    Afterwards every acknowledged chat and every queued write is there exactly once."""
    s = Store(postgres_url, retry=0.5)
    await s.start()
    acked: list[int] = []
    refused: list[int] = []
    queued = 0
    down = asyncio.Event()
    during: list[int] = []  # writes queued while the server was down

    async def produce() -> None:
        nonlocal queued
        n = 0
        while True:
            n += 1
            s.add_caption("lobby", caption(n), {})
            s.add_event("lobby", "note", {"n": n})
            queued = n
            if down.is_set():
                during.append(n)
            try:
                await s.add_chat("lobby", chat(n))
            except StoreError:
                refused.append(n)
            else:
                acked.append(n)
                info = {"lang": "ko", "status": "ok", "text": f"메시지 {n}"}
                s.add_chat_translation("lobby", f"CH_alice_{n}", "ko", info)
            await asyncio.sleep(0.01)

    producer = asyncio.create_task(produce())
    try:
        async with asyncio.timeout(120):
            while len(acked) < 30:
                await asyncio.sleep(0.05)
        down.set()
        await postgres_server.stop()
        async with asyncio.timeout(60):
            while len(during) < 30 or not refused:
                await asyncio.sleep(0.05)
        ok, detail = s.status()
        assert not ok and "database error" in detail
        assert s.writer.pending > 0  # held, not dropped
        before = len(acked)
        down.clear()
        await postgres_server.start()
        async with asyncio.timeout(120):  # the writer reconnects by itself
            while len(acked) < before + 30:
                await asyncio.sleep(0.05)
    finally:
        producer.cancel()
        await asyncio.gather(producer, return_exceptions=True)
        if not postgres_server.running:
            await postgres_server.start()
    await s.close()
    dropped = sum(
        x.value for x in s.metrics.dropped.collect()[0].samples if x.name.endswith("_total")
    )
    assert dropped == 0

    conn = await asyncpg.connect(**plain(postgres_url))
    try:
        chats = [r["chat_id"] for r in await conn.fetch("select chat_id from chat")]
        segments = [r["segment"] for r in await conn.fetch("select segment from captions")]
        notes = [r["n"] for r in await conn.fetch(
            "select (data->>'n')::int as n from moderation_events"
        )]  # fmt: skip
        translated = [
            r["chat_id"] for r in await conn.fetch("select chat_id from chat_translations")
        ]
    finally:
        await conn.close()
    assert {f"CH_alice_{n}" for n in acked} <= set(chats)  # nothing acknowledged is lost
    assert len(chats) == len(set(chats))
    assert sorted(segments) == sorted(f"SG_{n}" for n in range(1, queued + 1))  # once each
    assert sorted(notes) == list(range(1, queued + 1))
    assert sorted(translated) == sorted(f"CH_alice_{n}" for n in acked)
    assert refused and during  # the outage was real: chats refused, writes queued meanwhile


# -- the hub on PostgreSQL -----------------------------------------------------------------


async def test_a_hub_on_postgresql_keeps_history_across_a_hub_restart_and_a_server_restart(
    start_hub: StartHub,
    http: aiohttp.ClientSession,
    postgres_server: PostgresServer,
    postgres_url: str,
) -> None:
    hub = await start_hub(database_url=postgres_url, chat_history=50, **QUIET)
    a = await hub.joined(identity="a")
    b = await hub.joined(identity="b")
    for n in range(3):
        await a.send({"type": "chat", "text": f"before {n}", "id": f"b{n}"})
        await a.expect("chat", ref=f"b{n}")
    status, body = await call(http, "GET", f"{hub.url}/readyz")
    assert (status, body["store"]) == (200, "ok")

    await postgres_server.stop()
    try:
        await a.send({"type": "chat", "text": "while down", "id": "d"})
        err = await a.expect("error", ref="d", timeout=30)
        assert err["code"] == "store_unavailable"
        status, body = await call(http, "GET", f"{hub.url}/readyz")
        assert (status, body["status"]) == (503, "store_unavailable")
        status, body = await call(http, "GET", f"{hub.url}/v1/reports", headers=admin_headers())
        assert (status, body["error"]) == (503, "store_unavailable")  # reads say so too
        await barrier(a, b)
        assert "while down" not in [m["text"] for m in b.received("chat")]  # nothing unsaved
    finally:
        await postgres_server.start()
    async with asyncio.timeout(60):  # the store probes and comes back by itself
        while (await call(http, "GET", f"{hub.url}/readyz"))[0] != 200:
            await asyncio.sleep(0.2)
    await a.send({"type": "chat", "text": "after", "id": "a"})
    await a.expect("chat", ref="a", timeout=30)
    await hub.server.close()

    again = await start_hub(database_url=postgres_url, chat_history=50, **QUIET)
    late = await again.joined(identity="late")
    assert late.joined is not None
    texts = [m["text"] for m in late.joined["chat"]]
    assert texts == ["before 0", "before 1", "before 2", "after"]


async def test_desks_defined_on_one_node_are_seen_through_postgresql(
    start_hub: StartHub, http: aiohttp.ClientSession, postgres_url: str, tmp_path: Any
) -> None:
    """The desk definitions live in the shared database: made through one node's admin API,
    listed by the command line; made by the command line, served by a node."""
    hub = await start_hub(database_url=postgres_url, **QUIET)
    await make_desk(hub, http, "support", title="Support", languages=["ko", "en"])
    env = {"COMMHUB_DATA_DIR": str(tmp_path / "elsewhere"), "COMMHUB_SECRET": SECRET,
           "COMMHUB_DATABASE_URL": postgres_url, "PATH": "/usr/bin:/bin"}  # fmt: skip
    listed = run_cli("desk", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("support\tSupport\tko,en\t")
    made = run_cli("desk", "create", "late-desk", env=env)
    assert made.returncode == 0, made.stderr
    status, shown = await call(http, "GET", f"{hub.url}/v1/desks/late-desk")
    assert status == 200 and shown["open"] is True
    second = await start_hub(database_url=postgres_url, **QUIET)  # another node, same database
    status, shown = await call(http, "GET", f"{second.url}/v1/desks/support")
    assert status == 200 and shown["title"] == "Support"


async def test_the_schema_is_current_after_a_store_started(postgres_url: str) -> None:
    s = Store(postgres_url)
    await s.start()
    try:
        async with s.engine.connect() as conn:
            names = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            meta = (await conn.execute(text("select count(*) from store_meta"))).scalar()
        assert {"chat", "desks"} <= names and meta == 0
        await s.add_chat("lobby", chat(1))
        async with s.engine.connect() as conn:  # this writer's batch marker
            keys = (await conn.execute(text("select key, value from store_meta"))).all()
        assert [(k.split(":")[0], v) for k, v in keys] == [("commit", "1")]
    finally:
        await s.close()
    conn2 = await asyncpg.connect(**plain(postgres_url))
    try:  # a clean close leaves no marker behind
        assert await conn2.fetchval("select count(*) from store_meta") == 0
    finally:
        await conn2.close()
