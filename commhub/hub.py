"""The hub's live state and the room operations shared by signalling and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from commhub.bus import Bus, Inbox, MemoryBus
from commhub.config import Settings
from commhub.media import Media
from commhub.metrics import HubMetrics
from commhub.protocol import PROTOCOL_VERSION, Schemas, encode, schemas
from commhub.rooms import Participant, Room, Rooms, base_language

log = logging.getLogger("commhub.hub")


class Translated(Protocol):
    @property
    def text(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def engine(self) -> str | None: ...
    @property
    def detail(self) -> str: ...


class Translating(Protocol):
    """What the hub needs of a translation service (commhub.translate.TranslationService)."""

    async def translate_many(
        self, text: str, source: str, targets: Iterable[str]
    ) -> Mapping[str, Translated]: ...


def translation_info(lang: str, t: Translated | None, of: str | None) -> dict[str, Any]:
    """The wire `translation` for readers of `lang` (`of`: the part translated, if not all)."""
    if t is None:
        return {"lang": lang, "status": "unavailable", "detail": "translation is not enabled"}
    ok = t.status in ("ok", "same")
    info: dict[str, Any] = {"lang": lang, "status": "ok" if ok else t.status}
    if ok:
        info["text"] = t.text
        if of is not None:
            info["of"] = of
    elif t.detail:
        info["detail"] = t.detail
    if t.engine:
        info["engine"] = t.engine
    return info


class Hub:
    def __init__(self, settings: Settings, secret: str, bus: Bus | None = None) -> None:
        self.settings = settings
        self.secret = secret
        self.bus: Bus = bus or MemoryBus()
        self.rooms = Rooms(
            settings.room_capacity, settings.chat_history, settings.empty_room_timeout
        )
        self.registry = CollectorRegistry()
        self.metrics = HubMetrics(self.registry)
        self.schemas: Schemas = schemas()
        self.media = Media(self)
        self.translator: Translating | None = None  # set by the app when translation runs
        self.closing = False
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        await self.media.start()
        self._reaper = asyncio.create_task(self._reap_loop(), name="commhub-room-reaper")

    async def shutdown(self) -> None:
        """Tell everyone, then close every connection within the shutdown bound."""
        self.closing = True
        everyone = [p for room in self.rooms for p in room.participants.values()]
        notice = {"type": "server_shutdown", "reconnect_after": 5}
        for p in everyone:
            self.send(p.conn, notice)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await asyncio.gather(
                    *(p.conn.end("shutdown", "server shutting down") for p in everyone),
                    return_exceptions=True,
                )
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.media.close()
        await self.bus.close()

    async def _reap_loop(self) -> None:
        period = max(0.05, min(5.0, self.settings.empty_room_timeout / 2))
        while True:
            await asyncio.sleep(period)
            for name in self.rooms.reap():
                log.info("room %s closed after %.0f s empty", name, self.rooms.empty_timeout)
            self._gauge()

    # -- delivery --------------------------------------------------------------------------

    def send(self, conn: Inbox, msg: dict[str, Any]) -> None:
        """Straight to one local connection (replies that must precede room events)."""
        conn.deliver(encode(msg))
        self.metrics.messages_out.labels(msg["type"]).inc()

    async def publish(
        self,
        room: str,
        msg: dict[str, Any],
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> None:
        count = await self.bus.publish(room, msg, to=to, exclude=exclude)
        if count:
            self.metrics.messages_out.labels(msg["type"]).inc(count)

    # -- membership ------------------------------------------------------------------------

    async def join(self, room_name: str, p: Participant) -> Room:
        room, old = self.rooms.join(room_name, p)  # raises RoomFull
        if old is not None:
            self.bus.detach(room_name, old.id)
            await self.publish(
                room_name,
                {"type": "participant_left", "participant": old.ref(), "reason": "replaced"},
            )
            await self.media.leave(room_name, old, "replaced")
            task = asyncio.create_task(old.conn.end("replaced", "the same identity joined again"))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.bus.attach(room_name, p.id, p.conn)
        self.send(
            p.conn,
            {
                "type": "joined",
                "protocol": PROTOCOL_VERSION,
                "participant": p.wire(),
                "room": {"name": room.name, "capacity": room.capacity},
                "participants": [o.wire() for o in room.participants.values() if o is not p],
                "chat": room.recent_chat(p.read),
                "ice_servers": self.settings.ice_servers,
            },
        )
        await self.publish(
            room_name, {"type": "participant_joined", "participant": p.wire()}, exclude=p.id
        )
        self._gauge()
        return room

    async def leave(self, room_name: str, p: Participant, reason: str) -> None:
        """Remove p (if it is still the room's) and tell the others."""
        room = self.rooms.get(room_name)
        if room is None or room.participants.get(p.id) is not p:
            return  # already replaced or removed
        self.rooms.leave(room_name, p.id)
        await self.media.leave(room_name, p, reason)  # closes p's peer connection
        self.bus.detach(room_name, p.id)
        await self.publish(
            room_name, {"type": "participant_left", "participant": p.ref(), "reason": reason}
        )
        self._gauge()

    async def update(self, room_name: str, p: Participant) -> None:
        await self.publish(room_name, {"type": "participant_updated", "participant": p.wire()})

    async def chat(self, room: Room, p: Participant, text: str) -> dict[str, Any]:
        msg = {
            "type": "chat",
            "id": "CH_" + secrets.token_urlsafe(9),
            "from": p.ref(),
            "text": text,
            "lang": p.speak,
            "ts": round(time.time(), 3),
        }
        room.remember(msg)
        await self.publish_text(room, msg, text, p.speak)
        return msg

    async def publish_text(
        self,
        room: Room,
        msg: dict[str, Any],
        text: str,
        source: str,
        *,
        to: Collection[str] | None = None,
    ) -> None:
        """Publish msg to the room (or only to the participant ids in `to`), translated
        once per read language present (Jigasi's rule: once per target language, not once
        per listener). Readers of the source language get msg as it is; the others get it
        with a `translation` beside it."""
        groups: dict[str, list[str]] = {}
        for p in room.participants.values():
            if to is None or p.id in to:
                groups.setdefault(base_language(p.read), []).append(p.id)
        src = base_language(source)
        same = groups.pop(src, [])
        if same:
            await self.publish(room.name, msg, to=same)
        if not groups:
            return
        if self.translator is None:
            results: Mapping[str, Translated | None] = dict.fromkeys(groups)
        else:
            results = await self.translator.translate_many(text, src, list(groups))
        of = text if text != msg["text"] else None
        kept = room.translations.get(msg.get("id", ""))  # a chat message newcomers will see
        for lang, ids in groups.items():
            info = translation_info(lang, results.get(lang), of)
            if kept is not None:
                kept[lang] = info
            await self.publish(room.name, {**msg, "translation": info}, to=ids)

    def room_of(self, p: Participant) -> Room | None:
        return next((r for r in self.rooms if r.participants.get(p.id) is p), None)

    async def remove(self, room_name: str, key: str) -> bool:
        """Admin: remove a participant by id or identity."""
        room = self.rooms.get(room_name)
        p = room and (room.participants.get(key) or room.by_identity(key))
        if not room or not p:
            return False
        await self.leave(room_name, p, "removed")
        await p.conn.end("removed", "removed by an administrator")
        return True

    async def close_room(self, room_name: str) -> bool:
        room = self.rooms.drop(room_name)
        if room is None:
            return False
        await self.media.close_room(room_name, list(room.participants.values()))
        for p in list(room.participants.values()):
            self.bus.detach(room_name, p.id)
        await asyncio.gather(
            *(p.conn.end("room_closed", "the room was closed") for p in room.participants.values()),
            return_exceptions=True,
        )
        self._gauge()
        return True

    def _gauge(self) -> None:
        self.metrics.rooms.set(len(self.rooms))
        self.metrics.participants.set(self.rooms.participant_count())
