"""Translation: engines (Argos, Apertium) behind one protocol, and the shared service.

Nothing outside this package imports argostranslate or runs apertium.
"""

from ..download import InstallError
from .apertium import ApertiumTranslator
from .argos import ArgosPackageInfo, ArgosTranslator
from .base import Status, Translation, TranslationError, Translator
from .cli import translate_cli
from .engines import build_engines
from .install import (
    argos_dir,
    install_apertium_pair,
    install_argos_package,
    install_argos_pair,
)
from .metrics import TranslationMetrics
from .service import TranslationService

__all__ = [
    "ApertiumTranslator",
    "ArgosPackageInfo",
    "ArgosTranslator",
    "InstallError",
    "Status",
    "Translation",
    "TranslationError",
    "TranslationMetrics",
    "TranslationService",
    "Translator",
    "argos_dir",
    "build_engines",
    "install_apertium_pair",
    "install_argos_package",
    "install_argos_pair",
    "translate_cli",
]
