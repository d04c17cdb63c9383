"""The tokens of the desks: a visitor's (the public link mints it), an agent's (the CLI and
the admin API), and the two of a session's room."""

from __future__ import annotations

import secrets
import time
from typing import Any

from commhub import auth

AGENT_TOKEN_TTL = 12 * 3600.0  # a working day and then some
SESSION_GRANTS = ("publish", "subscribe", "chat")


def issue_visitor(
    secret: str,
    *,
    desk: str,
    name: str,
    speak: str,
    read: str,
    topic: str | None,
    ttl: float,
    issuer: str,
) -> tuple[str, str, float]:
    """(token, identity, expires_at) for a new visitor: no grants, the queue only."""
    identity = "visitor-" + secrets.token_urlsafe(12)
    token = auth.issue(
        secret,
        room=auth.DESK_ROOM_PREFIX + desk,
        identity=identity,
        name=name,
        role="guest",
        grants=(),  # the desk connection needs none; the session's room token has them
        speak=speak,
        read=read,
        ttl=ttl,
        issuer=issuer,
        desk=auth.DeskClaim(desk, "visitor", topic),
    )
    return token, identity, time.time() + ttl


def issue_session(
    secret: str,
    *,
    room: str,
    identity: str,
    name: str,
    role: str,
    speak: str,
    read: str,
    ttl: float,
    issuer: str,
) -> str:
    """One side's token for a session's room: that room only."""
    return auth.issue(
        secret, room=room, identity=identity, name=name, role=role, grants=SESSION_GRANTS,
        speak=speak, read=read, ttl=ttl, issuer=issuer,
    )  # fmt: skip


def issue_agent(
    secret: str,
    *,
    desk: str,
    identity: Any,
    name: Any = None,
    speak: Any = "en",
    read: Any = None,
    languages: Any = None,
    ttl: float = AGENT_TOKEN_TTL,
    issuer: str = "commhub",
) -> str:
    """An agent token for a desk (the CLI's `token --desk D --agent` too); ValueError for
    bad values."""
    if not isinstance(identity, str):
        raise ValueError("identity (string) is required")
    if isinstance(languages, str):
        languages = [x.strip() for x in languages.split(",") if x.strip()]
    if languages is not None and not isinstance(languages, list):
        raise ValueError("languages must be a list of language tags")
    for value, what in ((name, "name"), (speak, "speak"), (read, "read")):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{what} must be a string")
    claim = auth.desk_claim(
        {"name": desk, "as": "agent", "languages": languages or [speak, *([read] if read else [])]}
    )
    return auth.issue(
        secret,
        room=auth.DESK_ROOM_PREFIX + desk,
        identity=identity,
        name=name,
        role="agent",
        grants=(),
        speak=speak,
        read=read,
        ttl=ttl,
        issuer=issuer,
        desk=auth.DeskClaim(claim.name, "agent", None, tuple(dict.fromkeys(claim.languages))),
    )
