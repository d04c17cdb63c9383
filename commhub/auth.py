"""Access tokens: HS256 JWTs with explicit grants (LiveKit-style), issued and verified here."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import jwt

from commhub.protocol import unsafe

GRANTS = ("publish", "subscribe", "chat", "moderate", "admin", "transcript")
DEFAULT_GRANTS = ("publish", "subscribe", "chat")
ROLES = ("guest", "customer", "resident", "business", "agent", "moderator", "admin", "bot")
ANY_ROOM = "*"  # admin tokens may name every room
MEDIA_MODES = (None, "sfu", "p2p", "auto")
_LANG = re.compile(r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
_ROOM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class AuthError(Exception):
    """A refused token; `code` is stable and machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Claims:
    identity: str
    room: str
    name: str
    role: str = "guest"
    grants: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_GRANTS))
    speak: str = "en"
    read: str = "en"
    expires: float = 0.0
    media_mode: str | None = None  # sfu | p2p | auto: the room's media mode, set on join
    record: bool | None = None  # the room's recording policy, set on join (None: unchanged)
    desk: DeskClaim | None = None  # a desk token (visitor or agent): see commhub/desks

    def can(self, grant: str) -> bool:
        return grant in self.grants or "admin" in self.grants

    def admits(self, room: str) -> bool:
        return self.room == room or (self.room == ANY_ROOM and "admin" in self.grants)


DESK_ROLES = ("visitor", "agent")
_DESK = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_TOPIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,39}$")
DESK_ROOM_PREFIX = "desk."  # a desk token's `room`: it names the desk, never a room to join


@dataclass(frozen=True)
class DeskClaim:
    """The `desk` claim: which desk, as whom, and the visitor's topic or the agent's
    languages."""

    name: str
    role: str  # visitor | agent
    topic: str | None = None
    languages: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "as": self.role}
        if self.role == "visitor":
            out["topic"] = self.topic
        else:
            out["languages"] = list(self.languages)
        return out


def valid_desk_name(name: str) -> bool:
    return bool(_DESK.match(name))


def valid_topic(topic: str) -> bool:
    return bool(_TOPIC.match(topic))


def desk_claim(value: Any) -> DeskClaim:
    """The `desk` claim checked; ValueError says what is wrong."""
    if not isinstance(value, dict) or set(value) - {"name", "as", "topic", "languages"}:
        raise ValueError("desk must be {name, as, topic?, languages?}")
    name, role = value.get("name"), value.get("as")
    if not isinstance(name, str) or not valid_desk_name(name):
        raise ValueError("desk.name must be 1..63 of a-z, 0-9, '-'")
    if role not in DESK_ROLES:
        raise ValueError("desk.as must be visitor or agent")
    topic = value.get("topic")
    if topic is not None and (not isinstance(topic, str) or not valid_topic(topic)):
        raise ValueError("desk.topic is invalid")
    langs = value.get("languages", [])
    if (
        not isinstance(langs, list)
        or len(langs) > 32
        or not all(isinstance(x, str) and valid_language(x) for x in langs)
    ):
        raise ValueError("desk.languages must be up to 32 language tags")
    return DeskClaim(name, role, topic if role == "visitor" else None, tuple(langs))


def _text(value: Any, longest: int) -> bool:
    """A string the hub can store and send on: 1..longest characters, no lone surrogate."""
    return isinstance(value, str) and 0 < len(value) <= longest and unsafe(value, 1) is None


def valid_room_name(room: str) -> bool:
    return bool(_ROOM.match(room))


def valid_language(lang: str) -> bool:
    return bool(_LANG.match(lang))


def issue(
    secret: str,
    *,
    room: str,
    identity: str,
    name: str | None = None,
    role: str = "guest",
    grants: tuple[str, ...] | list[str] | frozenset[str] = DEFAULT_GRANTS,
    speak: str = "en",
    read: str | None = None,
    ttl: float = 6 * 3600,
    issuer: str = "commhub",
    not_before: float | None = None,
    media_mode: str | None = None,
    record: bool | None = None,
    desk: DeskClaim | None = None,
) -> str:
    """Mint a signed token; raises ValueError for values the hub would refuse anyway."""
    if room != ANY_ROOM and not valid_room_name(room):
        raise ValueError(f"invalid room name {room!r}: letters, digits, '.', '_', '-'")
    if not _text(identity, 128):
        raise ValueError("identity must be 1..128 characters of valid Unicode")
    if name is not None and not _text(name, 80):
        raise ValueError("name must be 1..80 characters of valid Unicode")
    unknown = set(grants) - set(GRANTS)
    if unknown:
        raise ValueError(f"unknown grant(s) {sorted(unknown)}; known: {', '.join(GRANTS)}")
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    for lang in (speak, read or speak):
        if not valid_language(lang):
            raise ValueError(f"invalid language tag {lang!r}")
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if media_mode not in MEDIA_MODES:
        raise ValueError(f"media_mode must be one of sfu, p2p, auto, not {media_mode!r}")
    now = time.time()
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": identity,
        "iat": int(now),
        "nbf": int(now if not_before is None else not_before),
        "exp": int(now + ttl),
        "name": name or identity,
        "room": room,
        "role": role,
        "grants": sorted(set(grants)),
        "lang": {"speak": speak, "read": read or speak},
    }
    if media_mode is not None:
        payload["media"] = media_mode
    if record is not None:
        if not isinstance(record, bool):
            raise ValueError("record must be true or false")
        payload["record"] = record
    if desk is not None:
        desk_claim(desk.payload())  # the same check verify() makes
        payload["desk"] = desk.payload()
    return jwt.encode(payload, secret, algorithm="HS256")


def verify(
    secret: str, token: str | None, *, issuer: str = "commhub", leeway: float = 10.0
) -> Claims:
    """Check signature, time window and shape; raise AuthError with a precise code."""
    if not token:
        raise AuthError(
            "token_missing", "no access token: pass ?access_token=... or a Bearer header"
        )
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            issuer=issuer,
            leeway=leeway,
            options={"require": ["exp", "nbf", "iat", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token_expired", "the access token has expired") from None
    except jwt.ImmatureSignatureError:
        raise AuthError("token_not_yet_valid", "the access token is not valid yet (nbf)") from None
    except jwt.InvalidSignatureError:
        raise AuthError(
            "token_bad_signature", "the access token's signature does not match"
        ) from None
    except jwt.InvalidIssuerError:
        raise AuthError(
            "token_bad_issuer", f"the access token was not issued by {issuer!r}"
        ) from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError("token_malformed", f"the access token lacks claim {exc.claim!r}") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError("token_malformed", "the access token must be signed with HS256") from None
    except jwt.InvalidTokenError as exc:
        raise AuthError("token_malformed", f"the access token is malformed: {exc}") from None
    return _claims(payload)


def _claims(payload: dict[str, Any]) -> Claims:
    def bad(what: str) -> AuthError:
        return AuthError("token_malformed", f"the access token's {what} is invalid")

    room, grants, lang = payload.get("room"), payload.get("grants", []), payload.get("lang", {})
    if not isinstance(room, str) or not (room == ANY_ROOM or valid_room_name(room)):
        raise bad("room")
    if not isinstance(grants, list) or not set(grants) <= set(GRANTS):
        raise bad("grants")
    if not isinstance(lang, dict):
        raise bad("lang")
    speak, read = lang.get("speak", "en"), lang.get("read", lang.get("speak", "en"))
    if not (isinstance(speak, str) and valid_language(speak)):
        raise bad("lang.speak")
    if not (isinstance(read, str) and valid_language(read)):
        raise bad("lang.read")
    role = payload.get("role", "guest")
    if role not in ROLES:
        raise bad("role")
    media_mode = payload.get("media")
    if media_mode not in MEDIA_MODES:
        raise bad("media mode")
    record = payload.get("record")
    if record is not None and not isinstance(record, bool):
        raise bad("record")
    desk = None
    if payload.get("desk") is not None:
        try:
            desk = desk_claim(payload["desk"])
        except ValueError:
            raise bad("desk") from None
    identity, name = payload["sub"], payload.get("name") or payload["sub"]
    if not _text(identity, 128):
        raise bad("sub")
    if not _text(name, 80):
        raise bad("name")
    return Claims(
        identity=identity,
        room=room,
        name=name,
        role=role,
        grants=frozenset(grants),
        speak=speak,
        read=read,
        expires=float(payload["exp"]),
        media_mode=media_mode,
        record=record,
        desk=desk,
    )
