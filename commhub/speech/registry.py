"""The per-process registry of speech models: which languages are usable, load once, share."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from pathlib import Path

from .base import ModelNotFound, SpeechModel
from .layout import ModelLocation, all_locations, vosk_problems

log = logging.getLogger(__name__)

# When a language has models for several engines, the first one listed wins.
ENGINE_ORDER = ("vosk", "pocketsphinx")


def _normalise(language: str) -> str:
    return language.strip().replace("_", "-").lower()


class SpeechModels:
    def __init__(self, models_dir: Path, preferences: dict[str, str] | None = None) -> None:
        """``preferences`` maps a language to the engine to use for it (e.g. {"en": "vosk"})."""
        self.models_dir = Path(models_dir)
        self.preferences = {_normalise(k): v for k, v in (preferences or {}).items()}
        self._loaded: dict[str, SpeechModel] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def _candidates(self) -> dict[str, list[ModelLocation]]:
        by_language: dict[str, list[ModelLocation]] = {}
        for loc in all_locations(self.models_dir):
            by_language.setdefault(_normalise(loc.language), []).append(loc)
        for language, locs in by_language.items():
            preferred = self.preferences.get(language)
            locs.sort(
                key=lambda loc: (
                    loc.engine != preferred,
                    ENGINE_ORDER.index(loc.engine) if loc.engine in ENGINE_ORDER else 99,
                )
            )
        return by_language

    def languages(self) -> dict[str, str]:
        """Installed, usable languages -> the engine that will serve them."""
        return {lang: locs[0].engine for lang, locs in sorted(self._candidates().items())}

    def _resolve(self, language: str) -> tuple[str, ModelLocation]:
        wanted = _normalise(language)
        candidates = self._candidates()
        # "en-US" falls back to "en", and "en" to a sole "en-us" model.
        for key in (wanted, wanted.split("-")[0]):
            if key in candidates:
                return key, candidates[key][0]
        prefix = [k for k in candidates if k.split("-")[0] == wanted]
        if len(prefix) == 1:
            return prefix[0], candidates[prefix[0]][0]
        installed = ", ".join(sorted(candidates)) or "none"
        broken = vosk_problems(self.models_dir, wanted)
        unusable = f"; found but unusable: {', '.join(broken)}" if broken else ""
        raise ModelNotFound(
            language,
            f"no speech model for language {language!r} (looked in "
            f"{self.models_dir / 'vosk' / wanted} and in installed model packages; "
            f"installed: {installed}{unusable}). Fix: run `commhub models install {wanted}` or "
            f"`commhub models install vosk:<vosk-model.zip> --language {wanted} --force`",
        )

    def get(self, language: str, preset: str = "default") -> SpeechModel:
        """Load (once, blocking) and return the model for ``language``; ``preset`` names a
        decoder preset of its engine (commhub.speech.vosk.PRESETS: another copy of a Vosk
        model, loaded with those settings; commhub.speech.pocketsphinx.PRESETS: decoders
        created with those settings)."""
        key, location = self._resolve(language)
        loaded = key if preset == "default" else f"{key}:{preset}"
        with self._locks_guard:
            lock = self._locks.setdefault(loaded, threading.Lock())
        with lock:  # one loader per language; other languages load in parallel
            model = self._loaded.get(loaded)
            if model is None:
                started = time.monotonic()
                try:
                    model = _load(key, location, preset)
                except Exception as exc:  # a corrupt model: say which and how to fix it
                    raise ModelNotFound(
                        language,
                        f"the {location.engine} model {location.name} for {key!r} at "
                        f"{location.path or location.source} failed to load ({exc}). Fix: "
                        f"reinstall it with `commhub models install vosk:<zip> --language "
                        f"{key} --force`, or remove it",
                    ) from exc
                log.info(
                    "loaded %s speech model %s for %s (%s decoder) in %.1f s",
                    location.engine,
                    location.name,
                    key,
                    preset,
                    time.monotonic() - started,
                )
                self._loaded[loaded] = model
            return model

    async def load(self, language: str, preset: str = "default") -> SpeechModel:
        """``get`` in a worker thread: a model load takes seconds."""
        return await asyncio.to_thread(self.get, language, preset)


def _load(language: str, location: ModelLocation, preset: str = "default") -> SpeechModel:
    # Engines are imported only when used: importing vosk or pocketsphinx costs memory.
    if location.engine == "vosk":
        from .vosk import VoskModel

        assert location.path is not None
        return VoskModel(language, location.path, preset=preset)
    if location.engine == "pocketsphinx":
        from .pocketsphinx import PocketsphinxModel

        return PocketsphinxModel(language, preset=preset)
    raise ModelNotFound(language, f"unknown speech engine {location.engine!r} for {language!r}")
