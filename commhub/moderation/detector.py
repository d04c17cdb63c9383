"""Image classifiers behind one small protocol; the shipped one is nudenet's detector.

PyPI `nudenet` bundles its ONNX model in the wheel (nothing is downloaded). Its labels
include harmless ones (faces, feet), which is what lets tests block a harmless label.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class ImageClassifier(Protocol):
    """Finds labelled regions in a BGR picture. Blocking: called on a worker thread."""

    def detect(self, picture: np.ndarray) -> list[tuple[str, float]]: ...


class NudeNetClassifier:
    """nudenet's NudeDetector, loaded on first use, with onnxruntime held to `threads`
    threads (its default is one per core, which would ignore the hub's CPU budget)."""

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads
        self._detector: Any = None

    def load(self) -> None:
        if self._detector is not None:
            return
        import nudenet
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        model = Path(nudenet.__file__).parent / "320n.onnx"
        detector = nudenet.NudeDetector(model_path=str(model))
        detector.onnx_session = onnxruntime.InferenceSession(
            str(model), options, providers=["CPUExecutionProvider"]
        )
        self._detector = detector

    def detect(self, picture: np.ndarray) -> list[tuple[str, float]]:
        self.load()
        found = self._detector.detect(picture)
        return [(str(d["class"]), float(d["score"])) for d in found]
