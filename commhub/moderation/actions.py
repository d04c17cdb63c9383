"""Reports and moderator actions: `report` from anyone, `moderate` from holders of the
`moderate` grant, bans checked at join, and the same operations for the admin API."""

from __future__ import annotations

import logging
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import Counter

from commhub import protocol
from commhub.protocol import CloseReason, ErrorCode, Message, ProtocolError
from commhub.rooms import Participant, Room
from commhub.store import StoreError

if TYPE_CHECKING:
    from commhub.hub import Hub

log = logging.getLogger("commhub.moderation.actions")

REASONS = (
    "harassment",
    "hate",
    "sexual",
    "violence",
    "spam",
    "self_harm",
    "impersonation",
    "other",
)
ACTIONS = ("mute", "unmute", "remove", "ban", "unban", "lift_strike")
KINDS = ("audio", "video")
MODERATOR = "moderator"  # the reason a moderator's mute suppresses a track under
_MUTES_PER_ROOM = 256  # identities a room remembers as muted (oldest forgotten first)
_MUTED_ROOMS = 10000  # rooms that remember muted identities (least recently used forgotten)
_LIMITED_IDENTITIES = 10000  # reporters whose recent reports are counted (oldest forgotten)


class ReportStore(Protocol):
    """What actions need of the store (commhub.store.Store)."""

    async def add_report(self, report: dict[str, Any]) -> str: ...

    async def reports(
        self, *, room: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]: ...

    async def get_report(self, report_id: str) -> dict[str, Any] | None: ...

    async def resolve_report(self, report_id: str, resolution: str, by: str) -> bool: ...

    async def bans(self, room: str | None = None) -> list[dict[str, Any]]: ...

    async def add_ban(
        self, room: str, identity: str, until: float | None, by: str, reason: str
    ) -> str: ...

    async def active_ban(self, room: str, identity: str) -> dict[str, Any] | None: ...

    async def lift_ban(self, ban_id: str) -> bool: ...

    def add_event(self, room: str, kind: str, data: dict[str, Any]) -> None: ...


class MediaControl(Protocol):
    """What actions need of the media layer (commhub.media.Media)."""

    def mode(self, room_name: str) -> str: ...

    async def set_mode(self, room_name: str, mode: str) -> None: ...

    async def suppress(
        self,
        room_name: str,
        participant_id: str,
        *,
        track_id: str | None = None,
        kind: str | None = None,
        reason: str,
    ) -> list[dict[str, Any]]: ...

    async def release(
        self,
        room_name: str,
        participant_id: str,
        *,
        track_id: str | None = None,
        kind: str | None = None,
        reason: str | None = None,
    ) -> list[dict[str, Any]]: ...


StrikeLift = Callable[[str, str], Any]  # strikes.lift(room, identity): a strike-mute ends
FramesOf = Callable[[str, str], Awaitable[list[dict[str, Any]]] | list[dict[str, Any]]]


class Actions:
    def __init__(
        self,
        hub: Hub,
        media: MediaControl | None,
        store: ReportStore | None = None,
        *,
        lift_strike: StrikeLift | None = None,
        evidence_frames: FramesOf | None = None,
    ) -> None:
        self.hub = hub
        self.media = media
        self._store = store
        self.lift_strike = lift_strike
        self.evidence_frames = evidence_frames
        self.reports_filed = Counter(
            "commhub_reports", "Reports filed by participants, by reason", ["reason"],
            registry=hub.registry,
        )  # fmt: skip
        self.actions_taken = Counter(
            "commhub_moderator_actions", "Moderator and administrator actions, by action",
            ["action"], registry=hub.registry,
        )  # fmt: skip
        self._reports: OrderedDict[tuple[str, str], deque[float]] = OrderedDict()
        # room -> identity -> muted kinds: a muted participant that joins again stays muted
        self._mutes: OrderedDict[str, OrderedDict[str, set[str]]] = OrderedDict()

    # -- report ---------------------------------------------------------------------------

    async def report(self, room: Room, p: Participant, msg: Message) -> None:
        ref = msg.get("id")
        store = self._need_store(ref)
        target = room.participants.get(msg["participant"])
        if target is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PARTICIPANT, f"no participant {msg['participant']!r} here", ref
            )
        if target is p:
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, "report: you cannot report yourself", ref
            )
        self._count_report(room.name, p.identity, ref)
        report: dict[str, Any] = {
            "id": "RP_" + secrets.token_urlsafe(9),
            "room": room.name,
            "reporter": p.ref(),
            "subject": target.ref(),
            "reason": msg["reason"],
            "note": msg.get("note", "").strip() or None,
            "message_id": msg.get("message_id"),
            "segment": msg.get("segment"),
            "created_at": time.time(),
            "status": "open",
            "evidence": {
                "lines": self.hub.evidence.of(room.name, target.id),
                "frames": await self._frames(room.name, target.identity),
            },
        }
        try:
            report["id"] = await store.add_report(report)
        except StoreError as exc:
            raise ProtocolError(
                ErrorCode.STORE_UNAVAILABLE, f"the report was not stored: {exc}", ref
            ) from None
        self.reports_filed.labels(report["reason"]).inc()
        self.hub.send(p.conn, protocol.reported(report["id"], ref))
        moderators = [
            q.id for q in room.participants.values() if q.can("moderate") and q is not target
        ]
        if moderators:
            await self.hub.publish(room.name, protocol.report_filed(report), to=moderators)

    def _count_report(self, room: str, identity: str, ref: str | None) -> None:
        """At most report_limit reports per identity and room per report_window."""
        s = self.hub.settings
        now = time.monotonic()
        key = (room, identity)
        times = self._reports.pop(key, None) or deque()
        self._reports[key] = times
        while len(self._reports) > _LIMITED_IDENTITIES:
            self._reports.popitem(last=False)
        while times and now - times[0] > s.report_window:
            times.popleft()
        if len(times) >= s.report_limit:
            self.hub.metrics.errors.labels(ErrorCode.RATE_LIMITED.value).inc()
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"at most {s.report_limit} reports per {s.report_window:g} s; report dropped",
                ref,
            )
        times.append(now)

    async def _frames(self, room: str, identity: str) -> list[dict[str, Any]]:
        if self.evidence_frames is None:
            return []
        frames = self.evidence_frames(room, identity)
        return list(await frames if isinstance(frames, Awaitable) else frames)

    # -- moderate -------------------------------------------------------------------------

    async def moderate(self, room: Room, p: Participant, msg: Message) -> None:
        ref, action, key = msg.get("id"), msg["action"], msg["participant"]
        if not p.can("moderate"):
            raise ProtocolError(ErrorCode.FORBIDDEN, "moderate needs the moderate grant", ref)
        if "kind" in msg and action not in ("mute", "unmute"):
            raise ProtocolError(
                ErrorCode.INVALID_MESSAGE, f"{action}: kind is for mute and unmute", ref
            )
        if "duration" in msg and action != "ban":
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{action}: duration is for ban", ref)
        target = room.participants.get(key)
        identity = target.identity if target else None
        if action in ("ban", "unban") and target is None:
            target = room.by_identity(key)
            identity = key
        if identity is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_PARTICIPANT, f"no participant {key!r} in this room", ref
            )
        if identity == p.identity and action != "unmute":
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{action}: not on yourself", ref)
        if target is not None and "admin" in target.grants and action != "unmute":
            raise ProtocolError(ErrorCode.FORBIDDEN, "an administrator cannot be moderated", ref)
        reason = msg.get("reason", "").strip() or None
        if action in ("mute", "unmute"):
            assert target is not None
            kinds = [msg["kind"]] if "kind" in msg else list(KINDS)
            if action == "mute":
                await self.mute(room.name, target, kinds, p, reason, ref)
            else:
                await self.unmute(room.name, target, kinds, p, reason, ref)
        elif action == "remove":
            assert target is not None
            await self.remove(room.name, target, p, reason, ref)
        elif action == "ban":
            await self.ban(room.name, identity, msg.get("duration"), p, reason, ref)
        elif action == "unban":
            await self.unban(room.name, identity, p, reason, ref)
        else:
            await self.lift(room.name, identity, target, p, reason, ref)

    async def mute(
        self,
        room: str,
        target: Participant,
        kinds: list[str],
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> None:
        media = self.media
        if media is None:
            raise ProtocolError(ErrorCode.NOT_SUPPORTED, "this hub relays no media", ref)
        await self._relayed(media, room)
        for kind in kinds:
            await media.suppress(room, target.id, kind=kind, reason=MODERATOR)
        mutes = self._mutes.setdefault(room, OrderedDict())
        self._mutes.move_to_end(room)
        while len(self._mutes) > _MUTED_ROOMS:
            self._mutes.popitem(last=False)
        mutes.setdefault(target.identity, set()).update(kinds)
        mutes.move_to_end(target.identity)
        while len(mutes) > _MUTES_PER_ROOM:
            mutes.popitem(last=False)
        one = kinds[0] if len(kinds) == 1 else None
        await self._announce(room, "mute", target.ref(), by, kind=one, reason=reason, ref=ref)

    async def unmute(
        self,
        room: str,
        target: Participant,
        kinds: list[str],
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> None:
        muted: set[str] = self._mutes.get(room, OrderedDict()).get(target.identity, set())
        if not muted & set(kinds):
            raise ProtocolError(
                ErrorCode.WRONG_STATE, f"{target.id} is not muted ({'/'.join(kinds)})", ref
            )
        muted.difference_update(kinds)
        if not muted:
            self._mutes[room].pop(target.identity, None)
        if self.media is not None:
            for kind in kinds:
                await self.media.release(room, target.id, kind=kind, reason=MODERATOR)
        one = kinds[0] if len(kinds) == 1 else None
        await self._announce(room, "unmute", target.ref(), by, kind=one, reason=reason, ref=ref)

    async def remove(
        self,
        room: str,
        target: Participant,
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> None:
        await self._announce(room, "remove", target.ref(), by, reason=reason, ref=ref)
        await self._eject(room, target, "removed by a moderator")

    async def ban(
        self,
        room: str,
        identity: str,
        duration: float | None,
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> dict[str, Any]:
        """Ban an identity from a room (`duration` seconds, None: no end); whoever holds
        it there now is removed. Returns the ban."""
        store = self._need_store(ref)
        until = time.time() + duration if duration is not None else None
        who = by.identity if by else "admin"
        try:
            ban_id = await store.add_ban(room, identity, until, who, reason or "")
        except StoreError as exc:
            raise ProtocolError(
                ErrorCode.STORE_UNAVAILABLE, f"the ban was not stored: {exc}", ref
            ) from None
        live = self.hub.rooms.get(room)
        target = live.by_identity(identity) if live else None
        subject = target.ref() if target else {"identity": identity}
        await self._announce(room, "ban", subject, by, until=until, reason=reason, ref=ref)
        if target is not None:
            await self._eject(room, target, "banned from this room")
        store.add_event(room, "ban", {"identity": identity, "until": until, "by": who})
        return {"id": ban_id, "room": room, "identity": identity, "until": until, "by": who}

    async def unban(
        self,
        room: str,
        identity: str,
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> None:
        store = self._need_store(ref)
        try:
            ban = await store.active_ban(room, identity)
            lifted = ban is not None and await store.lift_ban(ban["id"])
        except StoreError as exc:
            raise ProtocolError(
                ErrorCode.STORE_UNAVAILABLE, f"the ban was not lifted: {exc}", ref
            ) from None
        if not lifted:
            raise ProtocolError(ErrorCode.WRONG_STATE, f"{identity!r} is not banned here", ref)
        await self.announce_unban(room, identity, by, reason, ref)

    async def announce_unban(
        self,
        room: str,
        identity: str,
        by: Participant | None,
        reason: str | None = None,
        ref: str | None = None,
    ) -> None:
        if self.store is not None:
            who = by.identity if by else "admin"
            self.store.add_event(room, "unban", {"identity": identity, "by": who})
        await self._announce(room, "unban", {"identity": identity}, by, reason=reason, ref=ref)

    async def lift(
        self,
        room: str,
        identity: str,
        target: Participant | None,
        by: Participant | None,
        reason: str | None,
        ref: str | None = None,
    ) -> None:
        lift = self.lift_strike
        if lift is None and self.hub.moderation is not None:
            lift = self.hub.moderation.strikes.lift
        if lift is None:
            raise ProtocolError(ErrorCode.NOT_SUPPORTED, "this hub runs no text filters", ref)
        lifted = lift(room, identity)
        if isinstance(lifted, Awaitable):
            lifted = await lifted
        if lifted is False:
            raise ProtocolError(ErrorCode.WRONG_STATE, f"{identity!r} is not strike-muted", ref)
        subject = target.ref() if target else {"identity": identity}
        await self._announce(room, "lift_strike", subject, by, reason=reason, ref=ref)

    # -- join -----------------------------------------------------------------------------

    async def active_ban(self, room: str, identity: str) -> dict[str, Any] | None:
        """The ban in force on identity in room. A store that cannot answer lets the join
        through (logged): a database fault must not lock everyone out."""
        if self.store is None:
            return None
        try:
            return await self.store.active_ban(room, identity)
        except Exception as exc:
            log.error("room %s: ban of %r not checked: %s", room, identity, exc)
            return None

    async def joined(self, room: str, p: Participant) -> None:
        """A muted identity that joins again (any token) stays muted."""
        kinds = self._mutes.get(room, OrderedDict()).get(p.identity)
        if kinds and self.media is not None:
            await self._relayed(self.media, room)
            for kind in sorted(kinds):
                await self.media.suppress(room, p.id, kind=kind, reason=MODERATOR)

    # -- helpers --------------------------------------------------------------------------

    @property
    def store(self) -> ReportStore | None:
        """The one given, or the hub's (commhub.store, when the hub has one)."""
        return self._store or self.hub.store

    @staticmethod
    async def _relayed(media: MediaControl, room: str) -> None:
        """Media on a direct (p2p) connection never passes the hub: keep the room in sfu,
        where a mute holds, now (a p2p room moves) and when it gets down to two (it would
        go p2p). It stays so while the room lasts, or until an administrator says."""
        await media.set_mode(room, "sfu")

    def _need_store(self, ref: str | None) -> ReportStore:
        if self.store is None:
            raise ProtocolError(ErrorCode.NOT_SUPPORTED, "this hub keeps no reports or bans", ref)
        return self.store

    async def _announce(
        self,
        room: str,
        action: str,
        subject: dict[str, Any],
        by: Participant | None,
        *,
        kind: str | None = None,
        until: float | None = None,
        reason: str | None = None,
        ref: str | None = None,
    ) -> None:
        """`moderation_action` to the room (the target included); the moderator's own copy
        echoes `ref`."""
        self.actions_taken.labels(action).inc()
        mod = by.ref() if by else None
        msg = protocol.moderation_action(
            action, subject, mod, kind=kind, until=until, reason=reason
        )
        if by is not None and ref:
            await self.hub.publish(room, msg, exclude=by.id)
            self.hub.send(by.conn, {**msg, "ref": ref})
        else:
            await self.hub.publish(room, msg)
        if self.store is not None and action in ("mute", "unmute", "remove", "lift_strike"):
            data = {"identity": subject["identity"], "by": by.identity if by else "admin"}
            if kind:
                data["kind"] = kind
            self.store.add_event(room, action, data)

    async def _eject(self, room: str, target: Participant, why: str) -> None:
        await self.hub.leave(room, target, "removed")
        await target.conn.end(CloseReason.REMOVED, why)
