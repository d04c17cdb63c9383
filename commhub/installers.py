"""What `commhub models install SPEC` dispatches through.

A spec is ``<kind>:<target>`` (``vosk:model.zip``, ``argos:en-es``, ``apertium:eng-spa``), a
bare name registered on its own (``defaults``), or else a catalog id or language. Each kind is
one registered function, so another engine adds its spec without touching the CLI::

    register_spec("whisper", install_whisper)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import catalog
from .download import InstallError
from .translate.install import install_apertium_pair, install_argos_package, install_argos_pair

DEFAULT_LANGUAGES = ("ko", "en")


@dataclass(frozen=True)
class InstallRequest:
    target: str  # what follows "<kind>:" (empty for a bare name such as "defaults")
    models_dir: Path
    language: str | None = None  # of a vosk: archive whose name does not tell
    sha256: str | None = None
    force: bool = False
    progress: bool = True


SpecInstaller = Callable[[InstallRequest], list[str]]  # returns one line per thing installed

_SPECS: dict[str, SpecInstaller] = {}


def register_spec(kind: str, installer: SpecInstaller) -> None:
    _SPECS[kind] = installer


def spec_kinds() -> list[str]:
    return sorted(_SPECS)


def install_spec(
    spec: str,
    models_dir: Path,
    *,
    language: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: bool = True,
) -> list[str]:
    """Install what ``spec`` names; raises InstallError saying why not."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in _SPECS:
        if not rest:
            raise InstallError(f"{kind}: needs something after the colon (see --help)")
        installer, target = _SPECS[kind], rest
    elif spec in _SPECS:
        installer, target = _SPECS[spec], ""
    else:
        installer, target = _install_catalog, spec
    return installer(InstallRequest(target, Path(models_dir), language, sha256, force, progress))


def _catalog_lines(models: list[catalog.InstalledModel]) -> list[str]:
    return [f"{m.language}: {m.engine} {m.id} ({m.source})" for m in models]


def _install_catalog(req: InstallRequest) -> list[str]:
    return _catalog_lines(catalog.install(req.target, req.models_dir, req.progress))


def _install_defaults(req: InstallRequest) -> list[str]:
    lines: list[str] = []
    for lang in DEFAULT_LANGUAGES:
        lines += _catalog_lines(catalog.install(lang, req.models_dir, req.progress))
    return lines


def _install_vosk(req: InstallRequest) -> list[str]:
    m = catalog.install_vosk_archive(
        req.target, req.models_dir, req.language, req.progress, sha256=req.sha256, force=req.force
    )
    return [f"installed {m.engine} model {m.id} for {m.language} at {m.path}"]


def _install_argos(req: InstallRequest) -> list[str]:
    if re.fullmatch(r"[a-z]{2,3}-[a-z]{2,3}", req.target):
        info = install_argos_pair(req.target, req.models_dir, req.progress)
    else:
        info = install_argos_package(req.target, req.models_dir, req.progress)
    return [f"installed argos package {info.source}->{info.target} {info.version} at {info.path}"]


def _install_apertium(req: InstallRequest) -> list[str]:
    return [f"installed Debian package {install_apertium_pair(req.target)}"]


register_spec("defaults", _install_defaults)
register_spec("vosk", _install_vosk)
register_spec("argos", _install_argos)
register_spec("apertium", _install_apertium)
