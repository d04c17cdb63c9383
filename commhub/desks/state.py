"""One desk's live state: its queue, its agents and their sessions, and the routing rule.

Pure bookkeeping (no I/O): commhub.desks.service does the talking."""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from commhub.desks.model import DeskDef
from commhub.rooms import base_language

HANDLE_SAMPLES = 20  # handling times the estimate averages


def new_ticket() -> str:
    return "VT_" + secrets.token_urlsafe(12)


def new_session_id() -> str:
    return "DS_" + secrets.token_urlsafe(12)


@dataclass(eq=False)
class Link:
    """One desk connection (a socket that sent desk_join), as the desks see it."""

    conn: Any  # commhub.server.connection.Connection: deliver() and end()
    identity: str
    name: str
    role: str  # visitor | agent
    desk: str  # the desk its token names
    speak: str
    read: str
    topic: str | None = None
    languages: tuple[str, ...] = ()
    key: str = field(default_factory=lambda: "DL_" + secrets.token_urlsafe(9))  # bus id
    joined: bool = False
    tried: bool = False  # sent desk_join (answered, perhaps with desk_unavailable)
    gone: bool = False  # left, replaced or ended by the hub: its close means nothing more


@dataclass(eq=False)
class Visitor:
    identity: str
    name: str
    speak: str
    read: str
    topic: str | None
    link: Link | None
    ticket: str = field(default_factory=new_ticket)
    since: float = field(default_factory=time.time)  # joined this queue (wall clock)
    queued: float = field(default_factory=time.monotonic)
    front: bool = False
    for_agent: str | None = None
    transferred: dict[str, Any] | None = None
    transcript: list[dict[str, Any]] | None = None
    session: str | None = None
    timer: asyncio.TimerHandle | None = None
    sent: tuple[Any, ...] | None = None  # the last desk_waiting figures it was sent
    notice: dict[str, str] | None = None  # to go with its next desk_waiting

    def public(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "name": self.name,
            "speak": self.speak,
            "read": self.read,
            "topic": self.topic,
        }


@dataclass(eq=False)
class Agent:
    identity: str
    name: str
    languages: tuple[str, ...]
    speak: str
    read: str
    status: str
    link: Link | None
    idle_since: float = field(default_factory=time.monotonic)
    sessions: set[str] = field(default_factory=set)
    timer: asyncio.TimerHandle | None = None

    @property
    def free(self) -> bool:
        return self.status == "available" and self.link is not None and not self.sessions

    def speaks(self, v: Visitor) -> bool:
        mine = {base_language(x) for x in self.languages}
        return base_language(v.speak) in mine or base_language(v.read) in mine

    def wire(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "name": self.name,
            "languages": list(self.languages),
            "status": self.status,
            "sessions": len(self.sessions),
            "connected": self.link is not None,
        }


@dataclass(eq=False)
class DeskSession:
    id: str
    room: str
    agent: Agent
    visitor: Visitor
    started: float = field(default_factory=time.time)
    began: float = field(default_factory=time.monotonic)
    colleagues: list[str] = field(default_factory=list)

    def wire(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "agent": {"identity": self.agent.identity, "name": self.agent.name},
            "visitor": self.visitor.public(),
            "started": round(self.started, 3),
        }


class DeskState:
    def __init__(self, defn: DeskDef) -> None:
        self.defn = defn
        self.queue: list[Visitor] = []
        self.agents: dict[str, Agent] = {}
        self.sessions: dict[str, DeskSession] = {}
        self.handle_times: deque[float] = deque(maxlen=HANDLE_SAMPLES)

    @property
    def name(self) -> str:
        return self.defn.name

    def enqueue(self, v: Visitor, *, front: bool = False) -> None:
        """Re-queued visitors (front) go before everyone else, in the order they came back."""
        v.front = front
        if front:
            at = next((i for i, w in enumerate(self.queue) if not w.front), len(self.queue))
            self.queue.insert(at, v)
        else:
            self.queue.append(v)

    def position(self, v: Visitor) -> int:
        return self.queue.index(v) + 1

    def find(self, ticket: str) -> Visitor | None:
        return next((v for v in self.queue if v.ticket == ticket), None)

    def online(self) -> int:
        """Agents who take visitors sooner or later: signed in and not away."""
        return sum(1 for a in self.agents.values() if a.status != "away")

    def mean_handle(self, default: float) -> float:
        return sum(self.handle_times) / len(self.handle_times) if self.handle_times else default

    def estimate(self, position: int, default: float) -> float | None:
        online = self.online()
        if not online:
            return None
        return math.ceil(position / online) * self.mean_handle(default)

    def route(self) -> tuple[Visitor, Agent] | None:
        """The next (visitor, agent) pair of an automatic desk, or None: the first visitor
        still connected goes to a free agent who speaks its language, else to any free agent
        (the one idle longest); a visitor transferred to one agent waits for that one."""
        free = [a for a in self.agents.values() if a.free]
        if not free:
            return None
        for v in self.queue:
            if v.link is None:
                continue  # dropped: its place is kept, it is not assigned meanwhile
            if v.for_agent is not None:
                wanted = self.agents.get(v.for_agent)
                if wanted is not None and wanted.free:
                    return v, wanted
                continue
            pool = [a for a in free if a.speaks(v)] or free
            return v, min(pool, key=lambda a: a.idle_since)
        return None

    def next_for(self, agent: Agent) -> Visitor | None:
        """What `desk_take` without a ticket takes: the first connected visitor this agent
        may have."""
        return next(
            (v for v in self.queue if v.link is not None and v.for_agent in (None, agent.identity)),
            None,
        )
