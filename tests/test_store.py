"""The store on a real SQLite file and a real PostgreSQL: migrations, chat with translations,
captions and the transcript, reports, bans, events, purge, erasure, group commit and
back-pressure."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import event, inspect, text

from commhub import protocol
from commhub.store import Store, StoreError, default_url, migrate
from commhub.store.models import metadata


def chat(n: int, identity: str = "alice", text: str | None = None) -> dict[str, object]:
    return protocol.chat(
        chat_id=f"CH_{identity}_{n}",
        sender={"id": f"PA_{identity}", "identity": identity, "name": identity.title()},
        text=text or f"message {n} from {identity}",
        lang="en",
        ts=1_700_000_000 + n,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on SQLite and on a real PostgreSQL (a fresh database each): the schema
    and every query must stay portable."""
    if request.param == "sqlite":
        return default_url(tmp_path / "data")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    s = Store(store_url, busy_timeout=0.5, retry=0.2)
    await s.start()
    yield s
    await s.close()


async def test_start_migrates_a_new_database_and_reports_ok(store: Store) -> None:
    assert store.status() == (True, "ok")
    async with store.engine.connect() as conn:
        tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        version = (await conn.execute(text("select version_num from alembic_version"))).all()
    assert {"chat", "chat_translations", "captions", "caption_translations", "reports",
            "bans", "moderation_events", "rooms"} <= tables  # fmt: skip
    heads = ScriptDirectory.from_config(migrate.config(store.url)).get_heads()
    assert sorted(v[0] for v in version) == sorted(heads)  # every migration ran


async def test_chat_and_translations_come_back_in_order(store: Store) -> None:
    for n in range(5):
        await store.add_chat("lobby", chat(n))
    await store.add_chat("other", chat(99))
    info = {"lang": "ko", "status": "ok", "text": "메시지 3", "engine": "argos"}
    store.add_chat_translation("lobby", "CH_alice_3", "ko", info)
    await store.add_chat("lobby", chat(5))  # committed after the queued translation
    recent = await store.recent_chat("lobby", 3)
    assert [m["id"] for m in recent] == ["CH_alice_3", "CH_alice_4", "CH_alice_5"]
    assert recent[0]["translations"] == {"ko": info}
    assert recent[1] == {**chat(4), "translations": {}}
    assert await store.recent_chat("lobby", 0) == []
    assert [m["id"] for m in await store.recent_chat("other", 50)] == ["CH_alice_99"]


async def test_concurrent_chats_share_commits(store: Store) -> None:
    """Group commit: many writes waiting together are committed in fewer transactions."""
    await asyncio.gather(*(store.add_chat("lobby", chat(n)) for n in range(200)))
    assert len(await store.recent_chat("lobby", 1000)) == 200
    batches = store.metrics.batch.collect()[0].samples
    count = next(s.value for s in batches if s.name.endswith("_count"))
    total = next(s.value for s in batches if s.name.endswith("_sum"))
    assert total == 200
    assert count < 200


async def test_a_full_queue_holds_writers_back(tmp_path: Path) -> None:
    s = Store(default_url(tmp_path), queue=4, batch=2)
    await s.start()
    try:
        await asyncio.gather(*(s.add_chat("lobby", chat(n)) for n in range(40)))
        waits = s.metrics.waits.collect()[0].samples[0].value
        assert waits > 0
        assert len(await s.recent_chat("lobby", 100)) == 40
    finally:
        await s.close()


async def test_captions_and_chat_make_one_ordered_transcript(store: Store) -> None:
    final = protocol.caption(
        segment="SG_1", speaker="PA_bob", lang="ko", final=True, text="안녕하세요",
        start=1.0, end=2.5, track_start=1_700_000_000.0, words=[], confidence=0.9,
    )  # fmt: skip
    store.add_caption(
        "lobby",
        {**final, "identity": "bob", "name": "Bob"},
        {
            "en": {"lang": "en", "status": "ok", "text": "Hello", "engine": "argos"},
            "es": {"lang": "es", "status": "failed", "detail": "no engine"},
        },
    )
    await store.add_chat("lobby", chat(2), recorded=True)  # ts 1_700_000_002
    await store.add_chat("lobby", chat(3))  # kept as history, not recorded
    lines = await store.transcript("lobby")
    assert [line["kind"] for line in lines] == ["caption", "chat"]
    cap = lines[0]
    assert cap["identity"] == "bob" and cap["name"] == "Bob" and cap["participant"] == "PA_bob"
    assert (cap["start"], cap["end"], cap["text"]) == (
        1_700_000_001.0,
        1_700_000_002.5,
        "안녕하세요",
    )
    assert cap["translations"] == {"en": "Hello"}
    assert lines[1]["text"] == "message 2 from alice" and lines[1]["start"] == 1_700_000_002
    assert await store.transcript("nowhere") == []
    assert len(await store.recent_chat("lobby", 9)) == 2


async def test_recording_policy(store: Store) -> None:
    assert await store.recording("lobby") is None
    await store.set_recording("lobby", True)
    assert await store.recording("lobby") is True
    await store.set_recording("lobby", False)
    assert await store.recording("lobby") is False
    await store.set_recording("lobby", None)
    assert await store.recording("lobby") is None


async def test_reports(store: Store) -> None:
    evidence = [{"kind": "chat", "text": "rude", "translations": {"ko": "무례"}}]
    rid = await store.add_report(
        {"room": "lobby", "reporter": {"id": "PA_a", "identity": "alice", "name": "A"},
         "subject": "bob", "reason": "abuse", "evidence": evidence}
    )  # fmt: skip
    other = await store.add_report({"room": "hall", "reporter": "carol", "subject": "dave"})
    got = await store.get_report(rid)
    assert got is not None
    assert got["evidence"] == evidence and got["status"] == "open" and got["room"] == "lobby"
    assert [r["id"] for r in await store.reports(room="lobby")] == [rid]
    assert {r["id"] for r in await store.reports(status="open")} == {rid, other}
    assert await store.resolve_report(rid, "warned", "mod") is True
    assert await store.resolve_report(rid, "again", "mod") is False
    assert await store.resolve_report("RP_unknown", "x", "mod") is False
    done = await store.get_report(rid)
    assert done is not None
    assert (done["status"], done["resolution"], done["resolved_by"]) == (
        "resolved",
        "warned",
        "mod",
    )
    assert [r["id"] for r in await store.reports(status="open")] == [other]
    assert await store.get_report("RP_unknown") is None


async def test_bans(store: Store) -> None:
    now = time.time()
    timed = await store.add_ban("lobby", "bob", now + 3600, "mod", "spam")
    await store.add_ban("lobby", "carol", now - 1, "mod", "over already")
    assert (await store.active_ban("lobby", "bob") or {}).get("id") == timed
    assert await store.active_ban("hall", "bob") is None
    assert await store.active_ban("lobby", "carol") is None
    everywhere = await store.add_ban("*", "dave", None, "admin", "everywhere")
    assert (await store.active_ban("hall", "dave") or {}).get("id") == everywhere
    assert {b["id"] for b in await store.bans()} == {timed, everywhere}
    assert [b["id"] for b in await store.bans("lobby")] == [timed]
    assert await store.lift_ban(timed) is True
    assert await store.lift_ban(timed) is False
    assert await store.active_ban("lobby", "bob") is None


async def test_events_purge_and_erasure(store: Store) -> None:
    store.add_event("lobby", "filtered", {"identity": "bob", "ts": 1000.0, "word": "x"})
    store.add_event("lobby", "strike", {"identity": "alice"})
    for n in range(3):
        await store.add_chat("lobby", chat(n, "bob"))
    store.add_chat_translation(
        "lobby", "CH_bob_0", "ko", {"lang": "ko", "status": "ok", "text": "k"}
    )
    await store.add_chat("lobby", chat(10, "alice"))
    await store.add_report(
        {"room": "lobby", "reporter": "alice", "subject": "bob", "created_at": 5.0}
    )
    await store.add_ban("lobby", "bob", None, "mod", "")
    assert [e["kind"] for e in await store.events("lobby")] == ["filtered", "strike"]

    purged = await store.purge(older_than=2000.0)
    assert purged["events"] == 1 and purged["reports"] == 1 and purged["chat"] == 0
    assert [e["kind"] for e in await store.events()] == ["strike"]

    erased = await store.erase_identity("bob")
    assert erased["chat"] == 3 and erased["chat_translations"] == 1 and erased["bans"] == 1
    assert [m["id"] for m in await store.recent_chat("lobby", 50)] == ["CH_alice_10"]
    assert await store.active_ban("lobby", "bob") is None
    assert (await store.purge(older_than=time.time() + 10))["chat"] == 1


async def test_a_locked_database_is_an_error_not_a_crash(store: Store, tmp_path: Path) -> None:
    if not store.url.startswith("sqlite"):
        pytest.skip("SQLite's file lock")
    await store.add_chat("lobby", chat(0))
    holder = sqlite3.connect(tmp_path / "data" / "commhub.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreError, match="locked"):
            await store.add_chat("lobby", chat(1))
        ok, detail = store.status()
        assert not ok and "database is locked" in detail
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    for _ in range(200):  # the writer probes and recovers without traffic
        if store.status()[0]:
            break
        await asyncio.sleep(0.05)
    assert store.status() == (True, "ok")
    await store.add_chat("lobby", chat(2))
    assert [m["id"] for m in await store.recent_chat("lobby", 9)] == ["CH_alice_0", "CH_alice_2"]


async def test_a_full_database_is_an_error_not_a_crash(tmp_path: Path) -> None:
    """SQLITE_FULL for real: the page limit is the disk's edge."""
    s = Store(default_url(tmp_path), retry=0.2)

    @event.listens_for(s.engine.sync_engine, "connect")
    def small(dbapi_conn: object, _record: object) -> None:
        cur = dbapi_conn.cursor()  # type: ignore[attr-defined]
        cur.execute("PRAGMA max_page_count=60")
        cur.close()

    await s.start()
    try:
        with pytest.raises(StoreError, match="full"):
            for n in range(10_000):
                await s.add_chat("lobby", chat(n, text="x" * 2000))
        ok, detail = s.status()
        assert not ok and "full" in detail
        assert len(await s.recent_chat("lobby", 5)) == 5  # what was saved still reads
    finally:
        await s.close()


async def test_one_refused_write_does_not_sink_its_batch(store: Store) -> None:
    await store.add_chat("lobby", chat(0))
    results = await asyncio.gather(
        *(store.add_chat("lobby", chat(n)) for n in (1, 0, 2)), return_exceptions=True
    )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], StoreError) and "unique" in str(results[1]).lower()
    assert store.status() == (True, "ok")  # the data's fault, not the database's
    ids = [m["id"] for m in await store.recent_chat("lobby", 9)]
    assert sorted(ids) == ["CH_alice_0", "CH_alice_1", "CH_alice_2"]


async def test_a_database_locked_at_start_is_reported_then_used(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    first = Store(url)
    await first.start()
    await first.close()
    holder = sqlite3.connect(tmp_path / "commhub.db", isolation_level=None)
    holder.execute("PRAGMA journal_mode=DELETE")  # a rollback journal: readers are locked out too
    holder.execute("BEGIN EXCLUSIVE")
    s = Store(url, busy_timeout=0.2, retry=0.2)
    try:
        await s.start()  # no exception: the hub starts, and says what is wrong
        ok, detail = s.status()
        assert not ok and "locked" in detail
        holder.execute("ROLLBACK")
        for _ in range(200):
            if s.status()[0]:
                break
            await asyncio.sleep(0.05)
        assert s.status() == (True, "ok")
        await s.add_chat("lobby", chat(1))
        assert [m["id"] for m in await s.recent_chat("lobby", 5)] == ["CH_alice_1"]
    finally:
        holder.close()
        await s.close()


def test_database_url_setting() -> None:
    from commhub.config import Settings, SettingsError

    assert Settings.load(env={}).database_url == ""
    url = "sqlite+aiosqlite:////srv/hub/commhub.db"
    assert Settings.load(env={"COMMHUB_DATABASE_URL": url}).database_url == url
    with pytest.raises(SettingsError, match="database_url"):
        Settings.load(env={"COMMHUB_DATABASE_URL": "commhub.db"})
    assert default_url(Path("/srv/x")) == "sqlite+aiosqlite:////srv/x/commhub.db"


async def test_the_migrations_build_what_the_models_describe(store: Store) -> None:
    """Alembic's own comparison: a model changed without a migration (or the reverse) fails.
    Tables other parts add in their own revisions are theirs to check."""

    def compare(conn: Any) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    def ours(diff: Any) -> bool:
        first = diff[0] if isinstance(diff, list) else diff
        if first[0] == "remove_table":
            return first[1].name in metadata.tables
        if first[0] in ("remove_index", "remove_column", "remove_constraint"):
            table = getattr(first[-1], "table", None)
            table = first[2] if table is None else table
            return getattr(table, "name", table) in metadata.tables
        return True

    async with store.engine.connect() as conn:
        diffs = [d for d in await conn.run_sync(compare) if ours(d)]
    assert diffs == []


async def test_close_commits_what_is_queued(tmp_path: Path) -> None:
    url = default_url(tmp_path)
    s = Store(url)
    await s.start()
    pending = [asyncio.create_task(s.add_chat("lobby", chat(n))) for n in range(50)]
    await asyncio.sleep(0)  # they are queued
    for n in range(50):
        s.add_event("lobby", "note", {"n": n})
    await s.close()
    await asyncio.gather(*pending)  # every awaited write got its answer: saved
    assert s.status() == (False, "closed")
    with pytest.raises(StoreError, match="closed"):
        await s.add_chat("lobby", chat(99))
    again = Store(url)
    await again.start()
    try:
        assert len(await again.recent_chat("lobby", 100)) == 50
        assert len(await again.events("lobby")) == 50
    finally:
        await again.close()


async def test_a_batch_whose_commit_reply_was_lost_is_not_written_twice(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection fails around COMMIT: before it (nothing saved: the queued writes are
    retried) and after it (saved, reply lost: the probe finds the batch's mark and does not
    write them again). Each event is stored exactly once."""
    real = store.writer._transaction
    faults = ["before", "after"]

    async def flaky(items: Any, number: int) -> Any:
        if faults and faults[0] == "before":
            faults.pop(0)
            raise ConnectionResetError("connection lost before COMMIT")
        result = await real(items, number)
        if faults:
            faults.pop(0)
            raise ConnectionResetError("connection lost before the reply to COMMIT")
        return result

    monkeypatch.setattr(store.writer, "_transaction", flaky)
    for n in range(5):
        store.add_event("lobby", "note", {"n": n})
    async with asyncio.timeout(60):
        while faults or store.writer.pending or not store.status()[0]:
            await asyncio.sleep(0.02)
    assert sorted(e["data"]["n"] for e in await store.events("lobby")) == list(range(5))
    with pytest.raises(StoreError, match="unavailable"):  # an awaited write fails at once
        store.writer.unhealthy("database error: test")
        await store.add_chat("lobby", chat(1))


async def test_queued_writes_outlast_a_database_fault_and_held_writers_get_an_answer(
    tmp_path: Path,
) -> None:
    """A locked SQLite file stands for any database fault: the queued events wait for the
    database and are all saved after it; a chat held back by the full queue is answered
    (store unavailable) instead of waiting for the database."""
    url = default_url(tmp_path)
    first = Store(url)
    await first.start()
    await first.close()
    s = Store(url, queue=2, batch=1, busy_timeout=0.2, retry=0.2)
    await s.start()
    holder = sqlite3.connect(tmp_path / "commhub.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for n in range(4):
            s.add_event("lobby", "note", {"n": n})
        with pytest.raises(StoreError, match=r"unavailable.*locked"):
            async with asyncio.timeout(30):
                await s.add_chat("lobby", chat(1))
        assert s.writer.pending == 4 and not s.status()[0]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    try:
        async with asyncio.timeout(60):
            while s.writer.pending or not s.status()[0]:
                await asyncio.sleep(0.05)
        assert [e["data"]["n"] for e in await s.events("lobby")] == [0, 1, 2, 3]
        assert await s.recent_chat("lobby", 5) == []
    finally:
        await s.close()
