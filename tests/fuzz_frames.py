"""WebSocket frame-level attacks as Hypothesis strategies, played by a RawClient.

An op is a plain tuple (readable in a failure report): ("binary", 5, 0x41) sends one
binary frame of five "A"s. Every op is something a hostile client can put on the wire:
binary, fragmented, orphan continuation, unmasked, reserved opcodes and RSV bits,
oversized and fragmented control frames, invalid UTF-8, bogus close codes, lengths past
every limit, frames dribbled byte by byte.
"""

from __future__ import annotations

import asyncio
import itertools
import struct
from typing import Any

from hypothesis import strategies as st

from tests.fuzz_schemas import hostile_frame_text
from tests.fuzz_wire import BINARY, CLOSE, CONT, PING, PONG, TEXT, RawClient, frame

Op = tuple[Any, ...]

# Invalid UTF-8: a lone continuation byte, an encoded surrogate (CESU-8), an overlong "/",
# a truncated sequence, a code point past U+10FFFF, and U+FFFF itself (valid UTF-8).
BAD_UTF8 = [b"\xff", b"\xed\xa0\x80", b"\xc0\xaf", b"\xe2\x82", b"\xf4\x90\x80\x80"]
ODD_UTF8 = [*BAD_UTF8, b"\xef\xbf\xbf", b"\x00"]
CLOSE_CODES = [0, 999, 1000, 1001, 1004, 1005, 1006, 1011, 1015, 2999, 3000, 4999, 5000, 65535]
RESERVED = [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]

json_text = hostile_frame_text()


@st.composite
def frame_op(draw: st.DrawFn) -> Op:
    kind = draw(
        st.sampled_from(
            [
                "text", "text", "bytes_text", "binary", "fragments", "orphan_cont",
                "interrupted", "unmasked", "opcode", "rsv", "ping", "pong", "frag_ping",
                "close", "too_long", "dribble", "oversize",
            ]
        )
    )  # fmt: skip
    if kind == "text":
        return ("text", draw(json_text))
    if kind == "bytes_text":
        body = draw(json_text).encode("utf-8", "surrogatepass")
        at = draw(st.integers(0, len(body)))
        return ("bytes_text", body[:at] + draw(st.sampled_from(ODD_UTF8)) + body[at:])
    if kind == "binary":
        size = draw(st.sampled_from([0, 1, 2, 125, 126, 65535, 65536, 70_000]))
        return ("binary", size, draw(st.integers(0, 255)))
    if kind == "fragments":
        text = draw(json_text)
        cuts = draw(st.lists(st.integers(0, len(_utf8(text))), max_size=5))
        return ("fragments", text, sorted(cuts), draw(st.booleans()))
    if kind == "orphan_cont":
        return ("orphan_cont", draw(json_text), draw(st.booleans()))
    if kind == "interrupted":  # a new data frame while a fragmented message is open
        return ("interrupted", draw(json_text), draw(st.sampled_from([TEXT, BINARY])))
    if kind == "unmasked":
        return ("unmasked", draw(json_text))
    if kind == "opcode":
        return ("opcode", draw(st.sampled_from(RESERVED)), draw(st.binary(max_size=20)))
    if kind == "rsv":
        return ("rsv", draw(st.integers(1, 7)), draw(json_text))
    if kind in ("ping", "pong"):
        return (kind, draw(st.binary(max_size=130)))
    if kind == "frag_ping":
        return ("frag_ping", draw(st.binary(max_size=10)))
    if kind == "close":
        reason = draw(st.one_of(st.binary(max_size=8), st.sampled_from(ODD_UTF8)))
        return ("close", draw(st.sampled_from([None, *CLOSE_CODES])), reason)
    if kind == "too_long":  # a header claiming more than any limit
        return ("too_long", draw(st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 1 << 40, 300_000])))
    if kind == "dribble":
        return ("dribble", draw(json_text))
    return ("oversize", draw(st.sampled_from([65_537, 100_000, 262_143, 262_145, 400_000])))


# Ops after which the hub is entitled to close the connection (nothing more is sent).
ENDING = {"close", "too_long", "opcode", "rsv", "frag_ping", "orphan_cont", "interrupted"}


async def play(c: RawClient, ops: list[Op]) -> int:
    """Send the ops; returns how many frames went out (stops once the socket is gone)."""
    sent = 0
    for op in ops:
        if c.gone:
            break
        for data in encode(op):
            if isinstance(data, float):
                await asyncio.sleep(data)
            elif await c.send_raw(data):
                sent += 1
        if op[0] == "too_long":
            break  # only a header went out: the hub must refuse it, nothing can follow
        if op[0] in ENDING:
            # The hub may close for this one: give its close a moment to arrive.
            await asyncio.sleep(0)
    return sent


def encode(op: Op) -> list[bytes | float]:
    kind = op[0]
    utf8 = _utf8
    if kind == "text":
        return [frame(TEXT, utf8(op[1]))]
    if kind == "bytes_text":
        return [frame(TEXT, op[1])]
    if kind == "binary":
        return [frame(BINARY, bytes([op[2]]) * op[1])]
    if kind == "fragments":
        body = utf8(op[1])
        bounds = [0, *op[2], len(body)]
        parts = [body[a:b] for a, b in itertools.pairwise(bounds)]
        out: list[bytes | float] = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            out.append(frame(TEXT if i == 0 else CONT, part, fin=last))
            if op[3] and not last:
                out.append(frame(PING, b"mid"))  # control frames may interleave (RFC 6455 5.4)
        return out
    if kind == "orphan_cont":
        return [frame(CONT, utf8(op[1]), fin=op[2])]
    if kind == "interrupted":
        return [frame(TEXT, utf8(op[1])[:3], fin=False), frame(op[2], b"{}")]
    if kind == "unmasked":
        return [frame(TEXT, utf8(op[1]), mask=False)]
    if kind == "opcode":
        return [frame(op[1], op[2])]
    if kind == "rsv":
        return [frame(TEXT, utf8(op[2]), rsv=op[1])]
    if kind == "ping":
        return [frame(PING, op[1])]
    if kind == "pong":
        return [frame(PONG, op[1])]
    if kind == "frag_ping":
        return [frame(PING, op[1], fin=False)]
    if kind == "close":
        payload = b"" if op[1] is None else struct.pack("!H", op[1]) + op[2]
        return [frame(CLOSE, payload)]
    if kind == "too_long":
        return [frame(TEXT, b"{}", length=op[1])[:-6]]  # the header only (and a mask)
    if kind == "dribble":
        data = frame(TEXT, utf8(op[1]))
        if len(data) > 64:  # byte by byte for the head, the rest in one go
            return [*(data[i : i + 1] for i in range(64)), data[64:]]
        return [data[i : i + 1] for i in range(len(data))]
    if kind == "oversize":
        pad = op[1] - len('{"type":"chat","text":""}')
        return [frame(TEXT, b'{"type":"chat","text":"' + b"x" * pad + b'"}')]
    raise ValueError(kind)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")
