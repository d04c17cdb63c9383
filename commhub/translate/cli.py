"""What `commhub translate --from en --to es "text"` runs."""

from __future__ import annotations

from pathlib import Path

from .base import TranslationError
from .engines import build_engines
from .service import TranslationService


async def translate_cli(
    text: str, source: str, target: str, models_dir: Path, *, timeout: float = 60.0
) -> str:
    """The translation alone; raises TranslationError (with the reason) when there is none.

    The timeout is generous: a one-shot command pays the model load (seconds for Argos).
    """
    service = TranslationService(build_engines(models_dir), cache_size=0, timeout=timeout,
                                 max_chars=max(2000, len(text)))  # fmt: skip
    try:
        result = await service.translate(text, source, target)
    finally:
        await service.aclose()
    if result.status not in ("ok", "same"):
        raise TranslationError(
            f"{result.status}: {result.detail}. Installed: {service.describe() or 'nothing'}"
        )
    return result.text
