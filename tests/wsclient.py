"""A real WebSocket signalling client for tests: every server message is schema-checked."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import aiohttp

from commhub.protocol import schemas


class SignalClient:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []  # everything received, in order
        self._pending: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())
        self.joined: dict[str, Any] | None = None

    @classmethod
    async def connect(cls, url: str, token: str, **kw: Any) -> SignalClient:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(f"{url}/v1/signal?access_token={token}", **kw)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            schemas().check_server(data)  # the server speaks exactly what signalling/ defines
            self.inbox.append(data)
            await self._pending.put(data)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.ws.send_str(json.dumps(msg))

    async def expect(self, kind: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for the next message of `kind` (others are skipped but kept in inbox)."""
        async with asyncio.timeout(timeout):
            while True:
                msg = await self._pending.get()
                if msg["type"] == kind and all(msg.get(k) == v for k, v in match.items()):
                    return msg

    async def join(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", **fields})
        self.joined = await self.expect("joined")
        return self.joined

    @property
    def pid(self) -> str:
        assert self.joined is not None
        return str(self.joined["participant"]["id"])

    async def closed(self, timeout: float = 5.0) -> int | None:
        async with asyncio.timeout(timeout):
            await self._reader
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        await self.session.close()

    def received(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.inbox if m["type"] == kind]


async def raw_join(
    port: int, token: str, rcvbuf: int | None = None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client that upgrades and joins, then does nothing at all: no
    pongs, no reads, no close frame, as when a peer's network drops."""
    sock = socket.socket()
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        f"GET /v1/signal?access_token={token} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert b" 101 " in head, head
    payload, mask = b'{"type":"join"}', os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    writer.write(bytes([0x81, 0x80 | len(payload)]) + mask + masked)
    await writer.drain()
    return reader, writer
