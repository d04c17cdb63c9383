#!/usr/bin/env python3
"""What the text filters add to chat and caption delivery: filter on vs off, same run.

One process, the hub's real delivery path: a Hub with a room of participants whose
connections stamp the time each message reaches them; chat goes through Hub.chat, captions
through LiveCaptions._publish (partials and finals), readers in the speaker's language (the
direct path) and in another language (translated, then screened again in the reader's: with
Apertium eng-spa when installed, its cache warmed so translation time does not swamp the
filter's). Lines: ordinary sentences (ko, en, es) with one in ten holding an insult.
Long chats too: the largest the protocol takes (ordinary sentences to 4000 characters, one
in ten a hostile text made to be slow to screen: tests/helpers/hostile.py), through Hub.chat
(screened on the policy's worker thread) and the screen alone per language, with the
longest time of a text screened inline (INLINE_CHARS of each hostile text): what a text
can hold the event loop. Also the screen alone per language. Prints a table and writes JSON
(bench-results/bench_moderation.json by default). On a shared, loaded machine the figures
are indicative; the on/off difference is what matters.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchlib import pct, write_json  # noqa: E402

from commhub.captions.events import CaptionEvent  # noqa: E402
from commhub.captions.live import LiveCaptions  # noqa: E402
from commhub.config import Settings  # noqa: E402
from commhub.hub import Hub  # noqa: E402
from commhub.moderation.text import INLINE_CHARS, shared_screen, text_moderation  # noqa: E402
from commhub.rooms import Participant  # noqa: E402
from commhub.speech import SpeechModels  # noqa: E402
from commhub.translate import ApertiumTranslator, TranslationService  # noqa: E402
from commhub.translate.apertium import default_modes_dir  # noqa: E402
from tests.helpers.hostile import HOSTILE_CHATS, MAX_CHAT  # noqa: E402
from tests.helpers.sentences import EN, ES, KO  # noqa: E402

DIRTY = {"en": ["you stupid bastard", "what the fuck is this"],
         "ko": ["시발 이게 뭐야", "이 병신아"], "es": ["eres un idiota", "qué mierda"]}  # fmt: skip


def lines(lang: str, n: int) -> list[str]:
    clean = {"en": EN, "ko": KO, "es": ES}[lang]
    dirty = itertools.cycle(DIRTY[lang])
    pool = itertools.cycle(clean)
    return [next(dirty) if i % 10 == 9 else next(pool) for i in range(n)]


def long_lines(lang: str, n: int) -> list[str]:
    """Chats of MAX_CHAT characters: ordinary sentences (each text starting at another),
    one in ten a hostile text."""
    clean = {"en": EN, "ko": KO, "es": ES}[lang]
    hostile = itertools.cycle(HOSTILE_CHATS)
    out = []
    for i in range(n):
        if i % 10 == 9:
            out.append(next(hostile))
            continue
        words: list[str] = []
        pool = itertools.islice(itertools.cycle(clean), i % len(clean), None)
        while sum(map(len, words)) + len(words) < MAX_CHAT:
            words.append(next(pool))
        out.append(" ".join(words)[:MAX_CHAT].strip())
    return out


class Stamp:
    """A participant's connection: the time each message arrived, by the text it carried."""

    def __init__(self) -> None:
        self.arrived: list[tuple[float, str]] = []

    def deliver(self, data: str) -> None:
        self.arrived.append((time.perf_counter(), data))

    async def end(self, reason: str, message: str, ref: str | None = None) -> None:
        pass


class NoAudio:
    def on_audio_track(self, callback: Any) -> Any:
        return lambda: None


async def build(on: bool, translate: bool, data: Path) -> tuple[Hub, dict[str, Participant]]:
    spec = {"data_dir": data, "secret": "b" * 40, "moderation": on,
            "translation": translate, "moderation_strikes": 0}  # fmt: skip
    settings = Settings.load(spec, env={})
    hub = Hub(settings, settings.secret)
    if on:
        hub.moderation = await text_moderation(settings, hub)
    if translate and default_modes_dir() is not None:
        hub.translator = TranslationService([ApertiumTranslator()], registry=hub.registry)
    people = {}
    for who, speak, read in (("speaker", "en", "en"), ("en", "en", "en"), ("es", "es", "es"),
                             ("ko-speaker", "ko", "ko"), ("ko", "ko", "ko")):  # fmt: skip
        p = Participant(identity=who, name=who, role="guest", conn=Stamp(), speak=speak,
                        read=read, grants=frozenset({"chat", "subscribe", "publish"}))  # fmt: skip
        await hub.join("bench", p)
        people[who] = p
    return hub, people


async def settle(hub: Hub) -> None:
    """Until every lane has delivered (the next line does not queue behind this one)."""
    for _ in range(20000):
        if not hub.lanes._tasks:
            return
        await asyncio.sleep(0.0005)


async def run_chat(hub: Hub, people: dict[str, Participant], texts: list[str]) -> dict[str, Any]:
    room = hub.rooms.get("bench")
    assert room is not None
    direct, translated = [], []
    for speaker, direct_reader, text in texts_for(texts):
        sender = people[speaker]
        readers = [people[direct_reader], people["es"]]
        marks = [len(r.conn.arrived) for r in readers]  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        await hub.chat(room, sender, text)
        await settle(hub)
        for r, mark, out in zip(readers, marks, (direct, translated), strict=True):
            got = r.conn.arrived[mark:]  # type: ignore[attr-defined]
            if got:
                out.append(got[0][0] - t0)
    return {"direct": direct, "translated": translated}


def texts_for(texts: list[str]) -> list[tuple[str, str, str]]:
    """(speaker, reader of its language, text): English and Korean lines alternate."""
    out = []
    for i, text in enumerate(texts):
        out.append(("speaker", "en", text) if i % 2 == 0 else ("ko-speaker", "ko", text))
    return out


async def run_captions(
    hub: Hub, people: dict[str, Participant], texts: list[str], data: Path
) -> dict[str, Any]:
    captions = LiveCaptions(hub.settings, SpeechModels(data / "models"), rooms=hub.rooms,
                            audio=NoAudio(), outbox=hub, registry=hub.registry)  # fmt: skip
    captions.moderation = hub.moderation
    partial, final = [], []
    for i, (speaker, reader, text) in enumerate(texts_for(texts)):
        p = people[speaker]
        words = text.split()
        for k in range(1, len(words) + 1):  # a partial per word, then the final
            is_final = k == len(words)
            event = CaptionEvent(
                segment_id=f"seg-{i}", speaker=p.id, language=p.speak, final=is_final,
                text=" ".join(words[:k]), start=0.0, end=0.3 * k,
            )  # fmt: skip
            r = people[reader]
            mark = len(r.conn.arrived)  # type: ignore[attr-defined]
            t0 = time.perf_counter()
            await captions._publish(p, "bench", event, f"lane-{speaker}", time.time())
            got = r.conn.arrived[mark:]  # type: ignore[attr-defined]
            if got:
                (final if is_final else partial).append(got[0][0] - t0)
        await settle(hub)
    return {"partial": partial, "final": final}


def screen_costs(n: int) -> dict[str, list[float]]:
    screen = shared_screen("", 0.9)
    out: dict[str, list[float]] = {}
    for lang in ("ko", "en", "es"):
        times = []
        for text in lines(lang, n):
            t0 = time.perf_counter()
            screen.find(text, lang)
            times.append(time.perf_counter() - t0)
        out[lang] = times
    return out


def long_screen_costs(n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Per language: times to screen MAX_CHAT-character chats; and the longest time of
    a hostile text cut to INLINE_CHARS (the most screening holds the event loop)."""
    screen = shared_screen("", 0.9)
    costs: dict[str, list[float]] = {}
    inline: dict[str, float] = {}
    for lang in ("ko", "en", "es"):
        times = []
        for text in long_lines(lang, n):
            t0 = time.perf_counter()
            screen.find(text, lang)
            times.append(time.perf_counter() - t0)
        costs[lang] = times
        worst = 0.0
        for text in HOSTILE_CHATS:
            for _ in range(3):
                t0 = time.perf_counter()
                screen.find(text[:INLINE_CHARS], lang)
                worst = max(worst, time.perf_counter() - t0)
        inline[lang] = worst
    return costs, inline


def ms(values: list[float], q: float) -> float:
    return round(pct(values, q) * 1000, 3)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=400, help="lines per run (chat and captions)")
    ap.add_argument("--rounds", type=int, default=3, help="off/on pairs (best p95 is kept)")
    ap.add_argument("--long", type=int, default=60, help="long chats per run (MAX_CHAT chars)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench-results" / "bench_moderation.json")
    args = ap.parse_args()
    texts = [t for pair in zip(lines("en", args.n // 2), lines("ko", args.n // 2), strict=True)
             for t in pair]  # fmt: skip
    long_texts = [t for pair in zip(long_lines("en", args.long // 2),
                                    long_lines("ko", args.long // 2), strict=True)
                  for t in pair]  # fmt: skip
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.rounds):  # off, on, off, on: drift hits both alike
            for on in (False, True):
                hub, people = await build(on, True, Path(tmp) / f"{round_}{on}")
                # every line once first: translations come from the cache when measured, so
                # the engine's scheduling on a loaded machine does not swamp the filter's cost
                await run_chat(hub, people, texts)
                chat = await run_chat(hub, people, texts)
                caps = await run_captions(hub, people, texts, Path(tmp))
                long = await run_chat(hub, people, long_texts)
                for what, values in (("chat direct", chat["direct"]),
                                     ("long chat direct", long["direct"]),
                                     ("long chat transl.", long["translated"]),
                                     ("chat translated", chat["translated"]),
                                     ("caption partial", caps["partial"]),
                                     ("caption final", caps["final"])):  # fmt: skip
                    rows.append({"path": what, "filter": "on" if on else "off",
                                 "round": round_, "n": len(values),
                                 "p50_ms": ms(values, 50), "p95_ms": ms(values, 95)})  # fmt: skip
                if isinstance(hub.translator, TranslationService):
                    await hub.translator.aclose()
    costs = screen_costs(args.n)
    long_costs, inline = long_screen_costs(args.long)
    summary = []
    for path in ("chat direct", "chat translated", "caption partial", "caption final",
                 "long chat direct", "long chat transl."):  # fmt: skip
        off = [r["p95_ms"] for r in rows if r["path"] == path and r["filter"] == "off"]
        on = [r["p95_ms"] for r in rows if r["path"] == path and r["filter"] == "on"]
        summary.append({"path": path, "p95_off_ms": min(off), "p95_on_ms": min(on),
                        "added_p95_ms": round(min(on) - min(off), 3)})  # fmt: skip
    print(f"{'path':<18}{'filter':>7}{'round':>6}{'n':>6}{'p50 ms':>9}{'p95 ms':>9}")
    for r in rows:
        print(f"{r['path']:<18}{r['filter']:>7}{r['round']:>6}{r['n']:>6}"
              f"{r['p50_ms']:>9.3f}{r['p95_ms']:>9.3f}")  # fmt: skip
    print(f"\n{'path':<18}{'p95 off':>9}{'p95 on':>9}{'added':>9}  (best of rounds, ms)")
    for s in summary:
        print(f"{s['path']:<18}{s['p95_off_ms']:>9.3f}{s['p95_on_ms']:>9.3f}"
              f"{s['added_p95_ms']:>9.3f}")  # fmt: skip
    print(f"\n{'screen alone':<18}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for lang, values in costs.items():
        print(f"{lang:<18}{ms(values, 50):>9.3f}{ms(values, 95):>9.3f}{ms(values, 100):>9.3f}")
    print(f"\n{f'screen {MAX_CHAT} chars':<18}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}"
          f"{f'inline max ({INLINE_CHARS})':>22}")  # fmt: skip
    for lang, values in long_costs.items():
        print(f"{lang:<18}{ms(values, 50):>9.3f}{ms(values, 95):>9.3f}{ms(values, 100):>9.3f}"
              f"{inline[lang] * 1000:>22.3f}")  # fmt: skip
    write_json(args.out, {
        "bench": "moderation", "host": platform.node(), "python": platform.python_version(),
        "apertium": default_modes_dir() is not None, "lines": len(texts), "rows": rows,
        "summary": summary,
        "screen": {lang: {"p50_ms": ms(v, 50), "p95_ms": ms(v, 95), "max_ms": ms(v, 100)}
                   for lang, v in costs.items()},
        "screen_long": {lang: {"chars": MAX_CHAT, "p50_ms": ms(v, 50), "p95_ms": ms(v, 95),
                               "max_ms": ms(v, 100),
                               "inline_max_ms": round(inline[lang] * 1000, 3),
                               "inline_chars": INLINE_CHARS}
                        for lang, v in long_costs.items()},
    })  # fmt: skip
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    asyncio.run(main())
