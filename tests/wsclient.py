"""The tests' signalling client: the SDK's SignalChannel, every server message schema-checked."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from typing import Any

import aiohttp

from commhub.sdk.signal import SignalChannel


class SignalClient(SignalChannel):
    """The SDK's SignalChannel with schema checking on, plus what tests use: `join` and the
    participant id it got."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        ws: aiohttp.ClientWebSocketResponse,
        *,
        check: bool | None = True,
        **kw: Any,
    ) -> None:
        super().__init__(session, ws, check=check, **kw)
        self.joined: dict[str, Any] | None = None

    async def join(self, **fields: Any) -> dict[str, Any]:
        await self.send({"type": "join", **fields})
        self.joined = await self.expect("joined")
        return self.joined

    @property
    def pid(self) -> str:
        assert self.joined is not None
        return str(self.joined["participant"]["id"])


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
