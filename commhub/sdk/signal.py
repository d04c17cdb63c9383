"""SignalChannel: one signalling WebSocket to a hub, as the SDK and the test suite use it.

It opens `/v1/signal` (a refused upgrade is read again over plain HTTP, where the hub says
why), sends client messages, and reads every server message in one task: each one lands in
`inbox`, goes to the owner's handler if there is one, and waits in a backlog for `expect`.
Replies are matched by `ref` (the hub echoes a client message's `id` in every reply to it),
so `request` gets its own reply even when events arrive in between.

With `check` on, every received message is validated against signalling/schemas/server. A
message that breaks its schema is not delivered: it is recorded in `violations`, logged, and
raised from the next `send`, `expect` or `close`, so whoever is waiting learns of it at once
instead of timing out. Tests turn checking on for every channel (`CHECK_DEFAULT`).

A hub of several nodes may answer `redirect {url, reason}` and close (4010): the channel
keeps it in `redirect`; following it (a new channel to that node, same query) is the
owner's job (RoomClient does it).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Self
from urllib.parse import urlsplit

import aiohttp
from jsonschema import ValidationError

from commhub.protocol import schemas

log = logging.getLogger("commhub.sdk.signal")

Message = dict[str, Any]
Handler = Callable[[Message], Awaitable[None]]

CHECK_DEFAULT = False  # schema checking for channels that do not say; the test suite sets True
# In-band fatal errors that a new connection would meet again.
FINAL_ERRORS = {"room_full", "flooding"}
# Refusals that say "later" (a node stopping, the cluster's Redis out of reach): back off, retry.
RETRY_LATER = {"shutting_down", "cluster_unavailable"}
REDIRECT_CLOSE = 4010  # the close after `redirect` (PROTOCOL.md, "Several nodes")
MAX_REDIRECTS = 3  # redirects followed in a row before a client backs off like after a drop
_ids = itertools.count(1)


class SignalError(Exception):
    """An `error` message from the hub."""

    def __init__(self, msg: Message) -> None:
        super().__init__(f"{msg['code']}: {msg['message']}")
        self.code: str = msg["code"]
        self.ref: str | None = msg.get("ref")
        self.msg = msg


class Refused(Exception):
    """The hub would not let this client in: `code` is the hub's reason (token_expired,
    token_bad_signature, token_wrong_room, room_full, shutting_down...)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status

    @property
    def retryable(self) -> bool:
        # a hub that is stopping or overloaded will take us later; a bad token never will
        if self.code in FINAL_ERRORS:
            return False
        if self.code in RETRY_LATER:
            return True
        return self.status is None or self.status >= 500 or self.status in (426, 429)


class SchemaViolation(Exception):
    """The hub sent something that is not a valid server message."""

    def __init__(self, problem: str, raw: Any) -> None:
        super().__init__(f"the hub sent a message that breaks its schema: {problem}")
        self.problem = problem
        self.raw = raw  # the decoded message (or the text, when it was not JSON)


class ChannelClosed(ConnectionError):
    """The socket closed before the awaited message came."""


class Redirected(ConnectionError):
    """The hub sent `redirect`: the room runs on the node at `url` (a base URL)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"redirected to {url} ({reason})")
        self.url = url
        self.reason = reason


def redirect_target(msg: Message) -> str | None:
    """The base URL a `redirect` names, or None when it is not one a client may follow (a
    hub whose messages are not schema-checked could send anything)."""
    url = msg.get("url")
    if not isinstance(url, str) or len(url) > 256:
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    if any(c.isspace() for c in url):
        return None
    return url.rstrip("/")


def signal_query(token: str, room: str | None) -> dict[str, str]:
    """The query of `/v1/signal`: the same on every node a client is sent to."""
    return {"access_token": token, **({"room": room} if room else {})}


def check_server_message(msg: Any) -> str | None:
    """Why `msg` is not a valid server message, or None."""
    if not isinstance(msg, dict):
        return "a message must be a JSON object"
    validator = schemas().server.get(str(msg.get("type")))
    if validator is None:
        return f"no server message type {msg.get('type')!r}"
    try:
        validator.validate(msg)
    except ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(message)"
        return f"{msg['type']}: {where}: {exc.message[:300]}"
    return None


async def read_refusal(
    session: aiohttp.ClientSession, url: str, token: str, status: int, room: str | None = None
) -> Refused:
    """Why an upgrade was refused: the same request without upgrading says it (401, 426...).
    `url` is the node the upgrade went to: another node could answer otherwise."""
    try:
        async with session.get(f"{url}/v1/signal", params=signal_query(token, room)) as resp:
            body = await resp.json(content_type=None)
        return Refused(str(body["error"]), str(body.get("message", "")), resp.status)
    except Exception:
        return Refused(f"http_{status}", f"the upgrade was refused with HTTP {status}", status)


class SignalChannel:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        check: bool | None = None,
        owns_session: bool = True,
        on_message: Handler | None = None,
        on_violation: Callable[[SchemaViolation], None] | None = None,
        inbox: list[Message] | None = None,
        backlog: int | None = None,
    ) -> None:
        self.session = session
        self.ws = ws
        self.check = CHECK_DEFAULT if check is None else check
        self._owns_session = owns_session
        self.on_message = on_message
        self.on_violation = on_violation
        self.inbox: list[Message] = inbox if inbox is not None else []  # all, in order
        self.violations: list[SchemaViolation] = []
        # the `redirect` this socket got (the hub closes it right after; PROTOCOL.md,
        # "Several nodes"): whoever sees the socket end follows it
        self.redirect: Message | None = None
        self._raised = 0  # violations already raised to a caller
        # received and not yet taken by expect; bounded for a long-lived SDK socket
        self._pending: deque[Message] = deque(maxlen=backlog)
        self._wakers: list[asyncio.Future[None]] = []
        self.reader = asyncio.create_task(self._read(), name="commhub-signal-reader")

    @classmethod
    async def connect(
        cls,
        url: str,
        token: str,
        *,
        session: aiohttp.ClientSession | None = None,
        heartbeat: float | None = None,
        room: str | None = None,
        **kw: Any,
    ) -> Self:
        """Open the socket; raises Refused with the hub's reason when the upgrade is refused.
        `session`: a session of the caller's (kept open by close); else one of our own.
        `room`: the room of an any-room token (`?room=`)."""
        url = url.rstrip("/")
        own = session is None
        http = session if session is not None else aiohttp.ClientSession()
        try:
            try:
                ws = await http.ws_connect(
                    f"{url}/v1/signal", params=signal_query(token, room), heartbeat=heartbeat
                )
            except aiohttp.WSServerHandshakeError as exc:
                raise await read_refusal(http, url, token, exc.status, room) from None
        except BaseException:
            if own:
                await http.close()
            raise
        return cls(http, ws, owns_session=own, **kw)

    # -- reading ------------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                if raw.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    msg = json.loads(raw.data)
                except ValueError as exc:
                    self._violate(SchemaViolation(f"not JSON: {exc}", raw.data))
                    continue
                problem = check_server_message(msg) if self.check else None
                if problem is not None:
                    self._violate(SchemaViolation(problem, msg))
                    continue
                if msg.get("type") == "redirect":
                    self.redirect = msg
                self.inbox.append(msg)
                if self.on_message is not None:
                    try:
                        await self.on_message(msg)
                    except Exception:  # the owner's bug must not stop the reading
                        if not self.ws.closed:
                            log.exception("handling %s failed", msg.get("type"))
                self._pending.append(msg)
                self._wake()
        finally:
            self._wake()

    def _violate(self, violation: SchemaViolation) -> None:
        log.error("%s", violation, extra={"schema_violation": True})
        self.violations.append(violation)
        if self.on_violation is not None:
            self.on_violation(violation)
        self._wake()

    def _wake(self) -> None:
        for fut in self._wakers:
            if not fut.done():
                fut.set_result(None)
        self._wakers.clear()

    def _raise_violation(self) -> None:
        if self._raised < len(self.violations):
            self._raised = len(self.violations)
            raise self.violations[self._raised - 1]

    def _take(self, kind: str | None, match: dict[str, Any], by_ref: bool) -> Message | None:
        def fits(msg: Message) -> bool:
            return (kind is None or msg["type"] == kind) and all(
                msg.get(k) == v for k, v in match.items()
            )

        if by_ref:  # a reply: take only it, events before it stay for their own expect
            for msg in self._pending:
                if fits(msg):
                    self._pending.remove(msg)
                    return msg
            return None
        while self._pending:  # the next one of its kind: what comes before it is skipped
            msg = self._pending.popleft()
            if fits(msg):
                return msg
        return None

    async def expect(
        self, kind: str | None, *, ref: str | None = None, timeout: float = 5.0, **match: Any
    ) -> Message:
        """The next received message of `kind` (None: any) whose fields equal `match`.

        Without `ref`, messages before it are skipped (they stay in `inbox`). With `ref`, the
        reply to that client message is taken wherever it is and the rest stay waiting.
        Raises SchemaViolation as soon as the hub sent an invalid message, ChannelClosed
        when the socket ended without it, TimeoutError after `timeout` seconds."""
        if ref is not None:
            match["ref"] = ref
        async with asyncio.timeout(timeout):
            while True:
                self._raise_violation()
                found = self._take(kind, match, by_ref=ref is not None)
                if found is not None:
                    return found
                if self.reader.done():
                    raise ChannelClosed(
                        f"the socket closed (code {self.ws.close_code}) before {kind or 'a'}"
                        f" message matching {match}"
                    )
                waker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._wakers.append(waker)
                await waker

    # -- writing ------------------------------------------------------------------------------

    async def send(self, msg: Message) -> None:
        self._raise_violation()
        if self.ws.closed:
            raise ChannelClosed(f"the socket is closed: {msg.get('type')} not sent")
        await self.ws.send_str(json.dumps(msg))

    async def request(self, msg: Message, timeout: float = 5.0) -> Message:
        """Send `msg` (given an `id` if it has none) and return the hub's reply to it, whatever
        its type; an `error` reply raises SignalError."""
        if "id" not in msg:
            msg = {**msg, "id": f"req-{next(_ids)}"}
        await self.send(msg)
        reply = await self.expect(None, ref=str(msg["id"]), timeout=timeout)
        if reply["type"] == "error":
            raise SignalError(reply)
        return reply

    # -- the end ------------------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    async def closed(self, timeout: float = 5.0) -> int | None:
        """Wait until the hub closes the socket; its close code."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self.reader)
        return self.ws.close_code

    async def close(self, *, quiet: bool = False) -> None:
        """Close the socket (and our session); then raise a violation not raised yet, unless
        `quiet`."""
        with contextlib.suppress(Exception):
            await self.ws.close()
        if not self.reader.done():
            self.reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader
        if self._owns_session:
            await self.session.close()
        if not quiet:
            self._raise_violation()

    def received(self, kind: str) -> list[Message]:
        return [m for m in self.inbox if m["type"] == kind]
