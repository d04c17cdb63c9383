"""Text moderation of chat through a real hub: WebSocket clients, real filters, real Apertium
(eng-spa) where a translation is screened in the reader's language."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from commhub.protocol import schemas
from tests.conftest import StartHub
from tests.helpers.http import admin_headers, call
from tests.helpers.metrics import metric
from tests.helpers.translate import needs_apertium
from tests.helpers.wait import barrier, wait_for


async def test_english_insult_is_masked_for_every_reader(start_hub: StartHub) -> None:
    hub = await start_hub()
    sender = await hub.joined(identity="sender", speak="en", read="en")
    english = await hub.joined(identity="en-reader", speak="en", read="en")
    korean = await hub.joined(identity="ko-reader", speak="ko", read="ko")
    await sender.send({"type": "chat", "id": "c1", "text": "you stupid bastard"})
    echo = await sender.expect("chat", ref="c1")
    assert echo["text"] == "you ****** *******"
    note = await sender.expect("moderated")
    assert note["ref"] == "c1" and note["action"] == "mask" and note["kind"] == "chat"
    assert note["lang"] == "en" and "better-profanity" in note["rules"]
    assert (note["strikes"], note["strike_limit"], note["muted"]) == (1, 3, False)
    assert (await english.expect("chat"))["text"] == "you ****** *******"
    got = await korean.expect("chat")  # no en->ko engine here: the original stands, masked
    assert got["text"] == "you ****** *******"
    assert "bastard" not in str(got)
    assert await metric(hub.url, "commhub_moderation_actions_total", action="mask",
                        kind="chat", lang="en", engine="better-profanity") == 1  # fmt: skip


async def test_korean_insult_is_masked_for_every_reader(start_hub: StartHub) -> None:
    hub = await start_hub()
    sender = await hub.joined(identity="sender", speak="ko", read="ko")
    readers = [await hub.joined(identity=f"r-{lang}", speak=lang, read=lang)
               for lang in ("ko", "en", "es")]  # fmt: skip
    await sender.send({"type": "chat", "text": "ㅅㅣㅂㅏㄹ 이게 뭐야 병.신아"})
    for r in readers:
        got = await r.expect("chat")
        assert got["text"] == "***** 이게 뭐야 ***아", got
    note = await sender.expect("moderated")
    assert any(r.startswith("korcen:") for r in note["rules"])


@needs_apertium
async def test_translation_is_masked_in_the_readers_language(start_hub: StartHub) -> None:
    hub = await start_hub()
    sender = await hub.joined(identity="sender", speak="en", read="en")
    english = await hub.joined(identity="en-reader", speak="en", read="en")
    spanish = await hub.joined(identity="es-reader", speak="es", read="es")
    # "silly" passes in English; Apertium makes it "tonto", an insult in the Spanish list
    await sender.send({"type": "chat", "id": "c2", "text": "You are silly."})
    assert (await english.expect("chat"))["text"] == "You are silly."
    got = await spanish.expect("chat")
    assert got["text"] == "You are silly." and got["translation"]["status"] == "ok"
    assert got["translation"]["text"] == "Eres *****."
    note = await sender.expect("moderated")
    assert (note["kind"], note["about"], note["lang"]) == ("translation", "chat", "es")
    assert note["rules"] == ["list:es"] and note["strikes"] == 0  # the translator's doing
    # an English insult: masked before it is translated, and its translation too
    await sender.send({"type": "chat", "text": "You are an idiot."})
    got = await spanish.expect("chat", timeout=15, text="You are an *****.")
    assert "idiot" not in got["translation"]["text"]
    # a newcomer reads the masked history in its language
    late = await hub.joined(identity="late", speak="es", read="es")
    assert late.joined is not None
    history = late.joined["chat"]
    assert [m["text"] for m in history] == ["You are silly.", "You are an *****."]
    assert history[0]["translation"]["text"] == "Eres *****."


async def test_clean_chat_passes_untouched(start_hub: StartHub) -> None:
    hub = await start_hub()
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="ko", read="ko")
    for text in ["Scunthorpe is lovely in spring", "our class will assess it"]:
        await a.send({"type": "chat", "text": text})
        assert (await b.expect("chat", text=text))["text"] == text
    text = "이번 사업의 시발점은 작은 아이디어였어요"
    await b.send({"type": "chat", "text": text})
    assert (await a.expect("chat", text=text))["text"] == text
    await barrier(a, b)
    assert not a.received("moderated") and not b.received("moderated")


async def test_drop_sends_it_to_no_one(start_hub: StartHub) -> None:
    hub = await start_hub(moderation_action="drop")
    sender = await hub.joined(identity="sender", speak="en", read="en")
    reader = await hub.joined(identity="reader", speak="en", read="en")
    await sender.send({"type": "chat", "id": "d1", "text": "what the fuck"})
    note = await sender.expect("moderated", ref="d1")
    assert note["action"] == "drop"
    await sender.send({"type": "chat", "text": "sorry"})
    assert (await reader.expect("chat"))["text"] == "sorry"
    await barrier(sender, reader)
    assert [m["text"] for m in reader.received("chat")] == ["sorry"]
    assert [m["text"] for m in sender.received("chat")] == ["sorry"]


async def test_warn_sends_it_as_it_is_and_tells_the_sender(start_hub: StartHub) -> None:
    hub = await start_hub(moderation_action="warn")
    sender = await hub.joined(identity="sender", speak="en", read="en")
    reader = await hub.joined(identity="reader", speak="en", read="en")
    await sender.send({"type": "chat", "id": "w1", "text": "damn it"})
    assert (await reader.expect("chat"))["text"] == "damn it"
    note = await sender.expect("moderated", ref="w1")
    assert (note["action"], note["strikes"]) == ("warn", 1)


async def test_strikes_mute_and_a_moderator_lifts_it(
    start_hub: StartHub, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub(moderation_strikes=2)
    sender = await hub.joined(identity="sender", speak="en", read="en")
    reader = await hub.joined(identity="reader", speak="en", read="en")
    with caplog.at_level(logging.INFO, "commhub.moderation"):
        await sender.send({"type": "chat", "text": "shit"})
        first = await sender.expect("moderated")
        await sender.send({"type": "chat", "text": "shit again"})
        second = await sender.expect("moderated", strikes=2)
    assert (first["strikes"], first["muted"]) == (1, False)
    assert second["muted"] is True
    assert any("better-profanity" in r.getMessage() and "(muted)" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    await sender.send({"type": "chat", "id": "m1", "text": "hello"})
    err = await sender.expect("error", ref="m1")
    assert err["code"] == "strike_muted" and "moderator" in err["message"]
    # joining again does not clear it: strikes belong to the identity in the room
    await sender.close()
    again = await hub.joined(identity="sender", speak="en", read="en")
    await again.send({"type": "chat", "id": "m2", "text": "hello"})
    assert (await again.expect("error", ref="m2"))["code"] == "strike_muted"
    moderation = hub.hub.moderation
    assert moderation is not None
    assert moderation.strikes.lift("lobby", "sender") is True
    await again.send({"type": "chat", "text": "hello"})
    assert (await reader.expect("chat", text="hello"))["text"] == "hello"
    assert await metric(hub.url, "commhub_moderation_strike_mutes_total") == 1
    assert moderation.strikes.lift("lobby", "sender") is False


async def test_room_wordlist_admin_api(start_hub: StartHub, http: aiohttp.ClientSession) -> None:
    hub = await start_hub()
    url = f"{hub.url}/v1/rooms/lobby/wordlist"
    status, body = await call(http, "GET", url, headers=admin_headers())
    assert (status, body) == (200, {"room": "lobby", "words": [], "allow": []})
    status, _ = await call(http, "PUT", url, json={"words": ["x"]})
    assert status == 401
    other = admin_headers("elsewhere")
    assert (await call(http, "PUT", url, json={"words": ["x"]}, headers=other))[0] == 403
    for bad in ({"words": "pineapple"}, {"words": [""]}, {"words": ["a" * 65]},
                {"words": ["ok\x00"]}, {"words": [1]}, {"nope": []},
                {"words": ["w"] * 2001}):  # fmt: skip
        status, body = await call(http, "PUT", url, json=bad, headers=admin_headers())
        assert (status, body["error"]) == (400, "invalid_request"), bad
    spec = {"words": ["pineapple", "파인애플"], "allow": ["pineapples"]}
    status, body = await call(http, "PUT", url, headers=admin_headers(), json=spec)
    assert status == 200 and body["words"] == ["pineapple", "파인애플"]
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="ko", read="ko")
    await a.send({"type": "chat", "text": "I like PINEAPPLE, not pineapples"})
    assert (await b.expect("chat"))["text"] == "I like *********, not pineapples"
    note = await a.expect("moderated")
    assert note["rules"] == ["room-list"]
    await b.send({"type": "chat", "text": "파 인 애 플 좋아요"})
    assert (await a.expect("chat", text="* * * * 좋아요"))["from"]["identity"] == "b"
    note = await b.expect("moderated")
    assert note["rules"] == ["room-list"]
    # another room is not concerned
    c = await hub.joined(room="other", identity="c", speak="en", read="en")
    d = await hub.joined(room="other", identity="d", speak="en", read="en")
    await c.send({"type": "chat", "text": "pineapple"})
    assert (await d.expect("chat"))["text"] == "pineapple"
    assert (await call(http, "DELETE", url, headers=admin_headers()))[0] == 204
    await a.send({"type": "chat", "text": "pineapple"})
    assert (await b.expect("chat", text="pineapple"))["text"] == "pineapple"


async def test_hub_wordlist_file(start_hub: StartHub, tmp_path: Path) -> None:
    path = tmp_path / "hub-words.txt"
    path.write_text("# our list\nbroccoli\n[es]\nbrócoli\n", "utf-8")
    hub = await start_hub(moderation_wordlist=str(path))
    a = await hub.joined(identity="a", speak="fr", read="fr")
    b = await hub.joined(identity="b", speak="fr", read="fr")
    await a.send({"type": "chat", "text": "du BROCCOLI!"})
    assert (await b.expect("chat"))["text"] == "du ********!"
    assert (await a.expect("moderated"))["rules"] == ["hub-list"]


async def test_moderation_off(start_hub: StartHub, http: aiohttp.ClientSession) -> None:
    hub = await start_hub(moderation=False)
    a = await hub.joined(identity="a", speak="en", read="en")
    b = await hub.joined(identity="b", speak="en", read="en")
    await a.send({"type": "chat", "text": "damn"})
    assert (await b.expect("chat"))["text"] == "damn"
    status, body = await call(
        http, "GET", f"{hub.url}/v1/rooms/lobby/wordlist", headers=admin_headers()
    )
    assert (status, body["error"]) == (409, "moderation_off")


def test_moderated_example_matches_its_schema() -> None:
    import json

    example = Path(__file__).parent.parent / "signalling" / "examples" / "server-moderated.json"
    schemas().check_server(json.loads(example.read_text("utf-8")))


@needs_apertium
async def test_drop_of_a_translation_spares_the_other_readers(start_hub: StartHub) -> None:
    hub = await start_hub(moderation_action="drop")
    sender = await hub.joined(identity="sender", speak="en", read="en")
    english = await hub.joined(identity="en-reader", speak="en", read="en")
    spanish = await hub.joined(identity="es-reader", speak="es", read="es")
    await sender.send({"type": "chat", "text": "You are silly."})
    assert (await english.expect("chat"))["text"] == "You are silly."
    note = await sender.expect("moderated")
    assert (note["kind"], note["action"], note["lang"]) == ("translation", "drop", "es")
    await sender.send({"type": "chat", "text": "Thank you"})
    got = await spanish.expect("chat")
    assert got["text"] == "Thank you"  # the first never reached Spanish readers
    await barrier(spanish)
    assert [m["text"] for m in spanish.received("chat")] == ["Thank you"]


async def test_moderation_events_reach_the_store(start_hub: StartHub) -> None:
    hub = await start_hub()
    store = getattr(hub.hub, "store", None)
    if store is None:
        pytest.skip("this build has no store (the hub logs the events only)")
    sender = await hub.joined(identity="sender", speak="en", read="en")
    await sender.send({"type": "chat", "text": "you bastard"})
    await sender.expect("moderated")
    events: list[dict[str, Any]] = []
    for _ in range(200):  # the store writes in batches, a moment later
        events = [e for e in await store.events("lobby") if e["kind"] == "moderation"]
        if events:
            break
        await asyncio.sleep(0.05)
    assert len(events) == 1, events
    data = events[0]["data"]
    assert events[0]["identity"] == "sender"
    assert (data["action"], data["kind"], data["lang"]) == ("mask", "chat", "en")
    assert "better-profanity" in data["rules"] and data["text"] == "you bastard"


async def test_a_long_chat_is_screened_off_the_loop(start_hub: StartHub) -> None:
    from commhub.moderation.text import INLINE_CHARS

    hub = await start_hub()
    a = await hub.joined(identity="a", speak="es", read="es")
    b = await hub.joined(identity="b", speak="es", read="es")
    text = "hola " * (INLINE_CHARS // 4) + "eres un idiota"
    assert len(text) > INLINE_CHARS
    await a.send({"type": "chat", "text": text})
    got = await b.expect("chat")
    assert got["text"].endswith("eres un ******") and got["text"].startswith("hola hola")


async def test_hostile_chats_of_the_largest_size_are_screened_in_order(
    start_hub: StartHub,
) -> None:
    """Chats as long as the protocol allows, made to be slow to screen, sent back to back
    in each language: every sender gets its echoes, masked where its language's filters
    catch abuse, in the order sent; a bystander's chat sent meanwhile goes through."""
    from tests.helpers.hostile import HOSTILE, MAX_CHAT

    hub = await start_hub(moderation_strikes=0)
    bystander = await hub.joined(identity="bystander", speak="en", read="en")
    for lang in ("ko", "en", "es"):
        talker = await hub.joined(identity=f"talker-{lang}", speak=lang, read=lang)
        for i, (_, text, _) in enumerate(HOSTILE):
            assert len(text) == MAX_CHAT
            await talker.send({"type": "chat", "id": f"{lang}-{i}", "text": text})
        await bystander.send({"type": "chat", "id": f"by-{lang}", "text": "still here"})
        assert (await bystander.expect("chat", ref=f"by-{lang}", timeout=60))["text"] == (
            "still here"
        )
        for i, (name, text, caught) in enumerate(HOSTILE):
            echo = await talker.expect("chat", ref=f"{lang}-{i}", timeout=60)
            sent = text.strip()
            assert len(echo["text"]) == len(sent), name
            if lang in caught:
                assert echo["text"].count("*") > sent.count("*"), (lang, name)
            else:
                assert echo["text"] == sent, (lang, name)
        refs = [m["ref"] for m in talker.received("chat") if m.get("ref")]
        assert refs == [f"{lang}-{i}" for i in range(len(HOSTILE))]

        # the bystander reads every one of them (the others' after translation, on the
        # sender's lane), each whole
        def read_all(who: str = f"talker-{lang}") -> bool:
            got = [m for m in bystander.received("chat") if m["from"]["identity"] == who]
            return len(got) == len(HOSTILE)

        await wait_for(read_all, 60, f"the bystander's copies of talker-{lang}'s chats")
        copies = [m for m in bystander.received("chat")
                  if m["from"]["identity"] == f"talker-{lang}"]  # fmt: skip
        assert [len(m["text"]) for m in copies] == [len(t.strip()) for _, t, _ in HOSTILE]
        await talker.close()
    await barrier(bystander)
