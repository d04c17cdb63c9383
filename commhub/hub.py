"""The hub's live state and the room operations shared by signalling and the admin API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from commhub import protocol
from commhub.auth import DESK_ROOM_PREFIX
from commhub.bus import Bus, Inbox, MemoryBus
from commhub.cluster import Cluster
from commhub.config import Settings
from commhub.lanes import Job, Lanes
from commhub.metrics import HubMetrics
from commhub.moderation.evidence import Evidence
from commhub.moderation.text import TextModeration
from commhub.protocol import (
    CloseReason,
    ErrorCode,
    LeaveReason,
    MediaMode,
    Message,
    Outgoing,
    ProtocolError,
    Schemas,
    TranslationStatus,
    schemas,
)
from commhub.rooms import Participant, Room, Rooms, base_language
from commhub.store import Store, StoreError

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


class MediaPort(Protocol):
    """What the hub needs of the media layer (commhub.media.Media): its lifecycle and
    being told of each join and leave, in order, so its room state follows the rooms'."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def admit(
        self,
        room_name: str,
        p: Participant,
        capabilities: Mapping[str, bool],
        override: str | None = None,
    ) -> MediaMode: ...

    async def joined(self, room_name: str, p: Participant) -> None: ...

    async def leave(self, room_name: str, p: Participant, reason: str = "left") -> None: ...

    async def close_room(self, room_name: str, participants: list[Participant]) -> None: ...


class NoMedia:
    """A hub without a media layer (every room stays sfu, nothing is negotiated)."""

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def admit(
        self,
        room_name: str,
        p: Participant,
        capabilities: Mapping[str, bool],
        override: str | None = None,
    ) -> MediaMode:
        return MediaMode.SFU

    async def joined(self, room_name: str, p: Participant) -> None:
        pass

    async def leave(self, room_name: str, p: Participant, reason: str = "left") -> None:
        pass

    async def close_room(self, room_name: str, participants: list[Participant]) -> None:
        pass


def translation_info(lang: str, t: Translated | None, of: str | None) -> dict[str, Any]:
    """The wire `translation` for readers of `lang` (`of`: the part translated, if not all)."""
    if t is None:
        return {
            "lang": lang,
            "status": TranslationStatus.UNAVAILABLE.value,
            "detail": "translation is not enabled",
        }
    ok = t.status in ("ok", "same")
    info: dict[str, Any] = {"lang": lang, "status": "ok" if ok else TranslationStatus(t.status)}
    if ok:
        info["text"] = t.text
        if of is not None:
            info["of"] = of
    elif t.detail:
        info["detail"] = t.detail
    if t.engine:
        info["engine"] = t.engine
    return info


class _Busy:
    """What a translation is when its lane was over its bound (the original stands)."""

    text = ""
    status = "failed"
    engine = None
    detail = "translator busy: this source's translations are too far behind"


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
        self.outgoing = Outgoing(self.schemas, settings.check_outgoing)
        self.media: MediaPort = NoMedia()  # the app gives it the media layer
        self.translator: Translating | None = None  # set by the app when translation runs
        self.store: Store | None = None  # set by the app when the store runs
        self.moderation: TextModeration | None = None  # set by the app when text filters run
        self.cluster: Cluster | None = None  # set by the app with several nodes (redis_url)
        # moves a desk's connections to another node (the desks set it): desk, url, reason
        self.desk_mover: Callable[[str, str, str], Awaitable[None]] | None = None
        self.closing = False
        self._reaper: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.lanes = Lanes()
        # what reports carry: each participant's last chat lines and captions, as delivered
        self.evidence = Evidence(
            settings.report_evidence_lines, settings.report_evidence_participants
        )

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        if self.store is not None:
            await self.store.start()
        await self.media.start()
        if self.cluster is not None:
            self.cluster.held.append(lambda: [room.name for room in self.rooms])
            self.cluster.on_lost = self.hand_over
            await self.cluster.start()
        self._reaper = asyncio.create_task(self._reap_loop(), name="commhub-room-reaper")

    async def shutdown(self) -> None:
        """Tell everyone, then close every connection within the shutdown bound."""
        self.closing = True
        everyone = [p for room in self.rooms for p in room.participants.values()]
        notice = protocol.server_shutdown(5)
        for p in everyone:
            self.send(p.conn, notice)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.shutdown_timeout):
                await asyncio.gather(
                    *(p.conn.end(CloseReason.SHUTDOWN, "server shutting down") for p in everyone),
                    return_exceptions=True,
                )
        if self._reaper:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
        await self.lanes.close()
        if self.moderation is not None:
            self.moderation.close()
        await self.media.close()
        await self.bus.close()
        if self.cluster is not None:
            await self.cluster.close()

    async def drain(self) -> None:
        """SIGTERM with several nodes: no new room lands here; the rooms here run until
        they empty or `drain_timeout` passes, then each is handed to another node and its
        participants are sent there (`redirect {reason: drain}`)."""
        if self.cluster is None:
            return
        await self.cluster.drain()
        log.info("draining: rooms run up to %.0f s more, then move", self.settings.drain_timeout)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.settings.drain_timeout):
                while self.rooms.participant_count():  # noqa: ASYNC110 (rooms empty many ways)
                    await asyncio.sleep(0.25)
        for name in sorted(self.cluster.names()):
            url = await self.cluster.handover(name)
            await self.hand_over(name, url or "", "drain")

    async def hand_over(self, room_name: str, url: str, reason: str = "moved") -> None:
        """The room runs elsewhere now: everyone in it is sent to `url` (`redirect`, close
        4010), or, when no node can take it, told to come back (`server_shutdown`) to be
        placed again. A desk's name (`desk.NAME`) moves the desk's connections."""
        if room_name.startswith(DESK_ROOM_PREFIX):
            if self.desk_mover is not None:
                await self.desk_mover(room_name.removeprefix(DESK_ROOM_PREFIX), url, reason)
            return
        room = self.rooms.drop(room_name)
        if room is None:
            return
        everyone = list(room.participants.values())
        await self.media.close_room(room_name, everyone)
        notice = protocol.redirect(url, reason) if url else protocol.server_shutdown(1)
        why = CloseReason.REDIRECT if url else CloseReason.SHUTDOWN
        for p in everyone:
            self.bus.detach(room_name, p.id)
            self.send(p.conn, notice)
        log.info("room %s moved to %s (%s)", room_name, url or "no node yet", reason)
        await asyncio.gather(
            *(p.conn.end(why, f"the room moved ({reason})") for p in everyone),
            return_exceptions=True,
        )
        self._gauge()

    def reserve(self, room_name: str) -> None:
        """A room about to start here (a desk's call room: it runs where its desk runs)."""
        if self.cluster is not None:
            task = asyncio.create_task(self.cluster.claim_here(room_name))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close_store(self) -> None:
        """Commit what is queued and close the store: last, after shutdown and after the
        captions' last finals (the lanes' translations and the finals are queued writes)."""
        if self.store is not None:
            await self.store.close(self.settings.shutdown_timeout)

    async def _reap_loop(self) -> None:
        period = max(0.05, min(5.0, self.settings.empty_room_timeout / 2))
        while True:
            await asyncio.sleep(period)
            for name in self.rooms.reap():
                log.info("room %s closed after %.0f s empty", name, self.rooms.empty_timeout)
                if self.cluster is not None:
                    await self.cluster.release(name)
            self._gauge()

    # -- delivery --------------------------------------------------------------------------

    def send(self, conn: Inbox, msg: Message) -> None:
        """Straight to one local connection (replies that must precede room events)."""
        conn.deliver(self.outgoing.encode(msg))
        self.metrics.messages_out.labels(msg["type"]).inc()

    async def publish(
        self,
        room: str,
        msg: dict[str, Any],
        *,
        to: str | Collection[str] | None = None,
        exclude: str | None = None,
    ) -> None:
        self.outgoing.check(msg)  # the bus encodes it once for every recipient
        self.evidence.seen(room, msg)
        count = await self.bus.publish(room, msg, to=to, exclude=exclude)
        if count:
            self.metrics.messages_out.labels(msg["type"]).inc(count)

    # -- membership ------------------------------------------------------------------------

    async def join(
        self,
        room_name: str,
        p: Participant,
        *,
        ref: str | None = None,
        capabilities: Mapping[str, bool] | None = None,
        media_mode: str | None = None,
        record: bool | None = None,
    ) -> Room:
        """Admit p: `joined` (echoing `ref`) to it, `participant_joined` to the others, then
        its media state (`media_mode` once, current tracks). `media_mode`, `record`: the
        token's choices for the room."""
        stored: list[dict[str, Any]] = []
        policy: bool | None = None
        if self.store is not None and self.rooms.get(room_name) is None:
            stored, policy = await self._stored_room(room_name)  # after a restart or reap
        fresh = self.rooms.get(room_name) is None
        room, old = self.rooms.join(room_name, p)  # raises RoomFull
        if fresh:
            room.seed(stored)
            room.recording = self._records(policy)
        if record is not None and self.store is not None:
            try:
                await self.set_recording(room_name, record)
            except StoreError as exc:
                log.error("room %s: the token's recording policy was not saved: %s", room_name, exc)
        if old is not None:
            self.bus.detach(room_name, old.id)
            await self.publish(
                room_name, protocol.participant_left(old.ref(), LeaveReason.REPLACED)
            )
            await self.media.leave(room_name, old, "replaced")
            task = asyncio.create_task(
                old.conn.end(CloseReason.REPLACED, "the same identity joined again")
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.bus.attach(room_name, p.id, p.conn)
        mode = self.media.admit(room_name, p, capabilities or {}, media_mode)
        self.send(
            p.conn,
            protocol.joined(
                participant=p.wire(),
                room=room.name,
                capacity=room.capacity,
                mode=mode,
                participants=[o.wire() for o in room.participants.values() if o is not p],
                chat=room.recent_chat(p.read),
                ice_servers=self.settings.ice_servers,
                ref=ref,
                recording=room.recording,
            ),
        )
        await self.publish(room_name, protocol.participant_joined(p.wire()), exclude=p.id)
        await self.media.joined(room_name, p)
        self._gauge()
        return room

    async def _stored_room(self, room_name: str) -> tuple[list[dict[str, Any]], bool | None]:
        """The room's recent chat and recording policy from the store (none if it fails:
        the join goes on, logged, and /readyz says what is wrong)."""
        assert self.store is not None
        try:
            stored = await self.store.recent_chat(room_name, self.settings.chat_history)
            return stored, await self.store.recording(room_name)
        except Exception:
            log.exception("store: could not read room %s", room_name)
            return [], None

    def _records(self, policy: bool | None) -> bool:
        """A room records when its policy says so, else when the hub's setting does; never
        without a store (there would be nowhere to keep it)."""
        if self.store is None:
            return False
        return self.settings.recording if policy is None else policy

    async def set_recording(self, room_name: str, policy: bool | None) -> bool:
        """Set a room's recording policy (None: the hub's setting); a live room is told when
        that changes whether it records. Returns whether it records now."""
        if self.store is None:
            raise StoreError("the store is disabled (COMMHUB_STORE=false): nothing can record")
        await self.store.set_recording(room_name, policy)
        on = self._records(policy)
        room = self.rooms.get(room_name)
        if room is not None and room.recording != on:
            room.recording = on
            log.info("room %s %s recording", room_name, "starts" if on else "stops")
            await self.publish(room_name, protocol.recording(on))
        return on

    async def leave(self, room_name: str, p: Participant, reason: str) -> None:
        """Remove p (if it is still the room's) and tell the others."""
        room = self.rooms.get(room_name)
        if room is None or room.participants.get(p.id) is not p:
            return  # already replaced or removed
        self.rooms.leave(room_name, p.id)
        await self.media.leave(room_name, p, reason)  # closes p's peer connection
        self.bus.detach(room_name, p.id)
        await self.publish(room_name, protocol.participant_left(p.ref(), LeaveReason(reason)))
        self._gauge()

    async def update(self, room_name: str, p: Participant, ref: str | None = None) -> None:
        """`participant_updated` to everyone; the sender's copy echoes `ref`."""
        msg = protocol.participant_updated(p.wire())
        if ref:
            await self.publish(room_name, msg, exclude=p.id)
            self.send(p.conn, protocol.participant_updated(p.wire(), ref))
        else:
            await self.publish(room_name, msg)

    async def chat(
        self, room: Room, p: Participant, text: str, ref: str | None = None
    ) -> Message | None:
        """Deliver a chat at once to readers of its language (the sender's own copy echoes
        `ref`); its translations follow on the sender's lane, without holding its socket.
        With a store, nobody gets it (the sender's echo is its acknowledgement) before it is
        committed: what was acknowledged survives a crash. The text filters see it first
        (None: they dropped it)."""
        if self.moderation is not None:
            screened = await self.moderation.chat(room.name, p, text, ref)
            if screened is None:
                return None
            text = screened
        msg = protocol.chat(
            chat_id="CH_" + secrets.token_urlsafe(9),
            sender=p.ref(),
            text=text,
            lang=p.speak,
            ts=time.time(),
        )
        if self.store is not None:
            try:
                await self.store.add_chat(room.name, msg, recorded=room.recording)
            except StoreError as exc:
                raise ProtocolError(
                    ErrorCode.STORE_UNAVAILABLE, f"the chat was not sent: {exc}", ref
                ) from None
        room.remember(msg)
        await self.publish_text(room, msg, text, p.speak, lane=p.id, sender=(p.id, ref))
        return msg

    async def publish_text(
        self,
        room: Room,
        msg: Message,
        text: str | None,
        source: str,
        *,
        lane: str,
        to: Collection[str] | None = None,
        sender: tuple[str, str | None] | None = None,
        droppable: bool = False,
    ) -> None:
        """Publish msg to the room (or only to the participant ids in `to`), translated
        once per read language present (Jigasi's rule: once per target language, not once
        per listener). Readers of the source language get msg as it is, now; the others get
        it with a `translation` of `text` beside it (None: as it is), in order behind the
        lane's earlier messages. `sender`: (id, ref) of the participant whose own copy
        echoes `ref`."""
        groups: dict[str, list[str]] = {}
        for p in room.participants.values():
            if to is None or p.id in to:
                groups.setdefault(base_language(p.read), []).append(p.id)
        src = base_language(source)
        same = groups.pop(src, [])
        sender_id, ref = sender if sender else (None, None)
        if sender_id in same and ref:
            same.remove(sender_id)
            self._send_to(room.name, sender_id, {**msg, "ref": ref})
        if same:
            await self.publish(room.name, msg, to=same)
        if not groups:
            self._record_caption(room, msg, {})
            return
        if text is None and self.lanes.idle(lane):  # nothing to translate, nothing ahead
            await self._deliver(room, msg, None, src, groups, sender, busy=False)
            return

        async def run(busy: bool) -> None:
            await self._deliver(room, msg, text, src, groups, sender, busy)

        self.lanes.put(lane, Job(run, droppable=droppable))

    async def _deliver(
        self,
        room: Room,
        msg: Message,
        text: str | None,
        src: str,
        groups: dict[str, list[str]],
        sender: tuple[str, str | None] | None,
        busy: bool,
    ) -> None:
        """The copies of msg for readers of other languages (translated when `text`)."""
        sender_id, ref = sender if sender else (None, None)
        if text is None:
            self._record_caption(room, msg, {})
            for ids in groups.values():
                await self._publish_copies(room.name, msg, ids, sender_id, ref)
            return
        results: Mapping[str, Translated | None]
        if busy:
            results = {lang: _Busy() for lang in groups}
        elif self.translator is None:
            results = dict.fromkeys(groups)
        else:
            results = await self.translator.translate_many(text, src, list(groups))
        of = text if text != msg["text"] else None
        kept = room.translations.get(msg.get("id", ""))  # a chat message newcomers will see
        infos = {lang: translation_info(lang, results.get(lang), of) for lang in groups}
        self._record_caption(room, msg, infos)
        for lang, ids in groups.items():
            info = infos[lang]
            if self.moderation is not None:  # screened again in the reader's language
                screened = await self.moderation.translation(room.name, msg, lang, info)
                if screened is None:
                    continue
                info = screened
            if kept is not None:
                kept[lang] = info
            if self.store is not None and msg["type"] == "chat":
                self.store.add_chat_translation(room.name, msg["id"], lang, info)
            await self._publish_copies(room.name, {**msg, "translation": info}, ids, sender_id, ref)

    def _record_caption(
        self, room: Room, msg: Message, translations: dict[str, dict[str, Any]]
    ) -> None:
        """A caption final, with the translations its readers got, into the transcript of a
        room that records."""
        if not (self.store and room.recording and msg["type"] == "caption" and msg["final"]):
            return
        speaker = room.participants.get(msg["speaker"])  # gone: its last final, by id
        who = {"identity": speaker.identity, "name": speaker.name} if speaker else {}
        self.store.add_caption(room.name, {**msg, **who}, translations)

    async def _publish_copies(
        self, room_name: str, msg: Message, ids: list[str], sender_id: str | None, ref: str | None
    ) -> None:
        if sender_id in ids and ref:
            ids = [i for i in ids if i != sender_id]
            self._send_to(room_name, sender_id, {**msg, "ref": ref})
        if ids:
            await self.publish(room_name, msg, to=ids)

    def _send_to(self, room_name: str, pid: str, msg: Message) -> None:
        room = self.rooms.get(room_name)
        p = room.participants.get(pid) if room else None
        if p is not None:
            self.send(p.conn, msg)

    def room_of(self, p: Participant) -> Room | None:
        return next((r for r in self.rooms if r.participants.get(p.id) is p), None)

    async def remove(self, room_name: str, key: str) -> bool:
        """Admin: remove a participant by id or identity."""
        room = self.rooms.get(room_name)
        p = room and (room.participants.get(key) or room.by_identity(key))
        if not room or not p:
            return False
        await self.leave(room_name, p, "removed")
        await p.conn.end(CloseReason.REMOVED, "removed by an administrator")
        return True

    async def close_room(self, room_name: str) -> bool:
        room = self.rooms.drop(room_name)
        if room is None:
            return False
        if self.cluster is not None:
            await self.cluster.release(room_name)
        await self.media.close_room(room_name, list(room.participants.values()))
        for p in list(room.participants.values()):
            self.bus.detach(room_name, p.id)
        await asyncio.gather(
            *(
                p.conn.end(CloseReason.ROOM_CLOSED, "the room was closed")
                for p in room.participants.values()
            ),
            return_exceptions=True,
        )
        self._gauge()
        return True

    def _gauge(self) -> None:
        self.metrics.rooms.set(len(self.rooms))
        self.metrics.participants.set(self.rooms.participant_count())
