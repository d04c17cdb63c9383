"""Speech recognition: the Recognizer protocol, engines (Vosk, pocketsphinx) and the model registry.

Only this package imports ``vosk`` or ``pocketsphinx``.
"""

from .base import Hypothesis, ModelNotFound, Recognizer, SpeechModel, Word
from .registry import SpeechModels

__all__ = ["Hypothesis", "ModelNotFound", "Recognizer", "SpeechModel", "SpeechModels", "Word"]
