"""The text policy: every chat message and caption (partials too) is screened in the
speaker's language before it is translated or sent, and every translation in the reader's
language before that reader gets it.

What happens to a hit is a setting (`moderation_action`): `mask` (default: the words are
replaced by `*`, the rest goes out), `drop` (the message goes nowhere), `warn` (it goes out
as it is). In every case the sender is told (`moderated`) and, for what the sender said,
gets a strike; `moderation_strikes` strikes mute them (their chat is refused with
`strike_muted`, their captions are not sent) until a moderator lifts it
(Strikes.lift). A hit that only a translation produced is the translator's doing: the
sender is told, but no strike. Every action is counted (commhub_moderation_actions_total)
and logged as an event with the rule that fired (and handed to the store when there is one).

Screening is cheap and linear in the text (tens of microseconds for a line, a few
milliseconds for a 4000-character chat: scripts/bench_moderation.py) and runs inline up to
INLINE_CHARS; a longer text (a pasted chat) is screened on the policy's one worker thread,
so no text holds the event loop. Each sender waits for its own text (the signalling handler
and the translation lanes take one message at a time), which keeps every sender's order;
at most SCREEN_WAITING texts wait for the worker, further ones wait their turn before it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram

from commhub import protocol
from commhub.bus import Inbox
from commhub.config import Settings
from commhub.protocol import ErrorCode, Message, ProtocolError
from commhub.rooms import Participant, Rooms, base_language

from .filters.base import Hit
from .filters.screen import RoomList, Screen, load_screen
from .strikes import Strikes

log = logging.getLogger("commhub.moderation")

INLINE_CHARS = 500  # longer texts are screened in the worker thread (~0.3 ms inline at most)
SCREEN_WAITING = 64  # texts queued for the worker; more wait (each its own sender) before it
MASK = "*"
_SEGMENTS_KEPT = 4096  # caption segments remembered as already struck


class Action(StrEnum):
    MASK = "mask"
    DROP = "drop"
    WARN = "warn"


class Events(Protocol):
    def __call__(self, room: str, kind: str, data: dict[str, Any]) -> None: ...


def mask(text: str, hits: list[Hit]) -> str:
    """Every character of the hits but spaces becomes `*`."""
    out = list(text)
    for h in hits:
        for i in range(max(0, h.start), min(len(out), h.end)):
            if not out[i].isspace():
                out[i] = MASK
    return "".join(out)


def rules_of(hits: list[Hit]) -> list[str]:
    return list(dict.fromkeys(h.rule for h in hits))[:16]


class ModerationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.actions = Counter(
            "commhub_moderation_actions",
            "Moderation actions on text, by action, what was screened, language and engine",
            ["action", "kind", "lang", "engine"],
            registry=registry,
        )
        self.mutes = Counter(
            "commhub_moderation_strike_mutes",
            "Participants muted for reaching the strike limit",
            registry=registry,
        )
        self.seconds = Histogram(
            "commhub_moderation_screen_seconds",
            "Time to screen one text in one language",
            buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05),
            registry=registry,
        )


class TextModeration:
    def __init__(
        self,
        screen: Screen,
        *,
        action: str,
        strike_limit: int,
        rooms: Rooms,
        send: Callable[[Participant, Message], None],
        registry: CollectorRegistry,
        events: Events | None = None,
    ) -> None:
        self.screen = screen
        self.action = Action(action)
        self.strikes = Strikes(strike_limit)
        self.rooms = rooms
        self._send = send
        self._events = events
        self.metrics = ModerationMetrics(registry)
        self.room_lists: dict[str, RoomList] = {}  # admin API: PUT /v1/rooms/{room}/wordlist
        self._struck: OrderedDict[str, None] = OrderedDict()  # caption segments struck
        self._labelled = {lang for lang in screen.languages() if lang != "*"}
        # one thread: screening is CPU under the GIL, more threads would not screen faster
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="commhub-screen")
        self._waiting = asyncio.Semaphore(SCREEN_WAITING)
        self._closed = False  # after close (a caption's last final): inline

    # -- screening ------------------------------------------------------------------------

    async def find(self, text: str, lang: str, room: str) -> list[Hit]:
        lang = base_language(lang)
        extra = self.room_lists.get(room)
        if len(text) > INLINE_CHARS and not self._closed:
            async with self._waiting:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._worker, self._find, text, lang, extra)
        return self._find(text, lang, extra)

    def close(self) -> None:
        """Let the worker go (a text being screened finishes; none waits for it)."""
        self._closed = True
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _find(self, text: str, lang: str, extra: RoomList | None) -> list[Hit]:
        started = time.perf_counter()
        try:
            return self.screen.find(text, lang, extra)
        finally:
            self.metrics.seconds.observe(time.perf_counter() - started)

    # -- the hooks ------------------------------------------------------------------------

    async def chat(self, room: str, p: Participant, text: str, ref: str | None) -> str | None:
        """The text to deliver (masked when so), or None when it is dropped. Raises
        strike_muted for a strike-muted sender."""
        if self.strikes.muted(room, p.identity):
            raise ProtocolError(
                ErrorCode.STRIKE_MUTED,
                f"you are muted after {self.strikes.count(room, p.identity)} moderated "
                "messages; a moderator can lift it",
                ref,
            )
        hits = await self.find(text, p.speak, room)
        if not hits:
            return text
        self._act(room, p, "chat", p.speak, text, hits, ref=ref)
        return self._apply(text, hits)

    async def caption(
        self, room: str, p: Participant, msg: Message, text: str | None
    ) -> tuple[Message, str | None] | None:
        """The caption (and the text to translate) to publish, or None: dropped, or the
        speaker is strike-muted (their captions are not sent)."""
        if self.strikes.muted(room, p.identity):
            return None
        hits = await self.find(msg["text"], msg["lang"], room)
        if hits:
            segment = msg["segment"]
            first = segment not in self._struck
            if first:  # one strike (and one notice) per utterance, however many partials
                self._struck[segment] = None
                while len(self._struck) > _SEGMENTS_KEPT:
                    self._struck.popitem(last=False)
            self._act(room, p, "caption", msg["lang"], msg["text"], hits, segment=segment,
                      strike=first, notify=first)  # fmt: skip
            new = self._apply(msg["text"], hits)
            if new is None:
                return None
            if new != msg["text"]:
                if text == msg["text"]:
                    text = new
                if msg.get("words"):
                    msg = {**msg, "words": _masked_words(msg["words"], new)}
                msg = {**msg, "text": new}
        if text and text != msg["text"]:  # the stable prefix of a partial
            prefix_hits = await self.find(text, msg["lang"], room)
            if prefix_hits:
                masked = self._apply(text, prefix_hits)
                text = masked if masked is not None else None
        return msg, text

    async def translation(
        self, room: str, msg: Message, lang: str, info: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A translation screened in the reader's language: the `translation` to send,
        or None when readers of `lang` get nothing (drop)."""
        text = info.get("text")
        if not text:
            return dict(info)
        hits = await self.find(text, lang, room)
        if not hits:
            return dict(info)
        sender = self._sender(room, msg)
        kind = "chat" if msg["type"] == "chat" else "caption"
        if sender is not None:
            self._act(room, sender, "translation", lang, text, hits, about=kind,
                      ref=None, segment=msg.get("segment"), strike=False)  # fmt: skip
        masked = self._apply(text, hits)
        return None if masked is None else {**info, "text": masked}

    # -- actions --------------------------------------------------------------------------

    def _apply(self, text: str, hits: list[Hit]) -> str | None:
        if self.action is Action.DROP:
            return None
        if self.action is Action.WARN:
            return text
        return mask(text, hits)

    def _sender(self, room: str, msg: Message) -> Participant | None:
        r = self.rooms.get(room)
        pid = msg["from"]["id"] if msg["type"] == "chat" else msg.get("speaker")
        return r.participants.get(pid) if r is not None and pid else None

    def _act(
        self,
        room: str,
        p: Participant,
        kind: str,
        lang: str,
        text: str,
        hits: list[Hit],
        *,
        about: str | None = None,
        ref: str | None = None,
        segment: str | None = None,
        strike: bool = True,
        notify: bool = True,
    ) -> None:
        rules = rules_of(hits)
        lang = base_language(lang)
        # a client picks its language: only those with engines of their own get a label
        label = lang if lang in self._labelled else "other"
        for engine in dict.fromkeys(r.split(":", 1)[0].split(">", 1)[0] for r in rules):
            self.metrics.actions.labels(self.action.value, kind, label, engine).inc()
        strikes, muted = (
            self.strikes.add(room, p.identity)
            if strike
            else (self.strikes.count(room, p.identity), False)
        )
        if muted:
            self.metrics.mutes.inc()
        log.info(
            "moderation: %s %s of %s in room %s (%s): %s; strikes %d%s",
            self.action.value, kind, p.identity, room, lang, ", ".join(rules), strikes,
            " (muted)" if muted else "",
        )  # fmt: skip
        if self._events is not None:
            data = {
                "identity": p.identity, "participant": p.id, "kind": kind, "about": about,
                "lang": lang, "action": self.action.value, "rules": rules,
                "text": text[:1000], "strikes": strikes, "muted": muted, "segment": segment,
            }  # fmt: skip
            try:
                self._events(room, "moderation", data)
            except Exception:  # the event log must never stop a delivery
                log.exception("recording a moderation event failed")
        if notify or muted:
            self._send(
                p,
                protocol.moderated(
                    action=self.action.value,
                    kind=kind,
                    lang=lang,
                    rules=rules,
                    strikes=strikes,
                    strike_limit=self.strikes.limit,
                    muted=self.strikes.muted(room, p.identity),
                    ref=ref,
                    segment=segment,
                    about=about,
                ),
            )

    # -- room lists -----------------------------------------------------------------------

    def set_room_list(self, room: str, words: list[str], allow: list[str]) -> None:
        if words or allow:
            self.room_lists[room] = RoomList.build(words, allow)
        else:
            self.room_lists.pop(room, None)


def _masked_words(words: list[dict[str, Any]], masked: str) -> list[dict[str, Any]]:
    """The final's word list follows its masked text (same words, same order)."""
    parts = masked.split()
    if len(parts) != len(words):
        return [{**w, "word": MASK * len(w["word"])} for w in words] if MASK in masked else words
    return [{**w, "word": part} for w, part in zip(words, parts, strict=True)]


class HubPort(Protocol):
    """What the text policy uses of the hub: the rooms, the metrics registry, and sending
    one message to one connection."""

    @property
    def rooms(self) -> Rooms: ...

    @property
    def registry(self) -> CollectorRegistry: ...

    def send(self, conn: Inbox, msg: Message) -> None: ...


@cache
def shared_screen(wordlist: str, threshold: float) -> Screen:
    """One set of engines per process (korcen's tables, the model's weights, the lists),
    shared by every hub in it: loading takes seconds, so once."""
    return load_screen(
        wordlist=Path(wordlist) if wordlist else None, model_threshold=threshold or None
    )


async def text_moderation(settings: Settings, hub: HubPort) -> TextModeration:
    """The hub's text policy, its engines loaded in a worker thread (off the loop)."""
    started = time.perf_counter()
    screen = await asyncio.to_thread(
        shared_screen, settings.moderation_wordlist, settings.moderation_score
    )
    log.info(
        "text filters ready in %.1f s: %s", time.perf_counter() - started,
        "; ".join(f"{lang}: {', '.join(names)}" for lang, names in screen.languages().items()),
    )  # fmt: skip
    return TextModeration(
        screen,
        action=settings.moderation_action,
        strike_limit=settings.moderation_strikes,
        rooms=hub.rooms,
        send=lambda p, msg: hub.send(p.conn, msg),
        registry=hub.registry,
        events=store_events(hub),
    )


def store_events(hub: object) -> Events:
    """Events into the hub's store when it has one (it may be added after start)."""

    def add(room: str, kind: str, data: dict[str, Any]) -> None:
        store = getattr(hub, "store", None)
        if store is not None:
            store.add_event(room, kind, data)

    return add
