"""The store: rooms' policy, chat and its translations, caption finals and theirs, reports,
bans and moderation events, behind one small async API (the Store protocol others code
against). Writes go through one batching writer (writer.py); reads use their own
connections (SQLite in WAL mode lets them run beside a commit; PostgreSQL's pool checks a
connection before lending it, so a restarted server is reconnected to)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from sqlalchemy import delete, event, insert, or_, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from commhub.store import migrate, server
from commhub.store import models as t
from commhub.store.metrics import StoreMetrics
from commhub.store.writer import Row, StoreError, StoreUnreachable, Writer, describe

log = logging.getLogger("commhub.store")


def default_url(data_dir: Path) -> str:
    return f"sqlite+aiosqlite:///{(data_dir / 'commhub.db').resolve()}"


def _identity(value: Any) -> str | None:
    """A report's reporter/subject: an identity string or a participant ref."""
    if isinstance(value, Mapping):
        value = value.get("identity")
    return value[: t.IDENTITY] if isinstance(value, str) and value else None


def _translated(info: Mapping[str, Any]) -> str | None:
    text = info.get("text")
    return text if info.get("status") == "ok" and isinstance(text, str) else None


class Store:
    def __init__(
        self,
        url: str,
        *,
        queue: int = 1000,
        batch: int = 256,
        busy_timeout: float = 5.0,
        retry: float = 2.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.url = url
        self.metrics = StoreMetrics(registry)
        sqlite = make_url(url).get_backend_name() == "sqlite"
        self._connect_args = {"timeout": busy_timeout} if sqlite else {}
        self.engine: AsyncEngine = self._engine(url, busy_timeout)
        self.where = server.redacted(url)
        self._status = (False, "starting")
        self.writer = Writer(
            self.engine,
            limit=queue,
            batch=batch,
            recover=self._recover,
            on_status=self._set_status,
            metrics=self.metrics,
            retry=retry,
        )
        self._migrated = False

    @staticmethod
    def _engine(url: str, busy_timeout: float) -> AsyncEngine:
        parsed = make_url(url)
        if parsed.get_backend_name() != "sqlite":
            return create_async_engine(url, **server.engine_options(url, {}))
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": busy_timeout})

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            # WAL: readers beside the writer; FULL: a commit is on disk when it returns
            # (kill -9 and power loss); foreign keys: translations follow their message.
            cur = dbapi_conn.cursor()
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
                cur.execute(f"PRAGMA {pragma}")
            cur.close()

        return engine

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Migrate (in a worker thread: Alembic is blocking), then start the writer. A
        database server that cannot be connected to raises StoreUnreachable (a hub cannot
        run on a store it never reached; commhub serve says so and exits). A database that
        was reached but cannot be opened or migrated (an SQLite file locked, a full disk) is
        logged and reported by status(); the writer keeps probing it, and the hub runs on."""
        try:
            await self._migrate()
        except StoreUnreachable:
            await self.engine.dispose()
            self._set_status(False, "unreachable")
            raise
        except Exception as exc:
            detail = f"database error: {describe(exc)}"
            log.error("store at %s is unusable: %s", self.where, detail)
            self._set_status(False, detail)
            self.writer.unhealthy(detail)
        else:
            self._set_status(True, "ok")
            log.info("store at %s", self.where)
        self.writer.start()

    async def _migrate(self) -> None:
        if not self._migrated:
            await asyncio.to_thread(migrate.upgrade, self.url, connect_args=self._connect_args)
            self._migrated = True

    async def _recover(self) -> None:
        """Before the writer's probe write: the schema is there."""
        await self._migrate()

    async def close(self, timeout: float = 5.0) -> None:
        await self.writer.close(timeout)
        await self.engine.dispose()
        self._set_status(False, "closed")

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        """A connection for reading; a database fault is a StoreError (503 store_unavailable
        at the edges), not whatever the driver raised."""
        try:
            async with self.engine.connect() as conn:
                yield conn
        except (DBAPIError, OSError) as exc:
            raise StoreError(f"not read: {describe(exc)}") from exc

    def status(self) -> tuple[bool, str]:
        """(ok, detail) for /readyz: detail names the database fault when not ok."""
        return self._status

    def _set_status(self, ok: bool, detail: str) -> None:
        self._status = (ok, detail)
        self.metrics.healthy.set(1 if ok else 0)

    # -- chat ------------------------------------------------------------------------------

    async def add_chat(self, room: str, msg: dict[str, Any], *, recorded: bool = False) -> None:
        """Returns once msg is committed (raises StoreError when it could not be). Every chat
        is kept (a room's history outlives a restart); `recorded`: sent while the room
        recorded, so it is part of the transcript."""
        sender = msg["from"]
        row = {
            "chat_id": msg["id"],
            "room": room,
            "participant": sender["id"],
            "identity": sender["identity"],
            "name": sender["name"],
            "lang": msg["lang"],
            "text": msg["text"],
            "ts": msg["ts"],
            "message": msg,
            "recorded": recorded,
        }

        await self.writer.write(Row(t.chat, row), "chat")

    def add_chat_translation(
        self, room: str, chat_id: str, lang: str, info: dict[str, Any]
    ) -> None:
        row = {"chat_id": chat_id, "lang": lang, "info": info}
        self.writer.submit(Row(t.chat_translations, row), "chat_translation")

    async def recent_chat(self, room: str, limit: int) -> list[dict[str, Any]]:
        """The room's last `limit` chat messages, oldest first, as sent, each with
        "translations": {lang: the `translation` readers of lang got}."""
        if limit <= 0:
            return []
        async with self._read() as conn:
            rows = (
                await conn.execute(
                    select(t.chat.c.chat_id, t.chat.c.message)
                    .where(t.chat.c.room == room)
                    .order_by(t.chat.c.seq.desc())
                    .limit(limit)
                )
            ).all()
            ids = [r.chat_id for r in rows]
            found: dict[str, dict[str, Any]] = {i: {} for i in ids}
            if ids:
                for tr in await conn.execute(
                    select(t.chat_translations).where(t.chat_translations.c.chat_id.in_(ids))
                ):
                    found[tr.chat_id][tr.lang] = tr.info
        return [{**r.message, "translations": found[r.chat_id]} for r in reversed(rows)]

    # -- captions and transcripts ----------------------------------------------------------

    def add_caption(
        self, room: str, final: dict[str, Any], translations: dict[str, dict[str, Any]]
    ) -> None:
        """Queue a caption final (the wire `caption`, plus the speaker's "identity" and
        "name" the hub adds) with its translations {lang: wire `translation`}."""
        base = float(final.get("track_start", 0.0))
        wire = {k: v for k, v in final.items() if k not in ("identity", "name")}
        row = {
            "room": room,
            "segment": str(final["segment"]),
            "participant": str(final["speaker"]),
            "identity": str(final.get("identity") or final["speaker"]),
            "name": str(final.get("name") or final.get("identity") or final["speaker"]),
            "lang": final["lang"],
            "start": round(base + float(final["start"]), 3),
            "end": round(base + float(final["end"]), 3),
            "ts": round(base + float(final["end"]), 3),
            "text": final["text"],
            "message": wire,
        }
        extra = [
            {"lang": lang, "text": _translated(info), "info": info}
            for lang, info in translations.items()
        ]

        async def op(conn: AsyncConnection) -> None:
            key = (await conn.execute(insert(t.captions).values(row))).inserted_primary_key
            assert key is not None
            seq = key[0]
            if extra:
                await conn.execute(
                    insert(t.caption_translations), [{"caption_seq": seq, **e} for e in extra]
                )

        self.writer.submit(op, "caption")

    async def transcript(self, room: str) -> list[dict[str, Any]]:
        """What the room recorded (caption finals, and chat sent while it recorded), ordered
        by start (epoch seconds): {kind, participant, identity, name, lang, start, end, ts,
        text, translations: {lang: text}}."""
        lines: list[dict[str, Any]] = []
        async with self._read() as conn:
            caps = (
                await conn.execute(
                    select(t.captions).where(t.captions.c.room == room).order_by(t.captions.c.seq)
                )
            ).all()
            ctr: dict[int, dict[str, str]] = {c.seq: {} for c in caps}
            if caps:
                for tr in await conn.execute(
                    select(t.caption_translations).where(
                        t.caption_translations.c.caption_seq.in_(list(ctr))
                    )
                ):
                    if tr.text is not None:
                        ctr[tr.caption_seq][tr.lang] = tr.text
            chats = (
                await conn.execute(
                    select(t.chat)
                    .where(t.chat.c.room == room, t.chat.c.recorded.is_(True))
                    .order_by(t.chat.c.seq)
                )
            ).all()
            htr: dict[str, dict[str, str]] = {c.chat_id: {} for c in chats}
            if chats:
                for tr in await conn.execute(
                    select(t.chat_translations).where(t.chat_translations.c.chat_id.in_(list(htr)))
                ):
                    if (text := _translated(tr.info)) is not None:
                        htr[tr.chat_id][tr.lang] = text
        for c in caps:
            lines.append(
                {
                    "kind": "caption",
                    "participant": c.participant,
                    "identity": c.identity,
                    "name": c.name,
                    "lang": c.lang,
                    "start": c.start,
                    "end": c.end,
                    "ts": c.ts,
                    "text": c.text,
                    "translations": ctr[c.seq],
                }
            )
        for h in chats:
            lines.append(
                {
                    "kind": "chat",
                    "participant": h.participant,
                    "identity": h.identity,
                    "name": h.name,
                    "lang": h.lang,
                    "start": h.ts,
                    "end": h.ts,
                    "ts": h.ts,
                    "text": h.text,
                    "translations": htr[h.chat_id],
                }
            )
        lines.sort(key=lambda line: (line["start"], line["end"]))
        return lines

    # -- recording policy ------------------------------------------------------------------

    async def set_recording(self, room: str, recording: bool | None) -> None:
        """The room's own policy (None: the hub's setting decides)."""

        async def op(conn: AsyncConnection) -> None:
            now = time.time()
            done = await conn.execute(
                update(t.rooms)
                .where(t.rooms.c.name == room)
                .values(recording=recording, updated_at=now)
            )
            if done.rowcount == 0:
                await conn.execute(
                    insert(t.rooms).values(name=room, recording=recording, updated_at=now)
                )

        await self.writer.write(op, "room")

    async def recording(self, room: str) -> bool | None:
        async with self._read() as conn:
            value = await conn.scalar(select(t.rooms.c.recording).where(t.rooms.c.name == room))
        return None if value is None else bool(value)

    # -- reports ---------------------------------------------------------------------------

    async def add_report(self, report: dict[str, Any]) -> str:
        """File a report ({room, reporter, subject, reason, evidence, ...}: kept as given);
        returns its id ("RP_...", or the report's own "id")."""
        report_id = str(report.get("id") or "RP_" + secrets.token_urlsafe(9))
        data = {k: v for k, v in report.items() if k != "id"}
        row = {
            "id": report_id,
            "room": str(report["room"]),
            "status": "open",
            "reporter": _identity(report.get("reporter")),
            "subject": _identity(report.get("subject")),
            "created_at": float(report.get("created_at") or time.time()),
            "data": data,
        }

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(t.reports).values(row))

        await self.writer.write(op, "report")
        return report_id

    @staticmethod
    def _report(r: Any) -> dict[str, Any]:
        return {
            **r.data,
            "id": r.id,
            "room": r.room,
            "status": r.status,
            "created_at": r.created_at,
            "resolved_at": r.resolved_at,
            "resolved_by": r.resolved_by,
            "resolution": r.resolution,
        }

    async def reports(
        self, *, room: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Reports, newest first."""
        q = select(t.reports).order_by(t.reports.c.created_at.desc(), t.reports.c.id)
        if room is not None:
            q = q.where(t.reports.c.room == room)
        if status is not None:
            q = q.where(t.reports.c.status == status)
        async with self._read() as conn:
            return [self._report(r) for r in await conn.execute(q)]

    async def get_report(self, report_id: str) -> dict[str, Any] | None:
        async with self._read() as conn:
            r = (await conn.execute(select(t.reports).where(t.reports.c.id == report_id))).first()
        return None if r is None else self._report(r)

    async def resolve_report(self, report_id: str, resolution: str, by: str) -> bool:
        """Close an open report; False when it is unknown or already resolved."""

        async def op(conn: AsyncConnection) -> bool:
            done = await conn.execute(
                update(t.reports)
                .where(t.reports.c.id == report_id, t.reports.c.status == "open")
                .values(
                    status="resolved",
                    resolution=resolution,
                    resolved_by=by,
                    resolved_at=time.time(),
                )
            )
            return bool(done.rowcount)

        return bool(await self.writer.write(op, "report"))

    # -- bans ------------------------------------------------------------------------------

    async def add_ban(
        self, room: str, identity: str, until: float | None, by: str, reason: str
    ) -> str:
        """Ban identity from room (room "*": every room) until `until` (None: until lifted)."""
        ban_id = "BN_" + secrets.token_urlsafe(9)
        row = {
            "id": ban_id,
            "room": room,
            "identity": identity,
            "until": until,
            "by": by,
            "reason": reason,
            "created_at": time.time(),
        }

        async def op(conn: AsyncConnection) -> None:
            await conn.execute(insert(t.bans).values(row))

        await self.writer.write(op, "ban")
        return ban_id

    @staticmethod
    def _ban(b: Any) -> dict[str, Any]:
        return {
            "id": b.id,
            "room": b.room,
            "identity": b.identity,
            "until": b.until,
            "by": b.by,
            "reason": b.reason,
            "created_at": b.created_at,
        }

    @staticmethod
    def _active(now: float) -> Any:
        return (t.bans.c.lifted_at.is_(None)) & or_(t.bans.c.until.is_(None), t.bans.c.until > now)

    async def active_ban(self, room: str, identity: str) -> dict[str, Any] | None:
        """The ban in force on identity in room (or in every room), the longest first."""
        q = (
            select(t.bans)
            .where(
                self._active(time.time()),
                t.bans.c.identity == identity,
                t.bans.c.room.in_([room, "*"]),
            )
            .order_by(t.bans.c.until.is_(None).desc(), t.bans.c.until.desc())
        )
        async with self._read() as conn:
            b = (await conn.execute(q)).first()
        return None if b is None else self._ban(b)

    async def bans(self, room: str | None = None) -> list[dict[str, Any]]:
        """Bans in force (in room, or everywhere), newest first."""
        q = select(t.bans).where(self._active(time.time())).order_by(t.bans.c.created_at.desc())
        if room is not None:
            q = q.where(t.bans.c.room == room)
        async with self._read() as conn:
            return [self._ban(b) for b in await conn.execute(q)]

    async def lift_ban(self, ban_id: str) -> bool:
        """End a ban now; False when it is unknown or no longer in force."""

        async def op(conn: AsyncConnection) -> bool:
            now = time.time()
            done = await conn.execute(
                update(t.bans).where(t.bans.c.id == ban_id, self._active(now)).values(lifted_at=now)
            )
            return bool(done.rowcount)

        return bool(await self.writer.write(op, "ban"))

    # -- moderation events -----------------------------------------------------------------

    def add_event(self, room: str, kind: str, data: dict[str, Any]) -> None:
        """Queue a moderation event (data["identity"], when there, is whom it concerns)."""
        row = {
            "room": room,
            "kind": kind[:64],
            "identity": _identity(data.get("identity")),
            "ts": float(data.get("ts") or time.time()),
            "data": data,
        }

        self.writer.submit(Row(t.events, row), "event")

    async def events(self, room: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Moderation events, oldest first."""
        q = select(t.events).order_by(t.events.c.seq.desc()).limit(limit)
        if room is not None:
            q = q.where(t.events.c.room == room)
        async with self._read() as conn:
            rows = (await conn.execute(q)).all()
        return [
            {"room": e.room, "kind": e.kind, "identity": e.identity, "ts": e.ts, "data": e.data}
            for e in reversed(rows)
        ]

    # -- retention and erasure -------------------------------------------------------------

    async def purge(self, older_than: float) -> dict[str, int]:
        """Delete transcripts (chat, captions, their translations), reports with their
        evidence, events and ended bans from before `older_than` (epoch seconds)."""

        async def op(conn: AsyncConnection) -> dict[str, int]:
            old_chat = select(t.chat.c.chat_id).where(t.chat.c.ts < older_than)
            old_caps = select(t.captions.c.seq).where(t.captions.c.ts < older_than)
            counts: dict[str, int] = {}
            for name, stmt in (
                (
                    "chat_translations",
                    delete(t.chat_translations).where(t.chat_translations.c.chat_id.in_(old_chat)),
                ),
                ("chat", delete(t.chat).where(t.chat.c.ts < older_than)),
                (
                    "caption_translations",
                    delete(t.caption_translations).where(
                        t.caption_translations.c.caption_seq.in_(old_caps)
                    ),
                ),
                ("captions", delete(t.captions).where(t.captions.c.ts < older_than)),
                ("reports", delete(t.reports).where(t.reports.c.created_at < older_than)),
                ("events", delete(t.events).where(t.events.c.ts < older_than)),
                (
                    "bans",
                    delete(t.bans).where(
                        or_(t.bans.c.lifted_at < older_than, t.bans.c.until < older_than)
                    ),
                ),
            ):
                counts[name] = (await conn.execute(stmt)).rowcount
            return counts

        result: dict[str, int] = await self.writer.write(op, "purge")
        return result

    async def erase_identity(self, identity: str) -> dict[str, int]:
        """Delete everything stored about one identity: its chat and captions (with their
        translations), reports it filed or that concern it, its bans and events."""

        async def op(conn: AsyncConnection) -> dict[str, int]:
            its_chat = select(t.chat.c.chat_id).where(t.chat.c.identity == identity)
            its_caps = select(t.captions.c.seq).where(t.captions.c.identity == identity)
            counts: dict[str, int] = {}
            for name, stmt in (
                (
                    "chat_translations",
                    delete(t.chat_translations).where(t.chat_translations.c.chat_id.in_(its_chat)),
                ),
                ("chat", delete(t.chat).where(t.chat.c.identity == identity)),
                (
                    "caption_translations",
                    delete(t.caption_translations).where(
                        t.caption_translations.c.caption_seq.in_(its_caps)
                    ),
                ),
                ("captions", delete(t.captions).where(t.captions.c.identity == identity)),
                (
                    "reports",
                    delete(t.reports).where(
                        or_(t.reports.c.reporter == identity, t.reports.c.subject == identity)
                    ),
                ),
                ("bans", delete(t.bans).where(t.bans.c.identity == identity)),
                ("events", delete(t.events).where(t.events.c.identity == identity)),
            ):
                counts[name] = (await conn.execute(stmt)).rowcount
            return counts

        result: dict[str, int] = await self.writer.write(op, "erase")
        return result


__all__ = ["Store", "StoreError", "StoreUnreachable", "default_url"]
