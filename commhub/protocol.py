"""The wire protocol: the enums and typed builders of every server message, and validation
against the JSON Schemas in signalling/schemas.

The schemas are the single source of truth (the package's `schemas` folder is a link to
signalling/schemas); the builders here are the only place a server message is put together,
and `Outgoing` is the one point where it is encoded (and, with `check_outgoing`, checked).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

log = logging.getLogger("commhub.protocol")

PROTOCOL_VERSION = 1
REF_MAX = 64  # longest client `id` echoed as `ref` (defs.json#/$defs/ref)
_SURROGATE = re.compile("[\ud800-\udfff]")


class ErrorCode(StrEnum):
    BAD_JSON = "bad_json"
    UNKNOWN_TYPE = "unknown_type"
    INVALID_MESSAGE = "invalid_message"
    NOT_JOINED = "not_joined"
    ALREADY_JOINED = "already_joined"
    MESSAGE_TOO_LARGE = "message_too_large"
    RATE_LIMITED = "rate_limited"
    FLOODING = "flooding"
    FORBIDDEN = "forbidden"
    ROOM_FULL = "room_full"
    JOIN_TIMEOUT = "join_timeout"
    NOT_SUPPORTED = "not_supported"
    INVALID_SDP = "invalid_sdp"
    NO_MEDIA = "no_media"
    WRONG_STATE = "wrong_state"
    UNKNOWN_PARTICIPANT = "unknown_participant"
    INVALID_CANDIDATE = "invalid_candidate"
    TOO_MANY_TRACKS = "too_many_tracks"
    SDP_TOO_LARGE = "sdp_too_large"
    INTERNAL_ERROR = "internal_error"
    STORE_UNAVAILABLE = "store_unavailable"
    STRIKE_MUTED = "strike_muted"
    BANNED = "banned"
    UNKNOWN_DESK = "unknown_desk"
    UNKNOWN_TICKET = "unknown_ticket"
    UNKNOWN_SESSION = "unknown_session"
    UNKNOWN_AGENT = "unknown_agent"


class ProtocolError(Exception):
    """A refused message: becomes an `error` message (and a close when fatal)."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.ref = ref


Message = dict[str, Any]


class Schemas:
    """Validators for every client and server message type."""

    def __init__(self) -> None:
        root = resources.files("commhub") / "schemas"
        docs: list[dict[str, Any]] = []
        self.client: dict[str, Draft202012Validator] = {}
        self.server: dict[str, Draft202012Validator] = {}
        defs = json.loads((root / "defs.json").read_text("utf-8"))
        docs.append(defs)
        per_dir: dict[str, dict[str, dict[str, Any]]] = {"client": {}, "server": {}}
        for direction in per_dir:
            for entry in (root / direction).iterdir():
                if entry.name.endswith(".json"):
                    doc = json.loads(entry.read_text("utf-8"))
                    per_dir[direction][entry.name.removesuffix(".json")] = doc
                    docs.append(doc)
        registry: Registry[Any] = Registry().with_resources(
            (doc["$id"], Resource.from_contents(doc)) for doc in docs
        )
        for direction, table in per_dir.items():
            target = self.client if direction == "client" else self.server
            for name, doc in table.items():
                Draft202012Validator.check_schema(doc)
                target[name] = Draft202012Validator(doc, registry=registry)

    def parse_client(self, raw: str | bytes, max_depth: int = 16) -> Message:
        """Decode and validate one client message, or raise ProtocolError.

        Nothing the hub could not send on (a lone surrogate from a JSON escape) or walk
        safely (nesting beyond max_depth) gets past this point."""
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProtocolError(ErrorCode.BAD_JSON, f"not valid JSON: {exc}") from None
        except RecursionError:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "nested too deeply") from None
        if not isinstance(msg, dict):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "a message must be a JSON object")
        ref = client_ref(msg.get("id"))
        problem = unsafe(msg, max_depth)
        if problem:
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, problem, ref)
        kind = msg.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, "missing string field 'type'", ref)
        validator = self.client.get(kind)
        if validator is None:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:64]!r}", ref)
        error = next(iter(sorted(validator.iter_errors(msg), key=_depth)), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(message)"
            detail = error.message if len(error.message) <= 200 else error.message[:200] + "..."
            raise ProtocolError(ErrorCode.INVALID_MESSAGE, f"{kind}: {where}: {detail}", ref)
        return msg

    def check_server(self, msg: Message) -> None:
        """Raise jsonschema.ValidationError when a server message breaks its schema."""
        self.server[msg["type"]].validate(msg)


def client_ref(value: Any) -> str | None:
    """The `id` an error may echo as `ref`: only what the schema's ref allows."""
    if isinstance(value, str) and 0 < len(value) <= REF_MAX and not _SURROGATE.search(value):
        return value
    return None


def unsafe(value: Any, max_depth: int) -> str | None:
    """Why a decoded JSON value may not enter the hub, or None: nesting deeper than
    max_depth, or a string with a lone surrogate (valid JSON, but not encodable)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return "text with an unpaired surrogate (not valid Unicode)"
            continue
        if isinstance(item, dict | list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            if isinstance(item, dict):
                stack.extend((k, depth) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)
    return None


def encode(msg: Message) -> str:
    """The one way a message is put on the wire (compact, UTF-8 kept)."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


def _depth(error: Any) -> int:
    return len(error.absolute_path)


@cache
def schemas() -> Schemas:
    return Schemas()


# -- enums of the wire ------------------------------------------------------------------------


class CloseReason(StrEnum):
    """Why the hub ends a connection; `code` is the WebSocket close code it closes with."""

    LEFT = "left"
    SHUTDOWN = "shutdown"
    FLOODING = "flooding"
    REPLACED = "replaced"
    ROOM_FULL = "room_full"
    REMOVED = "removed"
    ROOM_CLOSED = "room_closed"
    EXPIRED = "expired"
    JOIN_TIMEOUT = "join_timeout"
    INTERNAL_ERROR = "internal_error"
    BANNED = "banned"
    REDIRECT = "redirect"

    @property
    def code(self) -> int:
        return _CLOSE_CODES[self]

    @property
    def says_bye(self) -> bool:
        """Whether a `bye` precedes the close (the others get an `error` or a notice)."""
        return self in _BYE


_CLOSE_CODES = {
    CloseReason.LEFT: 1000,
    CloseReason.SHUTDOWN: 1001,
    CloseReason.FLOODING: 1008,
    CloseReason.INTERNAL_ERROR: 1011,
    CloseReason.REPLACED: 4002,
    CloseReason.ROOM_FULL: 4003,
    CloseReason.REMOVED: 4004,
    CloseReason.ROOM_CLOSED: 4005,
    CloseReason.EXPIRED: 4006,
    CloseReason.JOIN_TIMEOUT: 4008,
    CloseReason.BANNED: 4009,
    CloseReason.REDIRECT: 4010,
}
_BYE = frozenset(
    {
        CloseReason.LEFT,
        CloseReason.REPLACED,
        CloseReason.REMOVED,
        CloseReason.ROOM_CLOSED,
        CloseReason.EXPIRED,
    }
)


class LeaveReason(StrEnum):
    """`participant_left.reason`."""

    LEFT = "left"
    DISCONNECTED = "disconnected"
    TIMEOUT = "timeout"
    REPLACED = "replaced"
    REMOVED = "removed"
    ROOM_CLOSED = "room_closed"
    SHUTDOWN = "shutdown"
    EXPIRED = "expired"


class MediaMode(StrEnum):
    """How media flows in a room (`media_mode.mode`, `joined.room.mode`)."""

    SFU = "sfu"
    P2P = "p2p"


class TrackState(StrEnum):
    PUBLISHED = "published"
    UPDATED = "updated"
    UNPUBLISHED = "unpublished"


class MediaClosedReason(StrEnum):
    ICE_FAILED = "ice_failed"
    STALLED = "stalled"
    FAILED = "failed"


class CaptionUnavailableReason(StrEnum):
    NO_MODEL = "no_model"
    MODEL_ERROR = "model_error"
    BUSY = "busy"  # the node captions its limit of speakers (caption_max_streams)


class TranslationStatus(StrEnum):
    OK = "ok"
    UNAVAILABLE = "unavailable"
    FAILED = "failed"
    TOO_LONG = "too_long"


# -- builders: one per server message (the schemas in signalling/schemas/server) -------------


def _with_ref(msg: Message, ref: str | None) -> Message:
    if ref:
        msg["ref"] = ref
    return msg


def error(code: ErrorCode, message: str, ref: str | None = None, fatal: bool = False) -> Message:
    msg: Message = {"type": "error", "code": code.value, "message": message}
    _with_ref(msg, ref)
    if fatal:
        msg["fatal"] = True
    return msg


def pong(ts: float, ref: str | None = None) -> Message:
    return _with_ref({"type": "pong", "ts": round(ts, 3)}, ref)


def joined(
    *,
    participant: Mapping[str, Any],
    room: str,
    capacity: int,
    mode: MediaMode,
    participants: Iterable[Mapping[str, Any]],
    chat: Sequence[Message],
    ice_servers: Sequence[Mapping[str, Any]],
    ref: str | None = None,
    recording: bool = False,
) -> Message:
    return _with_ref(
        {
            "type": "joined",
            "protocol": PROTOCOL_VERSION,
            "participant": dict(participant),
            "room": {"name": room, "capacity": capacity, "mode": mode.value},
            "participants": [dict(p) for p in participants],
            "chat": list(chat),
            "ice_servers": [dict(s) for s in ice_servers],
            "recording": recording,
        },
        ref,
    )


def participant_joined(participant: Mapping[str, Any]) -> Message:
    return {"type": "participant_joined", "participant": dict(participant)}


def participant_left(participant: Mapping[str, Any], reason: LeaveReason) -> Message:
    return {"type": "participant_left", "participant": dict(participant), "reason": reason.value}


def participant_updated(participant: Mapping[str, Any], ref: str | None = None) -> Message:
    return _with_ref({"type": "participant_updated", "participant": dict(participant)}, ref)


def chat(*, chat_id: str, sender: Mapping[str, Any], text: str, lang: str, ts: float) -> Message:
    """A chat message as the room keeps it (the sender's echo adds `ref`)."""
    return {
        "type": "chat",
        "id": chat_id,
        "from": dict(sender),
        "text": text,
        "lang": lang,
        "ts": round(ts, 3),
    }


def bye(reason: CloseReason, message: str, ref: str | None = None) -> Message:
    return _with_ref({"type": "bye", "reason": reason.value, "message": message}, ref)


def server_shutdown(reconnect_after: float) -> Message:
    return {"type": "server_shutdown", "reconnect_after": reconnect_after}


def redirect(url: str, reason: str) -> Message:
    return {"type": "redirect", "url": url, "reason": reason}


def media_mode(mode: MediaMode, peer: str | None = None, offerer: bool = False) -> Message:
    msg: Message = {"type": "media_mode", "mode": mode.value}
    if peer is not None:
        msg.update(peer=peer, offerer=offerer)
    return msg


def media_closed(reason: MediaClosedReason) -> Message:
    return {"type": "media_closed", "reason": reason.value}


def track(state: TrackState, participant: str, meta: Mapping[str, Any]) -> Message:
    return {"type": "track", "state": state.value, "participant": participant, "track": dict(meta)}


def hub_sdp(
    kind: str, sdp: str, tracks: Sequence[Mapping[str, Any]], ref: str | None = None
) -> Message:
    """The hub's own `offer` (ref: none) or `answer` (ref: the client offer's id)."""
    assert kind in ("offer", "answer")
    return _with_ref({"type": kind, "sdp": sdp, "tracks": [dict(t) for t in tracks]}, ref)


def relayed(kind: str, sender: str, body: Mapping[str, Any]) -> Message:
    """An `offer`, `answer` or `ice` of a direct (p2p) connection, relayed from `sender`."""
    assert kind in ("offer", "answer", "ice")
    return {"type": kind, "from": sender, **body}


def caption(
    *,
    segment: str,
    speaker: str,
    lang: str,
    final: bool,
    text: str,
    start: float,
    end: float,
    track_start: float,
    words: Sequence[Mapping[str, Any]] | None = None,
    confidence: float | None = None,
) -> Message:
    msg: Message = {
        "type": "caption",
        "segment": segment,
        "speaker": speaker,
        "lang": lang,
        "final": final,
        "text": text,
        "start": round(start, 3),
        "end": round(end, 3),
        "track_start": round(track_start, 3),
    }
    if words is not None:
        msg["words"] = [dict(w) for w in words]
    if confidence is not None:
        msg["confidence"] = round(confidence, 3)
    return msg


def caption_unavailable(
    participant: str, lang: str, reason: CaptionUnavailableReason, message: str
) -> Message:
    return {
        "type": "caption_unavailable",
        "participant": participant,
        "lang": lang,
        "reason": reason.value,
        "message": message,
    }


def caption_degraded(
    participant: str,
    dropped_partials: int,
    dropped_utterances: int,
    *,
    shed_seconds: float | None = None,
) -> Message:
    msg: Message = {
        "type": "caption_degraded",
        "participant": participant,
        "dropped_partials": dropped_partials,
        "dropped_utterances": dropped_utterances,
    }
    if shed_seconds is not None:
        msg["shed_seconds"] = shed_seconds
    return msg


# -- the one way out ----------------------------------------------------------------------------


class OutgoingViolation(Exception):
    """A server message that breaks its schema (raised only with `check_outgoing` on)."""


class Outgoing:
    """Where every server message leaves the hub: encoded once, and with `check` on
    validated against its schema first (a violation is logged as an error and raised)."""

    def __init__(self, schemas: Schemas, check: bool) -> None:
        self.schemas = schemas
        self.on = check

    def check(self, msg: Message) -> None:
        if not self.on:
            return
        validator = self.schemas.server.get(str(msg.get("type")))
        problem: str | None = None
        if validator is None:
            problem = f"no server message type {msg.get('type')!r}"
        else:
            try:
                validator.validate(msg)
            except ValidationError as exc:
                where = "/".join(str(p) for p in exc.absolute_path) or "(message)"
                problem = f"{msg['type']}: {where}: {exc.message[:300]}"
        if problem is not None:
            log.error("outgoing message breaks its schema: %s", problem)
            raise OutgoingViolation(problem)

    def encode(self, msg: Message) -> str:
        self.check(msg)
        return encode(msg)


# -- store --


def recording(on: bool) -> Message:
    """The room's transcript recording was switched on or off (joined.recording: the start)."""
    return {"type": "recording", "recording": on}


# -- imagery --


def track_blocked(
    *,
    participant: str,
    track: Mapping[str, Any],
    reason: str,
    label: str,
    score: float,
    ts: float,
) -> Message:
    """To a track's publisher and the room's moderators: the hub stopped relaying it."""
    return {
        "type": "track_blocked",
        "participant": participant,
        "track": dict(track),
        "reason": reason,
        "label": label,
        "score": round(score, 3),
        "ts": round(ts, 3),
    }


# -- reports and moderator actions --


def banned(message: str, until: float | None) -> Message:
    """The fatal `error` a banned identity's `join` gets (`until`: when the ban ends)."""
    msg = error(ErrorCode.BANNED, message, fatal=True)
    msg["until"] = None if until is None else round(until, 3)
    return msg


def reported(report_id: str, ref: str | None = None) -> Message:
    return _with_ref({"type": "reported", "report_id": report_id}, ref)


def report_filed(report: Mapping[str, Any]) -> Message:
    """To the room's moderators: the report without its evidence (the admin API has it)."""
    keys = ("id", "room", "reporter", "reason", "note", "message_id", "segment")
    summary: Message = {k: report[k] for k in keys if report.get(k) is not None}
    summary["participant"] = report["subject"]
    summary["ts"] = round(report["created_at"], 3)
    evidence = report.get("evidence") or {}
    summary["evidence"] = len(evidence.get("lines", [])) + len(evidence.get("frames", []))
    return {"type": "report_filed", "report": summary}


def moderation_action(
    action: str,
    participant: Mapping[str, Any],
    by: Mapping[str, Any] | None,
    *,
    kind: str | None = None,
    until: float | None = None,
    reason: str | None = None,
    ref: str | None = None,
) -> Message:
    msg: Message = {
        "type": "moderation_action",
        "action": action,
        "participant": dict(participant),
        "by": dict(by) if by is not None else None,
    }
    if kind is not None:
        msg["kind"] = kind
    if action == "ban":
        msg["until"] = None if until is None else round(until, 3)
    if reason:
        msg["reason"] = reason
    return _with_ref(msg, ref)


# -- moderation: text filters --


def moderated(
    *,
    action: str,
    kind: str,
    lang: str,
    rules: Sequence[str],
    strikes: int,
    strike_limit: int,
    muted: bool,
    ref: str | None = None,
    segment: str | None = None,
    about: str | None = None,
) -> Message:
    """To a sender whose chat, caption or its translation a filter caught."""
    msg: Message = {
        "type": "moderated",
        "action": action,
        "kind": kind,
        "lang": lang,
        "rules": list(rules),
        "strikes": strikes,
        "strike_limit": strike_limit,
        "muted": muted,
    }
    if segment is not None:
        msg["segment"] = segment
    if about is not None:
        msg["about"] = about
    return _with_ref(msg, ref)


# -- desks --------------------------------------------------------------------------------------


def desk_waiting(
    desk: Mapping[str, Any],
    position: int,
    estimated_wait: float | None,
    agents_online: int,
    notice: Mapping[str, str] | None = None,
    ref: str | None = None,
) -> Message:
    msg: Message = {
        "type": "desk_waiting",
        "desk": dict(desk),
        "position": position,
        "estimated_wait": None if estimated_wait is None else round(estimated_wait, 1),
        "agents_online": agents_online,
    }
    if notice is not None:
        msg["notice"] = dict(notice)
    return _with_ref(msg, ref)


def desk_unavailable(
    desk: Mapping[str, Any],
    reason: str,
    message: str,
    *,
    opens_at: float | None = None,
    estimated_wait: float | None = None,
    ref: str | None = None,
) -> Message:
    assert reason in ("closed", "full", "deleted")
    msg: Message = {
        "type": "desk_unavailable",
        "desk": dict(desk),
        "reason": reason,
        "message": message,
        "opens_at": opens_at,
        "estimated_wait": None if estimated_wait is None else round(estimated_wait, 1),
    }
    return _with_ref(msg, ref)


def desk_assigned(
    *,
    session: str,
    desk: Mapping[str, Any],
    room: str,
    token: str,
    agent_name: str | None = None,
    visitor: Mapping[str, Any] | None = None,
    transcript: Sequence[Mapping[str, Any]] | None = None,
    transferred: Mapping[str, Any] | None = None,
    ref: str | None = None,
) -> Message:
    """The visitor's copy names the agent (`with`); the agent's has `visitor` and, after a
    transfer, what came before."""
    msg: Message = {
        "type": "desk_assigned",
        "session": session,
        "desk": dict(desk),
        "room": room,
        "token": token,
    }
    if agent_name is not None:
        msg["with"] = {"name": agent_name}
    if visitor is not None:
        msg["visitor"] = dict(visitor)
    if transcript is not None:
        msg["transcript"] = [dict(line) for line in transcript]
    if transferred is not None:
        msg["transferred"] = dict(transferred)
    return _with_ref(msg, ref)


def desk_invited(
    *,
    session: str,
    desk: Mapping[str, Any],
    room: str,
    token: str,
    visitor: Mapping[str, Any],
    by: Mapping[str, Any],
) -> Message:
    return {
        "type": "desk_invited",
        "session": session,
        "desk": dict(desk),
        "room": room,
        "token": token,
        "visitor": dict(visitor),
        "by": dict(by),
    }


def desk_added(
    session: str,
    *,
    agent: str | None = None,
    link: str | None = None,
    expires_at: float | None = None,
    ref: str | None = None,
) -> Message:
    msg: Message = {"type": "desk_added", "session": session}
    if agent is not None:
        msg["agent"] = agent
    if link is not None:
        msg["link"] = link
    if expires_at is not None:
        msg["expires_at"] = round(expires_at, 3)
    return _with_ref(msg, ref)


def desk_ended(
    session: str, message: str, outcome: str | None = None, ref: str | None = None
) -> Message:
    msg: Message = {"type": "desk_ended", "session": session, "message": message}
    if outcome is not None:
        msg["outcome"] = outcome
    return _with_ref(msg, ref)


def desk_state(
    *,
    desk: Mapping[str, Any],
    queue: Sequence[Mapping[str, Any]],
    agents: Sequence[Mapping[str, Any]],
    sessions: Sequence[Mapping[str, Any]],
    event: Mapping[str, Any] | None = None,
    you: Mapping[str, Any] | None = None,
    ref: str | None = None,
) -> Message:
    msg: Message = {
        "type": "desk_state",
        "desk": dict(desk),
        "queue": [dict(e) for e in queue],
        "agents": [dict(a) for a in agents],
        "sessions": [dict(s) for s in sessions],
    }
    if event is not None:
        msg["event"] = dict(event)
    if you is not None:
        msg["you"] = dict(you)
    return _with_ref(msg, ref)


def desk_event(desk: str, event: Mapping[str, Any]) -> Message:
    return {"type": "desk_event", "desk": desk, **event}
