"""The captions pipeline core: resample -> voice gate -> recognize, per audio stream."""

from .budget import RecognitionBudget
from .events import CaptionEvent, OnCaption
from .gate import GateSettings, VoiceGate
from .metrics import CaptionMetrics
from .resample import Resampler
from .stream import CaptionStream, StreamSettings, StreamStats

__all__ = [
    "CaptionEvent",
    "CaptionMetrics",
    "CaptionStream",
    "GateSettings",
    "OnCaption",
    "RecognitionBudget",
    "Resampler",
    "StreamSettings",
    "StreamStats",
    "VoiceGate",
]
