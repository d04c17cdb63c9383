"""Argos Translate engine: installed .argosmodel packages run through CTranslate2.

The package format, metadata and tokenizers are Argos' own (argostranslate.package). The
decode call is made here rather than through argostranslate.translate because that path
(1) builds a sentence splitter that downloads a model at run time, and (2) translates one
text per call, while captions for many rooms want one batched CTranslate2 call.
Decoding options are Argos' (target prefix, replace_unknowns, length penalty 0.2).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from . import sentences
from .base import TranslationError
from .text import clean_text

STATE_DIR = ".argos-state"  # where argostranslate may write its own files, inside our dir
_IMPORT_LOCK = threading.Lock()


@dataclass(frozen=True)
class ArgosPackageInfo:
    source: str
    target: str
    version: str
    path: Path


def read_package(path: Path) -> ArgosPackageInfo | None:
    """An installed translate package directory, or None for anything else."""
    try:
        meta = json.loads((path / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("type", "translate") != "translate":
        return None
    source, target = meta.get("from_code"), meta.get("to_code")
    if not isinstance(source, str) or not isinstance(target, str):
        return None
    return ArgosPackageInfo(source, target, str(meta.get("package_version", "")), path)


def installed_packages(packages_dir: Path) -> Iterator[ArgosPackageInfo]:
    if not packages_dir.is_dir():
        return
    for path in sorted(packages_dir.iterdir()):
        if path.is_dir() and not path.name.startswith("."):
            info = read_package(path)
            if info is not None:
                yield info


def argos_package_module(packages_dir: Path) -> ModuleType:
    """Import argostranslate.package with its settings pointed inside ``packages_dir``.

    argostranslate.settings creates ~/.local/share, ~/.config and ~/.local/cache dirs at
    import time; the environment it reads is set only for the duration of the import.
    """
    with _IMPORT_LOCK:
        if "argostranslate.package" in sys.modules:
            return sys.modules["argostranslate.package"]
        state = packages_dir / STATE_DIR
        overrides = {
            "XDG_DATA_HOME": str(state / "data"),
            "XDG_CONFIG_HOME": str(state / "config"),
            "XDG_CACHE_HOME": str(state / "cache"),
            "ARGOS_PACKAGES_DIR": str(packages_dir),
            "ARGOS_DEVICE_TYPE": "cpu",
        }
        saved = {key: os.environ.get(key) for key in overrides}
        os.environ.update(overrides)
        try:
            return importlib.import_module("argostranslate.package")
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class _Model:
    """One loaded package: tokenizer + CTranslate2 translator."""

    def __init__(self, info: ArgosPackageInfo, package_module: ModuleType, options: dict[str, Any]):
        import ctranslate2

        self.info = info
        self.package = package_module.Package(info.path)
        if getattr(self.package, "tokenizer", None) is None:
            raise TranslationError(f"argos package {info.path} has no tokenizer model")
        self.prefix: str = self.package.target_prefix or ""
        self.translator = ctranslate2.Translator(str(info.path / "model"), device="cpu", **options)

    def encode(self, text: str) -> list[str]:
        tokens: list[str] = self.package.tokenizer.encode(text)
        return tokens

    def decode(self, tokens: list[str]) -> str:
        value: str = self.package.tokenizer.decode(tokens)
        if self.prefix and value.startswith(self.prefix):
            value = value[len(self.prefix) :]
        return value[1:] if value.startswith(" ") else value


class ArgosTranslator:
    name = "argos"
    max_batch = 32

    def __init__(
        self,
        packages_dir: Path,
        *,
        beam_size: int = 4,
        inter_threads: int = 1,
        intra_threads: int = 0,
        max_decoding_length: int = 256,
    ) -> None:
        self.packages_dir = Path(packages_dir)
        self.beam_size = beam_size
        self.max_decoding_length = max_decoding_length
        self._options = {"inter_threads": inter_threads, "intra_threads": intra_threads}
        self._models: dict[tuple[str, str], _Model] = {}
        self._lock = threading.Lock()
        self.calls = 0  # CTranslate2 translate_batch calls: how batching is seen from outside

    def pairs(self) -> set[tuple[str, str]]:
        return {(p.source, p.target) for p in installed_packages(self.packages_dir)}

    def model(self, source: str, target: str) -> _Model:
        """Load (once) the package for a pair. Blocking: seconds for a real model."""
        with self._lock:
            model = self._models.get((source, target))
            if model is None:
                info = next(
                    (p for p in installed_packages(self.packages_dir)
                     if (p.source, p.target) == (source, target)),
                    None,
                )  # fmt: skip
                if info is None:
                    raise TranslationError(f"no argos {source}->{target} package installed")
                module = argos_package_module(self.packages_dir)
                model = self._models[(source, target)] = _Model(info, module, self._options)
            return model

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        model = self.model(source, target)
        # The service cleaned them already; direct callers may not have (a lone surrogate
        # cannot even be encoded for SentencePiece).
        split = [sentences.split(clean_text(text)) for text in texts]
        flat = [seg for segs in split for seg, _ in segs]
        todo = [i for i, seg in enumerate(flat) if seg.strip()]
        outputs = [""] * len(flat)
        if todo:
            tokens = [model.encode(flat[i]) for i in todo]
            prefix = [[model.prefix]] * len(tokens) if model.prefix else None
            results = model.translator.translate_batch(
                tokens,
                target_prefix=prefix,
                replace_unknowns=True,
                max_batch_size=64,
                beam_size=self.beam_size,
                num_hypotheses=1,
                length_penalty=0.2,
                max_decoding_length=self.max_decoding_length,
            )
            with self._lock:
                self.calls += 1
            for i, result in zip(todo, results, strict=True):
                outputs[i] = model.decode(result.hypotheses[0])
        out: list[str] = []
        at = 0
        for segs in split:
            out.append(sentences.join(segs, outputs[at : at + len(segs)]))
            at += len(segs)
        return out

    def close(self) -> None:
        with self._lock:
            self._models.clear()
