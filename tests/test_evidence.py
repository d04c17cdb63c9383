"""The evidence ring with the hub's own messages: what it keeps, for how long, and its bounds."""

from __future__ import annotations

from commhub import protocol
from commhub.moderation.evidence import Evidence

BOB = {"id": "PA_bob0000001", "identity": "bob", "name": "Bob"}


def chat(n: int, who: dict[str, str] = BOB) -> protocol.Message:
    return protocol.chat(chat_id=f"CH_{n}", sender=who, text=f"line {n}", lang="en", ts=100.0 + n)


def caption(segment: str, final: bool) -> protocol.Message:
    return protocol.caption(
        segment=segment, speaker=BOB["id"], lang="en", final=final, text="so rude",
        start=1.0, end=2.5, track_start=1000.0,
    )  # fmt: skip


def test_chat_and_final_captions_with_every_translation_readers_got() -> None:
    ring = Evidence(lines=10, participants=10)
    msg = chat(1)
    ring.seen("town", msg)  # readers of English: as it is
    for lang, text in (("ko", "줄 1"), ("es", "línea 1")):
        ring.seen("town", {**msg, "translation": {"lang": lang, "status": "ok", "text": text}})
    ring.seen("town", caption("s1", final=False))  # partials are not evidence
    ring.seen(
        "town", {**caption("s1", final=True), "translation": {"lang": "ko", "status": "failed"}}
    )
    ring.seen("town", protocol.participant_updated({"id": BOB["id"]}))
    lines = ring.of("town", BOB["id"])
    assert [(x["kind"], x["id"], x["text"]) for x in lines] == [
        ("chat", "CH_1", "line 1"), ("caption", "s1", "so rude"),
    ]  # fmt: skip
    assert lines[0]["translations"]["es"]["text"] == "línea 1" and lines[0]["ts"] == 101.0
    assert lines[1]["translations"] == {"ko": {"lang": "ko", "status": "failed"}}
    assert lines[1]["ts"] == 1002.5  # track_start + end: when it was said
    assert ring.of("elsewhere", BOB["id"]) == []  # per room
    lines[0]["translations"].clear()  # a copy: the ring is not changed through it
    assert ring.of("town", BOB["id"])[0]["translations"]


def test_it_is_bounded_per_participant_and_in_participants() -> None:
    ring = Evidence(lines=3, participants=2)
    for n in range(10):
        ring.seen("town", chat(n))
    assert [x["id"] for x in ring.of("town", BOB["id"])] == ["CH_7", "CH_8", "CH_9"]
    ring.seen("town", {**chat(3), "translation": {"lang": "ko", "status": "ok", "text": "x"}})
    # a late translation of a line the ring let go does not bring it back
    assert [x["id"] for x in ring.of("town", BOB["id"])] == ["CH_7", "CH_8", "CH_9"]
    for i in range(2):
        ring.seen("town", chat(0, {"id": f"PA_other{i:05d}", "identity": "o", "name": "O"}))
    assert ring.of("town", BOB["id"]) == []  # the least recently heard from went first
    assert len(ring.of("town", "PA_other00001")) == 1
