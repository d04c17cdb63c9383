"""Installing translation models: Argos packages (file, URL, package index) and Apertium pairs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

from ..download import InstallError, download, fetch_bytes, is_url, safe_unzip
from .argos import ArgosPackageInfo, read_package
from .languages import to_iso1, to_iso3

ARGOS_SUBDIR = "argos"
# Argos' own default; ARGOS_PACKAGE_INDEX (a base URL, as in argostranslate) overrides it.
DEFAULT_ARGOS_INDEX = "https://raw.githubusercontent.com/argosopentech/argospm-index/main/"


def argos_dir(models_dir: Path) -> Path:
    return Path(models_dir) / ARGOS_SUBDIR


def install_argos_package(
    src: str | os.PathLike[str], models_dir: Path, progress: bool = True
) -> ArgosPackageInfo:
    """Install a .argosmodel from a path or http(s) URL into <models_dir>/argos.

    The archive is checked (zip, metadata.json of type translate, a model and a tokenizer,
    no path escaping the package) before anything is put in place; the final rename is
    atomic, and a package for the same pair is replaced.
    """
    target_dir = argos_dir(models_dir)
    target_dir.mkdir(parents=True, exist_ok=True)
    if not is_url(src):
        archive = Path(src)
        if not archive.is_file():
            raise InstallError(f"no such file: {archive}")
        return _install_archive(archive, target_dir, name=str(src))
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target_dir) as tmp:
        fetched = Path(tmp) / "package.argosmodel"
        download(str(src), fetched, progress=progress)
        return _install_archive(fetched, target_dir, name=str(src))


def _install_archive(archive: Path, target_dir: Path, name: str) -> ArgosPackageInfo:
    if not zipfile.is_zipfile(archive):
        raise InstallError(f"{name} is not an Argos package (.argosmodel is a zip archive)")
    with tempfile.TemporaryDirectory(prefix=".install-", dir=target_dir) as tmp:
        safe_unzip(archive, Path(tmp), name=name)
        root = _package_root(Path(tmp), name)
        info = read_package(root)
        if info is None:
            raise InstallError(
                f"{name}: metadata.json must say type 'translate' with from_code and to_code"
            )
        if not (root / "model" / "model.bin").is_file():
            raise InstallError(f"{name}: no CTranslate2 model (model/model.bin)")
        if not ((root / "sentencepiece.model").is_file() or (root / "bpe.model").is_file()):
            raise InstallError(f"{name}: no tokenizer (sentencepiece.model or bpe.model)")
        final = target_dir / f"translate-{info.source}_{info.target}"
        old = target_dir / f".old-{final.name}-{os.getpid()}"
        if final.exists():
            final.rename(old)
        root.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    installed = read_package(final)
    assert installed is not None
    return installed


def _package_root(tmp: Path, name: str) -> Path:
    if (tmp / "metadata.json").is_file():
        return tmp
    roots = [p for p in tmp.iterdir() if p.is_dir() and (p / "metadata.json").is_file()]
    if len(roots) != 1:
        raise InstallError(f"{name}: no metadata.json at the top of the package")
    return roots[0]


def argos_index_url() -> str:
    base = os.environ.get("ARGOS_PACKAGE_INDEX", DEFAULT_ARGOS_INDEX)
    return base if base.endswith(".json") else base.rstrip("/") + "/index.json"


def install_argos_pair(
    pair: str, models_dir: Path, progress: bool = True, index_url: str | None = None
) -> ArgosPackageInfo:
    """Install the "en-ko" package listed in the Argos package index (needs the internet)."""
    source, _, target = pair.partition("-")
    source, target = to_iso1(source), to_iso1(target)
    url = index_url or argos_index_url()
    hint = (
        f"Without internet access, download translate-{source}_{target}.argosmodel elsewhere "
        f"and install it from the file (install_argos_package(path, models_dir))."
    )
    try:
        index = json.loads(fetch_bytes(url))
    except InstallError as exc:
        raise InstallError(f"cannot read the Argos package index: {exc}. {hint}") from exc
    except ValueError as exc:
        raise InstallError(f"the Argos package index at {url} is not JSON: {exc}") from exc
    entry = next(
        (e for e in index if isinstance(e, dict)
         and (e.get("from_code"), e.get("to_code")) == (source, target)),
        None,
    )  # fmt: skip
    if entry is None:
        raise InstallError(
            f"the Argos package index has no {source}->{target} package; pairs without one "
            f"are translated through English when {source}->en and en->{target} are installed"
        )
    errors = []
    for link in entry.get("links", []):
        try:
            return install_argos_package(str(link), models_dir, progress)
        except InstallError as exc:
            errors.append(str(exc))
    raise InstallError(f"no download of {source}->{target} worked: {'; '.join(errors)}. {hint}")


def apertium_package(pair: str) -> str:
    """ "en-es" / "eng-spa" / "spa-eng" -> "apertium-eng-spa" (Debian names one package per
    language couple; the name's order is the pair's upstream name, tried both ways)."""
    source, _, target = pair.partition("-")
    return f"apertium-{to_iso3(source)}-{to_iso3(target)}"


def install_apertium_pair(pair: str) -> str:
    """apt-get install the Debian package of an Apertium pair; returns the package name."""
    source, _, target = pair.partition("-")
    if not source or not target:
        raise InstallError(f"a pair looks like 'eng-spa' or 'en-es', not {pair!r}")
    candidates = [apertium_package(pair), apertium_package(f"{target}-{source}")]
    if os.geteuid() != 0:
        raise InstallError(
            f"installing Apertium pairs needs root: run `sudo apt-get install {candidates[0]}`"
        )
    if shutil.which("apt-get") is None:
        raise InstallError(f"apt-get not found: install {candidates[0]} with your package manager")
    errors = []
    for package in candidates:
        done = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            capture_output=True,
            text=True,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"),
            check=False,
        )
        if done.returncode == 0:
            return package
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        errors.append(f"{package}: {tail}")
    raise InstallError(
        "apt-get install failed: " + "; ".join(errors)
        + " (offline, no `apt-get update` yet, or no such pair in Debian?)"
    )  # fmt: skip
