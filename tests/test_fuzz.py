"""Property-based fuzzing of the hub's signalling edge against a real hub.

Hypothesis draws every client message type from signalling/schemas/client (refs inlined,
tests/fuzz_schemas.py) plus hostile mutations and raw WebSocket frames
(tests/fuzz_frames.py), sends them from a raw-socket client and checks, for every case:
no `internal_error`; every server message valid against its server schema and valid UTF-8;
the fuzzer closed only for a fair reason; the bystanders in the room still served. After
each run a newcomer joins (its `joined` carries the chat history, so nothing the hub
stored is unencodable), chats, and everyone receives it.

Runs are derandomized (the same cases every run) and find-all: the failure lists every
distinct fault with the shortest input that caused it. COMMHUB_FUZZ_SCALE=10 hunts longer.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import strategies as st

from tests.conftest import StartHub
from tests.fuzz_frames import frame_op, play
from tests.fuzz_harness import OPEN_LIMITS, Arena, hypothesis_run
from tests.fuzz_schemas import (
    CLIENT_TYPES,
    hostile_frame_text,
    mutated,
    to_json,
    valid_message,
)


@pytest.fixture
async def arena(start_hub: StartHub) -> Any:
    hub = await start_hub(**OPEN_LIMITS)
    a = Arena(hub)
    await a.add_watcher("watcher")
    await a.new_fuzzer()
    yield a
    await a.close()


@st.composite
def join_frame(draw: st.DrawFn) -> str:
    msg = draw(valid_message("join"))
    if draw(st.booleans()):
        msg = draw(mutated(msg))
    return to_json(msg, draw(st.booleans()))


# One example: sometimes a fresh connection (frames before its join, then a drawn join),
# then a batch of hostile text frames.
message_batches = st.tuples(
    st.one_of(
        st.none(),
        st.none(),
        st.none(),
        st.tuples(st.lists(hostile_frame_text(), max_size=2), join_frame()),
    ),
    st.lists(hostile_frame_text(), min_size=4, max_size=16),
)


async def test_fuzz_messages(arena: Arena) -> None:
    """Schema-drawn messages of every type, mutated ones and malformed JSON."""

    async def body(example: tuple[Any, list[str]]) -> int:
        fresh, frames = example
        sent = 0
        if fresh is not None:
            before, join = fresh
            await arena.new_fuzzer(join=join, before=before)
            sent += len(before) + 1
        for text in frames:
            f = await arena.ready()
            sent += await f.send_text(text)
        await arena.settle()
        return sent

    await hypothesis_run(message_batches, body, 900, arena.findings, arena.trouble)
    await arena.assert_room_usable()
    arena.verdict(minimum_cases=6000)


async def test_every_client_type_is_generated() -> None:
    """The generator reaches every message type the schemas define, valid as drawn."""
    from hypothesis import given, settings

    from commhub.protocol import schemas

    seen: set[str] = set()

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(st.sampled_from(CLIENT_TYPES).flatmap(valid_message))
    def check(msg: dict[str, Any]) -> None:
        assert schemas().parse_client(to_json(msg, False))["type"] == msg["type"]
        seen.add(msg["type"])

    check()
    assert seen == set(CLIENT_TYPES)


async def test_fuzz_frames(arena: Arena) -> None:
    """Raw WebSocket frames: binary, fragmented, unmasked, reserved, oversized..."""

    async def body(ops: list[Any]) -> int:
        f = await arena.ready()
        sent = await play(f, ops)
        await arena.settle()
        return sent

    await hypothesis_run(
        st.lists(frame_op(), min_size=1, max_size=6), body, 500, arena.findings, arena.trouble
    )
    await arena.assert_room_usable()
    arena.verdict(minimum_cases=1200)


async def test_fuzz_default_limits(start_hub: StartHub) -> None:
    """With the default limits the same storm ends in rate limiting and flooding closes,
    never in an internal error, and the bystander is unaffected."""
    hub = await start_hub(captions=False, max_connections_per_identity=1000, join_burst=10**4)
    arena = Arena(hub)
    await arena.add_watcher("watcher")
    await arena.new_fuzzer()

    async def body(ops: list[Any]) -> int:
        f = await arena.ready()
        sent = await play(f, ops)
        await arena.settle()
        return sent

    try:
        await hypothesis_run(
            st.lists(frame_op(), min_size=5, max_size=40), body, 60, arena.findings, arena.trouble
        )
        await arena.assert_room_usable()
        arena.verdict(minimum_cases=600)
    finally:
        await arena.close()
