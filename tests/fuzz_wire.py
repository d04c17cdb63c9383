"""A raw-socket WebSocket client for fuzzing: it sends any frame an attacker can (binary,
fragmented, unmasked, reserved opcodes, bad UTF-8, lying lengths) and records, instead of
raising, whatever the hub does wrong: a server message that breaks its schema, an
`internal_error`, a frame that is not valid UTF-8, a masked server frame.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import itertools
import json
import logging
import os
import struct
import traceback
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from commhub.protocol import schemas

TEXT, BINARY, CLOSE, PING, PONG, CONT = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    mask: bool = True,
    rsv: int = 0,
    length: int | None = None,
) -> bytes:
    """One client frame (RFC 6455 5.2); `length` lies about the payload size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | (rsv & 7) << 4 | opcode & 0xF])
    m = 0x80 if mask else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + struct.pack("!H", n)
    else:
        head += bytes([m | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + _mask(payload, key)


def _mask(payload: bytes, key: bytes) -> bytes:
    whole = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(whole, "big")).to_bytes(
        len(payload), "big"
    )


@dataclass
class Trouble:
    """What a fuzz run found wrong; empty when the hub behaved."""

    items: list[str] = field(default_factory=list)

    def add(self, what: str) -> None:
        if len(self.items) < 50:
            self.items.append(what[:600])


class HubFailures(logging.Handler):
    """The hub's logged exceptions (it logs one before it answers internal_error): names an
    internal_error by where it was raised, so different bugs count as different faults."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.logged: collections.deque[str] = collections.deque(maxlen=100)  # oldest first

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            tb = traceback.extract_tb(exc.__traceback__)
            where = next(
                (f for f in reversed(tb) if "/commhub/" in f.filename), tb[-1] if tb else None
            )
            at = f"{where.filename.rsplit('/', 2)[-1]}:{where.lineno}" if where else "?"
            self.logged.append(f"{type(exc).__name__} at {at}: ({str(exc)[:100]})")

    def next(self) -> str:
        """The oldest logged failure not yet matched to an internal_error."""
        return self.logged.popleft() if self.logged else "no traceback logged"

    def __enter__(self) -> HubFailures:
        self.logged.clear()
        logging.getLogger("commhub").addHandler(self)
        return self

    def __exit__(self, *_: object) -> None:
        logging.getLogger("commhub").removeHandler(self)


FAILURES = HubFailures()


class RawClient:
    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        trouble: Trouble,
        label: str,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.trouble = trouble
        self.label = label
        self.identity = label  # who the token names, and where (set by whoever connects it)
        self.room = ""
        self.inbox: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = b""
        self.eof = asyncio.Event()
        self._new = asyncio.Event()
        self._ids = itertools.count()
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, port: int, token: str, trouble: Trouble, label: str = "client", query: str = ""
    ) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            f"GET /v1/signal?access_token={token}{query} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            writer.close()
            raise ConnectionError(head.decode(errors="replace"))
        return cls(reader, writer, trouble, label)

    # -- reading -------------------------------------------------------------------------

    async def _read(self) -> None:
        try:
            while True:
                b0, b1 = await self.reader.readexactly(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await self.reader.readexactly(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
                if b1 & 0x80:
                    self.trouble.add(f"{self.label}: masked server frame: {b0:#x}")
                    await self.reader.readexactly(4)
                payload = await self.reader.readexactly(n)
                opcode = b0 & 0xF
                if not b0 & 0x80 or opcode not in (TEXT, BINARY, CLOSE, PING, PONG):
                    self.trouble.add(f"{self.label}: unexpected server frame: {b0:#x}")
                if opcode == TEXT:
                    self._on_text(payload)
                elif opcode == PING:
                    self.send_nowait(frame(PONG, payload))
                elif opcode == CLOSE:
                    self.close_code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                    self.close_reason = payload[2:]
                    with contextlib.suppress(Exception):
                        self.send_nowait(frame(CLOSE, payload[:2]))
                    break
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        finally:
            self.eof.set()
            self._new.set()
            self.writer.close()

    def _on_text(self, payload: bytes) -> None:
        try:
            msg = json.loads(payload.decode("utf-8"))  # strict: a lone surrogate fails here
        except (UnicodeDecodeError, ValueError) as exc:
            self.trouble.add(f"{self.label}: server frame not UTF-8 JSON: {exc}: {payload[:200]!r}")
            return
        try:
            schemas().check_server(msg)
        except (jsonschema.ValidationError, KeyError) as exc:
            kind = msg.get("type") if isinstance(msg, dict) else type(msg).__name__
            self.trouble.add(
                f"{self.label}: {kind} breaks its schema: {str(exc).splitlines()[0]}: "
                f"{payload[:300]!r}"
            )
        if isinstance(msg, dict):
            if msg.get("type") == "error" and msg.get("code") == "internal_error":
                why = FAILURES.next()
                self.trouble.add(f"{self.label}: internal_error {why}: {payload[:200]!r}")
            self.inbox.append(msg)
            self._new.set()

    # -- writing -------------------------------------------------------------------------

    @property
    def gone(self) -> bool:
        return self.eof.is_set()

    def send_nowait(self, data: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(data)

    async def send_raw(self, data: bytes) -> bool:
        """Write bytes as they are; False when the connection is already gone."""
        if self.writer.is_closing() or self.gone:
            return False
        self.writer.write(data)
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.drain()
        return True

    async def send_text(self, text: str | bytes) -> bool:
        data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        return await self.send_raw(frame(TEXT, data))

    async def send(self, msg: dict[str, Any]) -> bool:
        return await self.send_text(json.dumps(msg))

    # -- waiting -------------------------------------------------------------------------

    async def expect(
        self, kind: str, timeout: float = 10.0, start: int = 0, **match: Any
    ) -> dict[str, Any]:
        """The first message of `kind` (matching `match`) at index >= start."""
        async with asyncio.timeout(timeout):
            while True:
                for msg in self.inbox[start:]:
                    if msg.get("type") == kind and all(msg.get(k) == v for k, v in match.items()):
                        return msg
                if self.gone:
                    raise ConnectionError(
                        f"{self.label} closed ({self.close_code}) before {kind} {match}; "
                        f"last: {self.inbox[-3:]}"
                    )
                self._new.clear()
                await self._new.wait()

    async def sync(self, timeout: float = 30.0) -> bool:
        """Ping and wait for its pong: every earlier message has been handled. False when
        the hub closed the connection instead."""
        async with asyncio.timeout(timeout):
            while True:
                ref = f"sync-{next(self._ids)}"
                start = len(self.inbox)
                await self.send({"type": "ping", "id": ref})
                while True:
                    for msg in self.inbox[start:]:
                        if msg.get("type") == "pong" and msg.get("ref") == ref:
                            return True
                    limited = any(
                        m.get("type") == "error" and m.get("code") == "rate_limited"
                        for m in self.inbox[start:]
                    )
                    if self.gone or limited:
                        break
                    self._new.clear()
                    await self._new.wait()
                if self.gone:
                    return False
                await asyncio.sleep(0.25)  # the ping may have been the one dropped: again

    async def join(self, **fields: Any) -> dict[str, Any]:
        start = len(self.inbox)
        await self.send({"type": "join", **fields})
        return await self.expect("joined", start=start)

    async def closed(self, timeout: float = 10.0) -> int | None:
        async with asyncio.timeout(timeout):
            await self.eof.wait()
        return self.close_code

    async def close(self) -> None:
        if not self.gone:
            with contextlib.suppress(Exception):
                await self.send_raw(frame(CLOSE, struct.pack("!H", 1000)))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self.eof.wait()
        self.writer.close()
        self._task.cancel()
        with contextlib.suppress(BaseException):
            await self._task
