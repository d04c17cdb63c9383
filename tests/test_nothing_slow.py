"""Nothing waits for a translation: a chat sender's next message and a speaker's next
caption go on while the engine is stopped (a real Apertium pipeline, SIGSTOP), and every
reader still gets one source's messages in order. No clock is read: the proofs are orders
of arrival and ping round trips (a barrier through each connection concerned)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from aiortc.contrib.media import MediaPlayer

from commhub.lanes import Job, Lanes
from commhub.sdk import RoomClient
from commhub.translate import ApertiumTranslator, TranslationService
from tests.conftest import Running, StartHub
from tests.helpers.audio import POCKETSPHINX_DATA, silence, write_wav
from tests.helpers.media import LOOPBACK
from tests.helpers.wait import barrier, wait_for

pytestmark = pytest.mark.e2e


@contextmanager
def engine_stopped(hub: Running, source: str, target: str) -> Iterator[None]:
    """The pair's Apertium pipeline frozen (its first stage stopped) until the block ends."""
    service = hub.hub.translator
    assert isinstance(service, TranslationService)
    engine = service.engines["apertium"]
    assert isinstance(engine, ApertiumTranslator)
    first_stage = engine.pipe(source, target).stage_pids()[0][1]
    os.kill(first_stage, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(first_stage, signal.SIGCONT)


async def test_chat_sender_goes_on_while_its_translation_waits(start_hub: StartHub) -> None:
    hub = await start_hub(translate_timeout=300.0)  # a stuck engine does not time out here
    a = await hub.joined(identity="a", speak="en", read="en")
    c = await hub.joined(identity="c", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    await a.send({"type": "chat", "id": "warm", "text": "Good morning."})
    assert (await b.expect("chat"))["translation"]["status"] == "ok"
    with engine_stopped(hub, "en", "es"):
        await a.send({"type": "chat", "id": "c1", "text": "The office opens at nine."})
        echo = await a.expect("chat", ref="c1")  # acknowledged while the engine is stopped
        assert echo["text"] == "The office opens at nine." and "translation" not in echo
        await a.send({"type": "ping", "id": "p1"})
        await a.expect("pong", ref="p1")  # the sender's next message was handled
        await a.send({"type": "chat", "id": "c2", "text": "Thank you very much."})
        await a.expect("chat", ref="c2")
        english = [(await c.expect("chat"))["text"] for _ in range(3)]
        assert english == ["Good morning.", "The office opens at nine.", "Thank you very much."]
        assert all("ref" not in m for m in c.received("chat"))  # only the sender's copy
        await barrier(b)
        assert len(b.received("chat")) == 1  # the warm-up only: its translations wait
    first, second = await b.expect("chat", timeout=30), await b.expect("chat", timeout=30)
    assert [first["text"], second["text"]] == ["The office opens at nine.", "Thank you very much."]
    assert "nueve" in first["translation"]["text"]
    assert second["translation"]["text"] == "Muchas gracias."


@pytest.fixture(scope="module")
def two_utterances(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'go forward ten meters', twice with a pause: two finals from one stream."""
    raw = (POCKETSPHINX_DATA / "goforward.raw").read_bytes()
    path = tmp_path_factory.mktemp("slow") / "twice.wav"
    return write_wav(path, silence(0.5) + raw + silence(1.5) + raw + silence(1.5))


async def test_next_caption_does_not_wait_for_the_last_ones_translation(
    start_hub: StartHub, two_utterances: Path, room_clients: list[RoomClient]
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), translate_timeout=300.0)

    async def join(identity: str, speak: str) -> RoomClient:
        c = RoomClient(hub.url, hub.token("desk", identity, speak=speak, read=speak),
                       ice_hosts=LOOPBACK)  # fmt: skip
        room_clients.append(c)
        await c.connect()
        return c

    speaker = await join("resident", "en")
    english = await join("agent-en", "en")
    spanish = await join("agent-es", "es")
    warm = await hub.joined("desk", identity="warm", speak="en", read="en")
    warmed = spanish.expect("chat", timeout=30)
    await warm.send({"type": "chat", "text": "Good morning."})  # starts the en-es pipeline
    await warmed
    player = MediaPlayer(str(two_utterances))
    assert player.audio is not None

    def finals(c: RoomClient) -> list[dict[str, Any]]:
        return [m for m in c.received("caption") if m["final"]]

    with engine_stopped(hub, "en", "es"):
        await speaker.publish(player.audio)
        # the recognizer was not held by the first final's translation: the next final of
        # the same stream reaches the English reader while the engine is still stopped
        await wait_for(lambda: len(finals(english)) >= 2, timeout=120)
        first, second = finals(english)[:2]
        assert second["segment"] != first["segment"]
        assert second["track_start"] == first["track_start"] > 0
        assert not finals(spanish)  # their translations still wait
    player.audio.stop()
    await wait_for(lambda: len(finals(spanish)) >= 2, timeout=60)
    got = spanish.received("caption")
    finals_es = finals(spanish)[:2]
    assert [m["segment"] for m in finals_es] == [first["segment"], second["segment"]]
    for m in finals_es:
        assert m["translation"]["text"] == "Va de frente diez metros"
    # in order for the Spanish reader too: nothing of the second utterance came first
    seconds = [i for i, m in enumerate(got) if m["segment"] == second["segment"]]
    assert min(seconds) > got.index(finals_es[0])


async def test_a_lane_keeps_order_and_stays_bounded() -> None:
    """One source's jobs run in order; past the bound its waiting partials are dropped and
    what follows is delivered untranslated (busy), still in order; other lanes go on."""
    lanes = Lanes(limit=4)
    gate = asyncio.Event()
    ran: list[tuple[str, bool]] = []

    def job(name: str, droppable: bool = False, wait: bool = False) -> Job:
        async def run(busy: bool) -> None:
            if wait:
                await gate.wait()
            ran.append((name, busy))

        return Job(run, droppable=droppable)

    lanes.put("a", job("final-1", wait=True))  # the engine is stuck on this one
    for i in range(3):
        lanes.put("a", job(f"partial-{i}", droppable=True))
    lanes.put("a", job("final-2"))  # the lane is full: the waiting partials go
    lanes.put("a", job("final-3"))
    lanes.put("a", job("final-4"))
    lanes.put("a", job("final-5"))  # full of finals: delivered without translating
    other = asyncio.Event()

    async def mark(busy: bool) -> None:
        other.set()

    lanes.put("b", Job(mark))
    await other.wait()  # another source is not held up by lane a
    assert ran == [] and not lanes.idle("a")
    gate.set()
    while not lanes.idle("a"):
        await asyncio.sleep(0)
    assert ran == [
        ("final-1", False),
        ("final-2", False),
        ("final-3", False),
        ("final-4", False),
        ("final-5", True),
    ]
    assert lanes.dropped == 3
    await lanes.close()
