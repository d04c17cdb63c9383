"""Chat and captions read in each listener's language: real Apertium, real recordings."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from aiortc.contrib.media import MediaPlayer

from commhub.sdk import RoomClient
from tests.conftest import LoopWatch, Running, StartHub
from tests.helpers.audio import POCKETSPHINX_DATA, silence, write_wav
from tests.helpers.media import LOOPBACK
from tests.helpers.metrics import metric

pytestmark = pytest.mark.e2e


async def test_chat_is_translated_once_per_reading_language(hub: Running) -> None:
    english = await hub.joined(identity="resident", speak="en", read="en")
    spanish = [await hub.joined(identity=f"es{i}", speak="es", read="es") for i in range(2)]
    korean = await hub.joined(identity="agent", speak="ko", read="ko")
    calls = await metric(hub.url, "commhub_translation_engine_calls_total")
    await english.send({"type": "chat", "text": "Where is the city hall?"})
    mine = await english.expect("chat")
    assert mine["text"] == "Where is the city hall?" and "translation" not in mine
    for listener in spanish:
        got = await listener.expect("chat")
        assert got["text"] == "Where is the city hall?"  # the original travels too
        t = got["translation"]
        assert (t["lang"], t["status"], t["engine"]) == ("es", "ok", "apertium")
        assert "ciudad" in t["text"] and "Dónde" in t["text"]
    ko = await korean.expect("chat")
    assert ko["translation"]["status"] == "unavailable" and "text" not in ko["translation"]
    # Two Spanish readers, one engine call; the Korean pair does not exist (no call).
    assert await metric(hub.url, "commhub_translation_engine_calls_total") == calls + 1


async def test_repeated_phrase_comes_from_the_cache(hub: Running) -> None:
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    for _ in range(3):
        await a.send({"type": "chat", "text": "Good morning, how can I help you?"})
        got = await b.expect("chat")
        assert got["translation"]["status"] == "ok"
    assert await metric(hub.url, "commhub_translation_cache_hits_total") >= 2


async def test_oversize_text_is_delivered_untranslated(start_hub: StartHub) -> None:
    hub = await start_hub(translate_max_chars=20)
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    text = "This sentence is certainly longer than twenty characters."
    await a.send({"type": "chat", "text": text})
    got = await b.expect("chat")
    assert got["text"] == text
    assert got["translation"]["status"] == "too_long"


async def test_translation_follows_live_language_change(hub: Running) -> None:
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="en", read="en")
    await b.send({"type": "set_language", "read": "es"})
    await a.expect("participant_updated")
    await a.send({"type": "chat", "text": "Thank you"})
    assert (await b.expect("chat"))["translation"]["lang"] == "es"


@pytest.fixture(scope="module")
def english_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """'go forward ten meters', a real recording shipped by pocketsphinx-testdata."""
    raw = (POCKETSPHINX_DATA / "goforward.raw").read_bytes()
    path = tmp_path_factory.mktemp("tr") / "goforward.wav"
    return write_wav(path, silence(0.5) + raw + silence(1.5))


async def test_english_speaker_read_in_spanish_and_english(
    start_hub: StartHub, english_wav: Path, room_clients: list[RoomClient], loop_watch: LoopWatch
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK))

    async def join(identity: str, speak: str, read: str) -> RoomClient:
        c = RoomClient(hub.url, hub.token("desk", identity, speak=speak, read=read),
                       ice_hosts=LOOPBACK)  # fmt: skip
        room_clients.append(c)
        await c.connect()
        return c

    speaker = await join("resident", "en", "en")
    english = await join("agent-en", "en", "en")
    spanish = [await join(f"agent-es{i}", "es", "es") for i in range(2)]
    calls = await metric(hub.url, "commhub_translation_engine_calls_total")
    waits = [c.expect("caption", timeout=60, final=True) for c in (english, *spanish)]
    player = MediaPlayer(str(english_wav))
    assert player.audio is not None
    await speaker.publish(player.audio)
    try:
        en, *es = await asyncio.gather(*waits)
    finally:
        player.audio.stop()
    assert en["text"] == "go forward ten meters" and en["speaker"] == speaker.pid
    assert "translation" not in en
    for got in es:
        assert got["segment"] == en["segment"] and got["text"] == en["text"]
        assert got["translation"]["status"] == "ok"
        assert got["translation"]["text"] == "Va de frente diez metros"
    assert await metric(hub.url, "commhub_translation_engine_calls_total") == calls + 1


async def test_killed_engine_is_restarted_and_the_room_goes_on(hub: Running) -> None:
    from commhub.translate import ApertiumTranslator, TranslationService

    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    await a.send({"type": "chat", "text": "Good morning."})
    assert (await b.expect("chat"))["translation"]["status"] == "ok"
    service = hub.hub.translator
    assert isinstance(service, TranslationService)
    engine = service.engines["apertium"]
    assert isinstance(engine, ApertiumTranslator)
    pid = engine.pipe("en", "es").pid
    assert pid is not None
    os.killpg(pid, signal.SIGKILL)
    await a.send({"type": "chat", "text": "The office opens at nine."})
    got = await b.expect("chat")
    assert got["text"] == "The office opens at nine."  # delivered whatever happened
    assert got["translation"]["status"] == "ok" and "nueve" in got["translation"]["text"]
    assert engine.pipe("en", "es").pid not in (None, pid)


async def test_partials_translated_by_stable_prefix_when_enabled(
    start_hub: StartHub, english_wav: Path, room_clients: list[RoomClient]
) -> None:
    hub = await start_hub(ice_host_addresses=list(LOOPBACK), translate_partials=True)
    speaker = RoomClient(hub.url, hub.token("desk", "resident", speak="en"), ice_hosts=LOOPBACK)
    spanish = RoomClient(hub.url, hub.token("desk", "agent", speak="es"), ice_hosts=LOOPBACK)
    room_clients += [speaker, spanish]
    await speaker.connect()
    await spanish.connect()
    final = spanish.expect("caption", timeout=60, final=True)
    player = MediaPlayer(str(english_wav))
    assert player.audio is not None
    await speaker.publish(player.audio)
    try:
        await final
    finally:
        player.audio.stop()
    partials = [m for m in spanish.received("caption") if not m["final"]]
    translated = [m for m in partials if "translation" in m]
    assert translated, partials
    for m in translated:
        of = m["translation"]["of"] if "of" in m["translation"] else m["text"]
        assert m["text"].startswith(of)  # the translated part is a prefix of the partial
        assert m["translation"]["status"] == "ok"


async def test_newcomer_reads_recent_chat_in_its_language(start_hub: StartHub) -> None:
    hub = await start_hub(chat_history=2)
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    for text in ("Good morning.", "Where is the city hall?", "Thank you"):
        await a.send({"type": "chat", "text": text})
        await b.expect("chat", text=text)
    late = await hub.client(identity="late", speak="es")
    history = (await late.join())["chat"]
    assert [m["text"] for m in history] == ["Where is the city hall?", "Thank you"]
    assert [m["translation"]["text"] for m in history] == ["Dónde es la sala de ciudad?", "Gracias"]
    english = await hub.client(identity="late-en", speak="en")
    assert all("translation" not in m for m in (await english.join())["chat"])
    room = hub.hub.rooms.get("lobby")
    assert room is not None and len(room.translations) == 2  # the oldest fell off


POISON = "x\uffff" + " word" * 300  # made a shared Apertium pipeline one answer behind


async def test_poison_in_one_room_never_leaks_into_another(hub: Running) -> None:
    """Room A's attacker sends text that once put the shared eng-spa pipeline out of step:
    room B's reader still gets the Spanish of B's own words, room A never sees them, and
    both rooms keep working."""
    attacker = await hub.joined("room-a", identity="attacker", speak="en", read="en")
    reader_a = await hub.joined("room-a", identity="reader-a", speak="es", read="es")
    speaker_b = await hub.joined("room-b", identity="speaker-b", speak="en", read="en")
    reader_b = await hub.joined("room-b", identity="reader-b", speak="es", read="es")

    async def say(sender: Any, reader: Any, text: str) -> dict[str, Any]:
        await sender.send({"type": "chat", "text": text})
        got: dict[str, Any] = await reader.expect("chat", timeout=15)
        assert got["text"] == text
        return got["translation"]  # type: ignore[no-any-return]

    for round_ in range(2):
        poisoned = await say(attacker, reader_a, POISON if round_ == 0 else POISON + " again")
        assert poisoned["status"] == "ok", poisoned
        assert poisoned["text"].startswith("x\ufffd") and poisoned["text"].count("alabra") == 300
        secret = await say(speaker_b, reader_b, "The safe code is 4711")
        assert (secret["status"], secret["text"]) == ("ok", "El código seguro es 4711")
        morning = await say(attacker, reader_a, f"Good morning, {round_ + 1} times.")
        assert morning["status"] == "ok" and morning["text"].startswith("Buenos días")
        thanks = await say(speaker_b, reader_b, "Thank you very much.")
        assert (thanks["status"], thanks["text"]) == ("ok", "Muchas gracias.")
    # Both at once, several times over: still each room's own words.
    sends = []
    for i in range(3):
        sends += [attacker.send({"type": "chat", "text": f"{POISON} {i}"}),
                  speaker_b.send({"type": "chat", "text": f"The safe code is 47{i}"})]  # fmt: skip
    await asyncio.gather(*sends)
    for i in range(3):
        got_a = await reader_a.expect("chat", timeout=15)
        assert got_a["translation"]["status"] == "ok" and "código" not in str(got_a)
        got_b = await reader_b.expect("chat", timeout=15)
        assert got_b["translation"]["text"] == f"El código seguro es 47{i}"
    for client in (attacker, reader_a):
        seen = json.dumps(client.inbox, ensure_ascii=False)
        assert "4711" not in seen and "código" not in seen and "gracias" not in seen
    for client in (speaker_b, reader_b):
        assert "alabra" not in json.dumps(client.inbox, ensure_ascii=False)


async def test_busy_translator_answers_failed_at_once(start_hub: StartHub) -> None:
    """translate_queue=1 and the one engine call stuck (its first stage stopped): the next
    chat is delivered at once with `failed` (busy); once the engine moves, all goes on."""
    from commhub.translate import ApertiumTranslator, TranslationService

    hub = await start_hub(translate_queue=1)
    service = hub.hub.translator
    assert isinstance(service, TranslationService) and service.queue == 1
    a = await hub.joined(identity="a", speak="en", read="en")
    c = await hub.joined(identity="c", speak="en", read="en")
    b = await hub.joined(identity="b", speak="es", read="es")
    await a.send({"type": "chat", "text": "Good morning."})
    assert (await b.expect("chat"))["translation"]["status"] == "ok"
    engine = service.engines["apertium"]
    assert isinstance(engine, ApertiumTranslator)
    first_stage = engine.pipe("en", "es").stage_pids()[0][1]
    requests = "commhub_translation_requests_total"
    failed = await metric(hub.url, requests, engine="apertium", status="failed")
    os.kill(first_stage, signal.SIGSTOP)
    try:
        calls = await metric(hub.url, "commhub_translation_engine_calls_total")
        await a.send({"type": "chat", "text": "The office opens at nine."})
        async with asyncio.timeout(5):  # until that call is in the engine, holding the queue
            while await metric(hub.url, "commhub_translation_engine_calls_total") == calls:
                await asyncio.sleep(0.01)
        await c.send({"type": "chat", "text": "Thank you very much."})
        got = await b.expect("chat", timeout=3)
        assert got["text"] == "Thank you very much."
        t = got["translation"]
        assert (t["status"], t["engine"]) == ("failed", "apertium") and "busy" in t["detail"]
        assert await metric(hub.url, requests, engine="apertium", status="failed") == failed + 1
    finally:
        os.kill(first_stage, signal.SIGCONT)
    late = await b.expect("chat", timeout=10)
    assert late["translation"]["status"] == "ok" and "nueve" in late["translation"]["text"]
    await c.send({"type": "chat", "text": "Thank you very much."})
    assert (await b.expect("chat"))["translation"]["text"] == "Muchas gracias."
