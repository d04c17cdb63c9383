"""The desks: visitors' queues, agents' consoles and the sessions between them.

Every desk connection (a signalling socket whose token carries a `desk` claim) comes here
with its `desk_*` messages. Every state change is published on the bus: `desk_event` on
`desk:<name>:events`, `desk_state` to the desk's agents on `desk:<name>:agents`, and each
visitor's own `desk_waiting` on `desk:<name>:visitors`. Replies (with `ref`) go straight to
the sender's socket, like the hub's other replies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from commhub import auth, protocol
from commhub.auth import DESK_ROOM_PREFIX, Claims
from commhub.desks import tokens, view
from commhub.desks import transcript as transcripts
from commhub.desks.db import DeskStore
from commhub.desks.metrics import DeskMetrics
from commhub.desks.model import DeskDef, DeskError
from commhub.desks.state import (
    Agent,
    DeskSession,
    DeskState,
    Link,
    Visitor,
    new_session_id,
)
from commhub.desks.support import LanguageSupport
from commhub.hub import Hub
from commhub.protocol import CloseReason, ErrorCode, Message, ProtocolError
from commhub.store.writer import describe

log = logging.getLogger("commhub.desks")

DEF_CACHE = 2.0  # seconds a definition read from the database is trusted (the CLI may change it)
INTERPRETER_LINK_TTL = 3600.0

NOTICES = {
    "regained": "You are back in your place in the queue.",
    "agent_disconnected": "Your agent was disconnected; you are first in the queue again.",
    "transferred": "You are being transferred; you are first in the queue.",
}


def channel(desk: str, part: str) -> str:
    """A bus channel of a desk (':' is never in a room name, so no room shares it)."""
    return f"desk:{desk}:{part}"


def _links(state: DeskState) -> list[Link]:
    """Every connection of a desk: waiting visitors, visitors in a call, agents."""
    links = [v.link for v in state.queue if v.link]
    links += [v.link for s in state.sessions.values() if (v := s.visitor).link]
    return links + [a.link for a in state.agents.values() if a.link]


def _stop_timers(state: DeskState) -> None:
    """The grace timers of dropped visitors and agents."""
    timers = [v.timer for v in state.queue] + [a.timer for a in state.agents.values()]
    for timer in timers:
        if timer:
            timer.cancel()


class Desks:
    def __init__(self, hub: Hub, store: DeskStore, invites: Any = None) -> None:
        self.hub = hub
        self.store = store
        self.invites = invites  # commhub.server.invites.InviteStore: interpreter links
        self.settings = hub.settings
        self.metrics = DeskMetrics(hub.registry)
        self.support = LanguageSupport(hub)
        self.states: dict[str, DeskState] = {}
        self._defs: dict[str, tuple[float, DeskDef]] = {}
        self.visitors: dict[str, tuple[DeskState, Visitor]] = {}  # identity -> where it is
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pending: list[tuple[str, Message, str]] = []  # assignments to publish
        # rooms of ended sessions -> when: their tokens still run, the rooms stay shut
        self._ended: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self.store.open()
        except Exception as exc:  # the hub runs on; the desks' calls fail until it works
            log.error("the desks' database is unusable: %s", describe(exc))
        await self.support.refresh()
        if self.hub.cluster is not None:  # a desk in use runs on one node, like a room
            self.hub.cluster.held.append(self._in_use)
            self.hub.desk_mover = self.move

    def _in_use(self) -> list[str]:
        return [
            DESK_ROOM_PREFIX + name
            for name, st in self.states.items()
            if st.queue or st.agents or st.sessions
        ]

    async def move(self, desk: str, url: str, reason: str) -> None:
        """The desk runs on another node now (drain, lost lease): its agents and visitors
        are sent there; places in its queue do not move (README, "Several nodes")."""
        state = self.states.pop(desk, None)
        if state is None:
            return
        _stop_timers(state)
        self.visitors = {k: w for k, w in self.visitors.items() if w[0] is not state}
        if url:
            await self._send_off(_links(state), protocol.redirect(url, reason),
                                 CloseReason.REDIRECT, f"the desk moved ({reason})")  # fmt: skip
        else:
            await self._send_off(_links(state), protocol.server_shutdown(1),
                                 CloseReason.SHUTDOWN, f"the desk moved ({reason})")  # fmt: skip

    async def close(self) -> None:
        for state in self.states.values():
            _stop_timers(state)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.store.close()

    async def shutdown(self) -> None:
        """The hub is stopping: every desk connection is told and closed (no grace timers)."""
        links = [link for st in self.states.values() for link in _links(st)]
        await self._send_off(links, protocol.server_shutdown(5), CloseReason.SHUTDOWN,
                             "server shutting down")  # fmt: skip

    async def _send_off(
        self, links: list[Link], notice: Message, why: CloseReason, message: str
    ) -> None:
        for link in links:
            link.gone = True
            self.hub.send(link.conn, notice)
        await asyncio.gather(
            *(link.conn.end(why, message) for link in links), return_exceptions=True
        )

    def ended(self, room: str) -> bool:
        """Whether `room` was a desk session that has ended (its tokens may still be valid)."""
        at = self._ended.get(room)
        return at is not None and time.monotonic() - at < self.settings.desk_session_ttl

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- definitions -------------------------------------------------------------------------

    async def definition(self, name: str) -> DeskDef | None:
        if not auth.valid_desk_name(name):
            return None
        cached = self._defs.get(name)
        now = time.monotonic()
        if cached is not None and cached[0] >= now:
            return cached[1]
        found = await self.store.get(name)
        if found is None:
            self._defs.pop(name, None)  # misses are not kept: anyone may ask for any name
        else:
            self._defs[name] = (now + DEF_CACHE, found)
        return found

    async def state(self, name: str) -> DeskState | None:
        """The live state of a desk that exists (made on first use); a desk deleted meanwhile
        (by the command line) is wound up here."""
        defn = await self.definition(name)
        state = self.states.get(name)
        if defn is None:
            if state is not None:
                await self.wind_up(state)
            return None
        if state is None:
            state = self.states[name] = DeskState(defn)
        state.defn = defn
        return state

    def forget(self, name: str) -> None:
        """A definition changed here: read it again next time."""
        self._defs.pop(name, None)

    async def create(self, d: DeskDef) -> DeskDef:
        made = await self.store.create(d)
        self.forget(d.name)
        return made

    async def save(self, d: DeskDef) -> None:
        await self.store.save(d)
        self.forget(d.name)
        state = await self.state(d.name)
        if state is not None:
            await self._changed(state, [self._event("desk_updated")])

    async def delete(self, name: str) -> bool:
        found = await self.store.delete(name)
        self.forget(name)
        state = self.states.get(name)
        if state is not None:
            await self.wind_up(state)
        return found

    async def wind_up(self, state: DeskState) -> None:
        """A deleted desk: waiting visitors are told, sessions end, agents are signed out."""
        self.states.pop(state.name, None)
        for session in list(state.sessions.values()):
            await self._event_out(state, await self._end(state, session, "desk_deleted", None))
        for v in list(state.queue):
            state.queue.remove(v)
            gone = protocol.desk_unavailable(
                state.defn.ref(), "deleted", "This desk no longer exists."
            )
            await self._to_visitor(state, v, gone)
            self._drop_visitor(state, v)
        for agent in list(state.agents.values()):
            if agent.timer:
                agent.timer.cancel()
            if agent.link is not None:
                agent.link.gone = True
                self._spawn(agent.link.conn.end(CloseReason.ROOM_CLOSED, "the desk was deleted"))
        await self._event_out(state, self._event("desk_deleted"))
        self.metrics.forget(state.name)

    # -- public link -------------------------------------------------------------------------

    def public(self, state: DeskState) -> dict[str, Any]:
        d, now = state.defn, time.time()
        is_open = d.is_open(now)
        full = len(state.queue) >= d.max_queue
        return {
            "name": d.name,
            "title": d.title,
            "languages": list(d.languages),
            "topics": list(d.topics),
            "open": is_open,
            "opens_at": d.opens_at(now),
            "message": None if is_open else d.closed_message,
            "queue_full": full,
            "estimated_wait": self._round(
                state.estimate(len(state.queue) + 1, self.settings.desk_default_handle_time)
            ),
        }

    def refusal(self, state: DeskState) -> DeskError | None:
        """Why a newcomer cannot queue now (closed, full), or None."""
        d = state.defn
        if not d.is_open():
            return DeskError(409, "desk_closed", d.closed_message)
        if len(state.queue) >= d.max_queue:
            return DeskError(409, "desk_full", self._full_message(state))
        return None

    def _full_message(self, state: DeskState) -> str:
        return (
            f"The desk is full ({state.defn.max_queue} people are waiting). Please try again later."
        )

    def visitor_token(
        self, state: DeskState, name: str, speak: str, read: str, topic: str | None
    ) -> tuple[str, str, float]:
        return tokens.issue_visitor(
            self.hub.secret, desk=state.name, name=name, speak=speak, read=read, topic=topic,
            ttl=self.settings.desk_visitor_ttl, issuer=self.settings.issuer,
        )  # fmt: skip

    # -- signalling --------------------------------------------------------------------------

    @staticmethod
    def link(conn: Any, claims: Claims) -> Link:
        assert claims.desk is not None
        d = claims.desk
        return Link(
            conn=conn,
            identity=claims.identity,
            name=claims.name,
            role=d.role,
            desk=d.name,
            speak=claims.speak,
            read=claims.read,
            topic=d.topic,
            languages=d.languages or tuple(dict.fromkeys((claims.speak, claims.read))),
        )

    async def handle(self, link: Link, msg: Message) -> None:
        kind, ref = msg["type"], msg.get("id")
        if kind == "desk_join":
            if link.joined:
                raise ProtocolError(ErrorCode.ALREADY_JOINED, "already joined the desk", ref)
            if link.role == "visitor":
                if "status" in msg:
                    raise ProtocolError(ErrorCode.FORBIDDEN, "status is for agents", ref)
                await self._visitor_join(link, ref)
            else:
                await self._agent_join(link, msg.get("status", "available"), ref)
            return
        if not link.joined:
            raise ProtocolError(ErrorCode.NOT_JOINED, f"send desk_join before {kind}", ref)
        if kind == "desk_leave":
            await (self._visitor_leave if link.role == "visitor" else self._agent_leave)(link)
            link.gone = True
            await link.conn.end(CloseReason.LEFT, "left the desk", ref)
            return
        if link.role != "agent":
            raise ProtocolError(ErrorCode.FORBIDDEN, f"{kind} is for agents", ref)
        state, agent = await self._agent_of(link, ref)
        if kind == "desk_status":
            agent.status = msg["status"]
            if agent.status == "available" and not agent.sessions:
                agent.idle_since = min(agent.idle_since, time.monotonic())
            await self._changed(
                state, [self._event("agent_status", agent=agent.identity)], reply=(link, ref)
            )
        elif kind == "desk_take":
            await self._take(state, agent, msg.get("ticket"), ref)
        elif kind == "desk_end":
            session = self._session_of(state, agent, msg["session"], ref)
            event = await self._end(state, session, msg["outcome"], msg.get("note"), ref=ref)
            await self._changed(state, [event])
        elif kind == "desk_transfer":
            session = self._session_of(state, agent, msg["session"], ref)
            await self._transfer(state, session, msg, ref)
        elif kind == "desk_add":
            session = self._session_of(state, agent, msg["session"], ref)
            await self._add(state, session, msg.get("agent"), ref)
        else:
            raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown desk message {kind!r}", ref)

    async def disconnected(self, link: Link) -> None:
        """The socket of a desk connection closed (any way but desk_leave)."""
        if not link.joined or link.gone:
            self._detach(link)
            return
        link.gone = True
        self._detach(link)
        loop = asyncio.get_running_loop()
        if link.role == "visitor":
            found = self.visitors.get(link.identity)
            if found is None or found[1].link is not link:
                return
            state, v = found
            v.link = None
            if v.session is not None:
                return  # the session goes on; the agent ends it
            v.timer = loop.call_later(
                self.settings.desk_grace, lambda: self._spawn(self._abandon(v))
            )
            await self._changed(state, [self._event("dropped", ticket=v.ticket)])
        else:
            state_ = self.states.get(link.desk)
            agent = state_.agents.get(link.identity) if state_ else None
            if state_ is None or agent is None or agent.link is not link:
                return
            agent.link = None
            agent.timer = loop.call_later(
                self.settings.desk_agent_grace,
                lambda: self._spawn(self._agent_lost(state_, agent)),
            )
            await self._changed(state_, [self._event("agent_dropped", agent=agent.identity)])

    # -- visitors ----------------------------------------------------------------------------

    async def _visitor_join(self, link: Link, ref: str | None) -> None:
        found = self.visitors.get(link.identity)
        if found is not None:  # a reconnect (or a second socket): its place, its session
            state, v = found
            old = v.link
            if old is not None and old is not link:
                old.gone = True
                self._detach(old)
                self._spawn(old.conn.end(CloseReason.REPLACED, "the same visitor joined again"))
            if v.timer:
                v.timer.cancel()
                v.timer = None
            self._attach(state, link)
            v.link = link
            if v.session is not None:
                session = state.sessions[v.session]
                link.joined = True
                self._reply(link, self._assigned_visitor(state, session, ref))
                return
            v.notice = {"code": "regained", "message": NOTICES["regained"]}
            v.sent = None
            await self._changed(
                state, [self._event("regained", ticket=v.ticket)], visitor_ref=(v, ref)
            )
            return
        here = await self.state(link.desk)
        if here is None:
            ref_ = {"name": link.desk, "title": link.desk}
            self._reply(
                link,
                protocol.desk_unavailable(ref_, "deleted", "This desk does not exist.", ref=ref),
            )
            return
        d, now = here.defn, time.time()
        if not d.is_open(now):
            self._reply(
                link,
                protocol.desk_unavailable(
                    d.ref(), "closed", d.closed_message, opens_at=d.opens_at(now), ref=ref
                ),
            )
            return
        if len(here.queue) >= d.max_queue:
            estimate = here.estimate(len(here.queue) + 1, self.settings.desk_default_handle_time)
            self._reply(
                link,
                protocol.desk_unavailable(
                    d.ref(), "full", self._full_message(here), estimated_wait=estimate, ref=ref
                ),
            )
            return
        v = Visitor(link.identity, link.name, link.speak, link.read, link.topic, link)
        here.enqueue(v)
        self.visitors[v.identity] = (here, v)
        self._attach(here, link)
        await self._changed(here, [self._event("queued", ticket=v.ticket)], visitor_ref=(v, ref))

    async def _visitor_leave(self, link: Link) -> None:
        found = self.visitors.get(link.identity)
        if found is None or found[1].link is not link:
            return
        state, v = found
        self._detach(link)
        v.link = None
        if v.session is not None:
            session = state.sessions[v.session]
            await self._changed(state, [await self._end(state, session, "visitor_left", None)])
            return
        state.queue.remove(v)
        self._drop_visitor(state, v)
        await self._changed(state, [self._event("left", ticket=v.ticket)])

    async def _abandon(self, v: Visitor) -> None:
        """The grace period of a dropped visitor ran out: its place is lost."""
        found = self.visitors.get(v.identity)
        if found is None or found[1] is not v or v.link is not None or v.session is not None:
            return
        state = found[0]
        if v in state.queue:
            state.queue.remove(v)
        self._drop_visitor(state, v)
        await self._changed(state, [self._event("abandoned", ticket=v.ticket)])

    def _drop_visitor(self, state: DeskState, v: Visitor) -> None:
        if v.timer:
            v.timer.cancel()
            v.timer = None
        if v.link is not None:
            self._detach(v.link)
            v.link.joined = False  # the socket may desk_join again (a new visit)
        if self.visitors.get(v.identity, (None, None))[1] is v:
            del self.visitors[v.identity]

    # -- agents ------------------------------------------------------------------------------

    async def _agent_join(self, link: Link, status: str, ref: str | None) -> None:
        state = await self.state(link.desk)
        if state is None:
            raise ProtocolError(ErrorCode.UNKNOWN_DESK, f"no desk {link.desk!r}", ref)
        agent = state.agents.get(link.identity)
        if agent is None:
            agent = Agent(
                identity=link.identity,
                name=link.name,
                languages=link.languages,
                speak=link.speak,
                read=link.read,
                status=status,
                link=link,
            )
            state.agents[agent.identity] = agent
        else:  # back within the grace period, or a second console
            old = agent.link
            if old is not None and old is not link:
                old.gone = True
                self._detach(old)
                self._spawn(old.conn.end(CloseReason.REPLACED, "the same agent joined again"))
            if agent.timer:
                agent.timer.cancel()
                agent.timer = None
            agent.link, agent.status = link, status
        link.joined = True
        self._attach(state, link)
        for sid in sorted(agent.sessions):  # a reconnect: its running sessions again
            self._reply(link, self._assigned_agent(state, state.sessions[sid], None))
        await self._changed(
            state, [self._event("agent_joined", agent=agent.identity)], reply=(link, ref)
        )

    async def _agent_of(self, link: Link, ref: str | None) -> tuple[DeskState, Agent]:
        state = self.states.get(link.desk)
        agent = state.agents.get(link.identity) if state else None
        if state is None or agent is None or agent.link is not link:
            raise ProtocolError(ErrorCode.WRONG_STATE, "signed out of the desk", ref)
        return state, agent

    async def _agent_leave(self, link: Link) -> None:
        state = self.states.get(link.desk)
        agent = state.agents.get(link.identity) if state else None
        self._detach(link)
        if state is None or agent is None or agent.link is not link:
            return
        agent.link = None
        await self._agent_lost(state, agent, "agent_left")

    async def _agent_lost(self, state: DeskState, agent: Agent, kind: str = "agent_lost") -> None:
        """Signed out or lost (grace over): its visitors go back to the front of the queue."""
        if agent.link is not None or state.agents.get(agent.identity) is not agent:
            return
        if agent.timer:
            agent.timer.cancel()
            agent.timer = None
        del state.agents[agent.identity]
        events = [self._event(kind, agent=agent.identity)]
        for sid in sorted(agent.sessions, key=lambda s: state.sessions[s].began):
            session = state.sessions[sid]
            transcript = await transcripts.transcript(self.hub, session.room)
            events.append(await self._end(state, session, "agent_lost", None))
            v = session.visitor
            v.transcript, v.transferred = transcript, None
            self._requeue(state, state, v, "agent_disconnected")
            events.append(self._event("requeued", ticket=v.ticket))
        await self._changed(state, events)

    def _session_of(self, state: DeskState, agent: Agent, sid: str, ref: str | None) -> DeskSession:
        session = state.sessions.get(sid)
        if session is None or session.agent is not agent:
            raise ProtocolError(ErrorCode.UNKNOWN_SESSION, "no session of yours with that id", ref)
        return session

    async def _take(
        self, state: DeskState, agent: Agent, ticket: str | None, ref: str | None
    ) -> None:
        if state.defn.assign == "auto":
            raise ProtocolError(ErrorCode.WRONG_STATE, "this desk assigns visitors itself", ref)
        if agent.sessions:
            raise ProtocolError(ErrorCode.WRONG_STATE, "end your session first", ref)
        if ticket is None:
            v = state.next_for(agent)
            if v is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TICKET, "nobody is waiting", ref)
        else:
            found = state.find(ticket)
            if found is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TICKET, "that visitor is not waiting", ref)
            if found.for_agent not in (None, agent.identity):
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, "that visitor was transferred to another agent", ref
                )
            if found.link is None:
                raise ProtocolError(
                    ErrorCode.WRONG_STATE, "that visitor is disconnected (its place is kept)", ref
                )
            v = found
        event = self._assign(state, v, agent, ref)
        await self._changed(state, [event])

    # -- sessions ----------------------------------------------------------------------------

    def _assign(
        self, state: DeskState, v: Visitor, agent: Agent, ref: str | None = None
    ) -> dict[str, Any]:
        state.queue.remove(v)
        room = f"desk-{state.name}-{secrets.token_urlsafe(16)}"  # 128 random bits
        self.hub.reserve(room)  # the call runs where its desk runs
        session = DeskSession(new_session_id(), room, agent, v)
        state.sessions[session.id] = session
        agent.sessions.add(session.id)
        v.session = session.id
        self.metrics.wait.labels(state.name).observe(time.monotonic() - v.queued)
        if v.link is not None:
            self._publish_soon(
                channel(state.name, "visitors"),
                self._assigned_visitor(state, session, None),
                v.link.key,
            )
        msg = self._assigned_agent(state, session, ref)
        if ref is not None and agent.link is not None:
            self._reply(agent.link, msg)
        elif agent.link is not None:
            self._publish_soon(channel(state.name, "agents"), msg, agent.link.key)
        v.transcript, v.front, v.for_agent = None, False, None
        return self._event("assigned", ticket=v.ticket, agent=agent.identity, session=session.id)

    def _room_token(
        self, room: str, identity: str, name: str, role: str, speak: str, read: str
    ) -> str:
        return tokens.issue_session(
            self.hub.secret, room=room, identity=identity, name=name, role=role, speak=speak,
            read=read, ttl=self.settings.desk_session_ttl, issuer=self.settings.issuer,
        )  # fmt: skip

    def _assigned_visitor(self, state: DeskState, s: DeskSession, ref: str | None) -> Message:
        v = s.visitor
        return protocol.desk_assigned(
            session=s.id,
            desk=state.defn.ref(),
            room=s.room,
            token=self._room_token(s.room, v.identity, v.name, "guest", v.speak, v.read),
            agent_name=s.agent.name,
            ref=ref,
        )

    def _assigned_agent(self, state: DeskState, s: DeskSession, ref: str | None) -> Message:
        a, v = s.agent, s.visitor
        return protocol.desk_assigned(
            session=s.id,
            desk=state.defn.ref(),
            room=s.room,
            token=self._room_token(s.room, a.identity, a.name, "agent", a.speak, a.read),
            visitor=v.public(),
            transcript=v.transcript,
            transferred=v.transferred,
            ref=ref,
        )

    async def _end(
        self,
        state: DeskState,
        session: DeskSession,
        outcome: str,
        note: str | None,
        *,
        ref: str | None = None,
    ) -> dict[str, Any]:
        """End a session: counted, the visitor told (unless it is re-queued), the room
        closed. Returns the event for the caller's _changed."""
        state.sessions.pop(session.id, None)
        agent, v = session.agent, session.visitor
        agent.sessions.discard(session.id)
        agent.idle_since = time.monotonic()
        v.session = None
        if outcome not in ("agent_lost", "desk_deleted", "transferred"):
            state.handle_times.append(time.monotonic() - session.began)
        self.metrics.sessions.labels(state.name, outcome).inc()
        if outcome in ("transferred", "agent_lost"):
            pass  # the visitor stays: re-queued by the caller
        else:
            if v.link is not None:
                await self._to_visitor(
                    state, v, protocol.desk_ended(session.id, "The session has ended.")
                )
            self._drop_visitor(state, v)
        ended = protocol.desk_ended(session.id, "The session has ended.", outcome, ref)
        if ref is not None and agent.link is not None:
            self._reply(agent.link, ended)
        elif agent.link is not None and outcome != "agent_lost":
            await self.hub.publish(channel(state.name, "agents"), ended, to=agent.link.key)
        now = time.monotonic()
        self._ended = {
            r: t for r, t in self._ended.items() if now - t < self.settings.desk_session_ttl
        }
        self._ended[session.room] = now
        await self.hub.close_room(session.room)
        event = self._event("ended", session=session.id, agent=agent.identity, outcome=outcome)
        if note:
            event["note"] = note
        return event

    async def _transfer(
        self, state: DeskState, session: DeskSession, msg: Message, ref: str | None
    ) -> None:
        target_name = msg.get("desk", state.name)
        target = state if target_name == state.name else await self.state(target_name)
        if target is None:
            raise ProtocolError(ErrorCode.UNKNOWN_DESK, f"no desk {target_name!r}", ref)
        wanted = msg.get("agent")
        if wanted is not None and wanted not in target.agents:
            raise ProtocolError(
                ErrorCode.UNKNOWN_AGENT, f"{wanted!r} is not signed in to desk {target.name!r}", ref
            )
        if wanted == session.agent.identity and target is state:
            raise ProtocolError(ErrorCode.WRONG_STATE, "that is you", ref)
        transcript = await transcripts.transcript(self.hub, session.room)
        v = session.visitor
        ended = await self._end(state, session, "transferred", msg.get("note"), ref=ref)
        v.transcript = transcript
        v.transferred = {
            "from_desk": state.name,
            "from_agent": session.agent.name,
            "note": msg.get("note"),
        }
        self._requeue(state, target, v, "transferred", for_agent=wanted)
        event = self._event("transferred", ticket=v.ticket, agent=session.agent.identity)
        if target is state:
            await self._changed(state, [ended, event, self._event("requeued", ticket=v.ticket)])
        else:
            await self._changed(state, [ended, event])
            await self._changed(target, [self._event("requeued", ticket=v.ticket)])

    def _requeue(
        self,
        source: DeskState,
        target: DeskState,
        v: Visitor,
        code: str,
        for_agent: str | None = None,
    ) -> None:
        if v.link is not None and target is not source:
            self.hub.bus.detach(channel(source.name, "visitors"), v.link.key)
            self._attach(target, v.link)
        v.queued, v.for_agent = time.monotonic(), for_agent
        v.notice, v.sent = {"code": code, "message": NOTICES[code]}, None
        target.enqueue(v, front=True)
        self.visitors[v.identity] = (target, v)
        if v.link is None:  # dropped meanwhile: the usual grace from now
            v.timer = asyncio.get_running_loop().call_later(
                self.settings.desk_grace, lambda: self._spawn(self._abandon(v))
            )

    async def _add(
        self, state: DeskState, session: DeskSession, who: str | None, ref: str | None
    ) -> None:
        by = session.agent
        if who is None:
            if self.invites is None:
                raise ProtocolError(ErrorCode.NOT_SUPPORTED, "this hub has no join links", ref)
            from commhub.server import invites  # the server imports the desks, not back

            spec = invites.validate(
                {"room": session.room, "ttl": INTERPRETER_LINK_TTL, "uses": 1},
                self.settings.admin_token_max_ttl,
            )
            made = await self.invites.create(spec)
            session.colleagues.append("(link)")
            self._reply(
                by.link,
                protocol.desk_added(session.id, link=made.url, expires_at=made.expires_at, ref=ref),
            )
        else:
            found = next(
                (
                    (st, a)
                    for st in self.states.values()
                    for a in st.agents.values()
                    if a.identity == who and a.link is not None
                ),
                None,
            )
            if found is None or who == by.identity:
                raise ProtocolError(
                    ErrorCode.UNKNOWN_AGENT, f"{who!r} is not a signed-in agent", ref
                )
            where, colleague = found
            assert colleague.link is not None
            token = self._room_token(
                session.room, colleague.identity, colleague.name, "agent",
                colleague.speak, colleague.read,
            )  # fmt: skip
            invited = protocol.desk_invited(
                session=session.id,
                desk=state.defn.ref(),
                room=session.room,
                token=token,
                visitor=session.visitor.public(),
                by={"identity": by.identity, "name": by.name},
            )
            await self.hub.publish(channel(where.name, "agents"), invited, to=colleague.link.key)
            session.colleagues.append(who)
            self._reply(by.link, protocol.desk_added(session.id, agent=who, ref=ref))
        await self._event_out(state, self._event("added", session=session.id, agent=by.identity))

    # -- after every change ------------------------------------------------------------------

    async def _changed(
        self,
        state: DeskState,
        events: list[dict[str, Any]],
        *,
        reply: tuple[Link, str | None] | None = None,
        visitor_ref: tuple[Visitor, str | None] | None = None,
    ) -> None:
        """Route (auto desks), then tell: events on the bus, visitors whose place or estimate
        changed, every agent the new state (the sender's copy first, with `ref`)."""
        default = self.settings.desk_default_handle_time
        if visitor_ref is not None and visitor_ref[0] in state.queue:
            v, ref = visitor_ref  # the reply to its desk_join: its place before routing
            self._waiting(state, v, state.position(v), default, ref)
        if visitor_ref is not None and visitor_ref[0].link is not None:
            visitor_ref[0].link.joined = True
        for position, v in enumerate(state.queue, 1):  # notices before any assignment
            if v.notice is not None and (msg := self._waiting(state, v, position, default, None)):
                await self._to_visitor(state, v, msg)
        if state.defn.assign == "auto":
            while (pair := state.route()) is not None:
                events.append(self._assign(state, *pair))
        await self._flush()
        for event in events:
            await self._event_out(state, event)
        self.support.stale()
        for position, v in enumerate(state.queue, 1):
            msg = self._waiting(state, v, position, default, None)
            if msg is not None and v.link is not None:
                await self.hub.publish(channel(state.name, "visitors"), msg, to=v.link.key)
        snapshot = view.snapshot(state, self.support, events[-1] if events else None)
        exclude = None
        if reply is not None:
            link, ref = reply
            agent = state.agents.get(link.identity)
            you = {"identity": link.identity, "status": agent.status if agent else "away"}
            self._reply(link, {**snapshot, "you": you, **({"ref": ref} if ref else {})})
            exclude = link.key
        await self.hub.publish(channel(state.name, "agents"), snapshot, exclude=exclude)
        self._gauges(state)

    def _waiting(
        self, state: DeskState, v: Visitor, position: int, default: float, ref: str | None
    ) -> Message | None:
        """v's desk_waiting when its figures changed (or it has a notice, or this is a
        reply: then sent here), else None."""
        if v.link is None:
            return None
        online = state.online()
        estimate = self._round(state.estimate(position, default))
        figures = (state.name, position, estimate, online)
        if figures == v.sent and v.notice is None and ref is None:
            return None
        v.sent = figures
        msg = protocol.desk_waiting(state.defn.ref(), position, estimate, online, v.notice, ref)
        v.notice = None
        if ref is None:
            return msg
        self._reply(v.link, msg)
        return None

    def admin_view(self, state: DeskState) -> dict[str, Any]:
        snap = view.snapshot(state, self.support, None)
        return {"queue": snap["queue"], "agents": snap["agents"], "sessions": snap["sessions"]}

    def summary(self, d: DeskDef) -> dict[str, Any]:
        state = self.states.get(d.name)
        return {
            **d.wire(),
            "queue_length": len(state.queue) if state else 0,
            "agents_online": state.online() if state else 0,
            "sessions": len(state.sessions) if state else 0,
        }

    def _gauges(self, state: DeskState) -> None:
        m, name = self.metrics, state.name
        m.queue_length.labels(name).set(len(state.queue))
        for status in ("available", "busy", "away"):
            m.agents.labels(name, status).set(
                sum(1 for a in state.agents.values() if a.status == status)
            )
        online = [a for a in state.agents.values() if a.status != "away"]
        busy = sum(1 for a in online if a.sessions)
        m.occupancy.labels(name).set(busy / len(online) if online else 0.0)

    # -- delivery ----------------------------------------------------------------------------

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "at": round(time.time(), 3), **fields}

    async def _event_out(self, state: DeskState, event: dict[str, Any]) -> None:
        msg = protocol.desk_event(state.name, event)
        await self.hub.publish(channel(state.name, "events"), msg)
        store = getattr(self.hub, "store", None)
        if store is not None and hasattr(store, "add_event"):
            with contextlib.suppress(Exception):  # a full write queue must not stop a desk
                store.add_event(DESK_ROOM_PREFIX + state.name, "desk_" + event["kind"], event)

    def _attach(self, state: DeskState, link: Link) -> None:
        part = "visitors" if link.role == "visitor" else "agents"
        self.hub.bus.attach(channel(state.name, part), link.key, link.conn)

    def _detach(self, link: Link) -> None:
        part = "visitors" if link.role == "visitor" else "agents"
        found = self.visitors.get(link.identity) if link.role == "visitor" else None
        desk = found[0].name if found else link.desk
        self.hub.bus.detach(channel(desk, part), link.key)

    def _reply(self, link: Link | None, msg: Message) -> None:
        if link is not None:
            self.hub.send(link.conn, msg)

    async def _to_visitor(self, state: DeskState, v: Visitor, msg: Message) -> None:
        if v.link is not None:
            await self.hub.publish(channel(state.name, "visitors"), msg, to=v.link.key)

    def _publish_soon(self, where: str, msg: Message, key: str) -> None:
        """From synchronous bookkeeping (an assignment): published before the next state."""
        self._pending.append((where, msg, key))

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        for where, msg, key in pending:
            await self.hub.publish(where, msg, to=key)

    @staticmethod
    def _round(value: float | None) -> float | None:
        return None if value is None else round(value, 1)
