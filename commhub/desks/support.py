"""Which languages the hub captions and which pairs it translates, for the agent console:
refreshed off the event loop (finding speech models scans directories)."""

from __future__ import annotations

import asyncio
import logging
import time

from commhub.hub import Hub
from commhub.rooms import base_language
from commhub.speech import SpeechModels

log = logging.getLogger("commhub.desks")
REFRESH = 30.0  # seconds an answer is kept


class LanguageSupport:
    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self.captions: set[str] = set()
        self.pairs: set[tuple[str, str]] = set()
        self._until = 0.0
        self._task: asyncio.Task[None] | None = None

    def _scan(self) -> tuple[set[str], set[tuple[str, str]]]:
        s = self.hub.settings
        captions: set[str] = set()
        if s.captions:
            found = SpeechModels(s.models_dir, s.speech_engines).languages()
            captions = {base_language(x) for x in found}
        translator = self.hub.translator
        matrix = getattr(translator, "matrix", None)
        pairs = {(base_language(a), base_language(b)) for a, b in matrix()} if matrix else set()
        return captions, pairs

    async def refresh(self) -> None:
        try:
            self.captions, self.pairs = await asyncio.to_thread(self._scan)
        except Exception:  # a broken model folder must not stop the desks
            log.exception("reading the hub's languages failed")
        self._until = time.monotonic() + REFRESH

    def stale(self) -> None:
        """Start a refresh in the background when the answer is old (never waits)."""
        if time.monotonic() >= self._until and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self.refresh())

    def has_captions(self, lang: str) -> bool:
        return base_language(lang) in self.captions

    def bridges(self, speak: str, read: str, lang: str) -> bool:
        """Text flows both ways between a visitor (speak, read) and a reader of `lang`."""
        s, r, x = base_language(speak), base_language(read), base_language(lang)
        return (s == x or (s, x) in self.pairs) and (r == x or (x, r) in self.pairs)
