"""One signalling socket's outbound side: each event is framed once, then written straight
to every recipient's transport.

Server-to-client WebSocket frames are unmasked, so the bytes of one event are the same for
every recipient: the bus serialises an event once, `frame()` turns that string into a frame
once (memoised on the string object), and a delivery is one `transport.write` with no task
hop. The transport's write buffer is the queue; a reader that lets it grow past the limit
is dropped instead of holding the room's memory.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from functools import lru_cache

from aiohttp import web

from commhub.protocol import CloseReason, Outgoing, bye

log = logging.getLogger("commhub.connection")

CLOSE_TIMEOUT = 3.0


@lru_cache(maxsize=256)
def frame(data: str) -> bytes:
    """An unmasked, final, uncompressed text frame (RFC 6455 5.2)."""
    payload = data.encode()
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x81, n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, n)
    else:
        header = struct.pack("!BBQ", 0x81, 127, n)
    return header + payload


class Connection:
    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        limit: int,
        outgoing: Outgoing,
    ) -> None:
        self.ws = ws
        self.outgoing = outgoing
        self.transport = transport
        self.limit = limit  # bytes waiting in the transport before the reader is dropped
        self.ended = asyncio.Event()
        self.closing = False

    def deliver(self, data: str) -> None:
        if self.closing or self.transport.is_closing():
            return
        if self.transport.get_write_buffer_size() > self.limit:
            # A close frame cannot reach a reader that stopped reading (writing it would
            # wait for that reader forever): drop the connection at once.
            log.warning("slow consumer: %d bytes unsent, closing", self.limit)
            self.closing = True
            self.transport.abort()
            self.ended.set()
            return
        self.transport.write(frame(data))

    async def end(self, reason: str, message: str, ref: str | None = None) -> None:
        """Say why (bye, when the reason has one) and close with the reason's code
        (`ref`: the id of the client's `leave` this answers)."""
        if self.closing:
            await self.ended.wait()
            return
        why = CloseReason(reason)
        if why.says_bye:
            self.deliver(self.outgoing.encode(bye(why, message, ref)))
        self.closing = True
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self.ws.close(code=why.code, message=message[:120].encode())
        except Exception:  # no answer in time (or the socket is already gone)
            self.transport.abort()
        self.ended.set()

    def stop(self) -> None:
        """The socket is gone: nothing more is written."""
        self.closing = True
        self.ended.set()
