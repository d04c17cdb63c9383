"""The engines a process has: Argos packages under <models_dir>/argos, Apertium if installed."""

from __future__ import annotations

from pathlib import Path

from .apertium import ApertiumTranslator, default_modes_dir
from .argos import ArgosTranslator
from .base import Translator
from .install import argos_dir


def build_engines(
    models_dir: Path, *, argos: bool = True, apertium: bool = True, beam_size: int = 4
) -> list[Translator]:
    engines: list[Translator] = []
    if argos:
        engines.append(ArgosTranslator(argos_dir(models_dir), beam_size=beam_size))
    modes = default_modes_dir()
    if apertium and modes is not None and modes.is_dir():
        engines.append(ApertiumTranslator(modes))
    return engines
