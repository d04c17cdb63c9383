"""Fetching and unpacking model archives: the one downloader and the one safe unzip.

Every installer (Vosk zips, Argos packages, catalog URLs) goes through here, so a download is
always length-checked, hashed, and renamed into place only once it is whole and verified, and
an archive is never unpacked with a member that could land outside its directory.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import stat
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from tqdm import tqdm

CHUNK = 1 << 20
TIMEOUT_S = 60.0


class InstallError(Exception):
    """A model could not be installed; nothing was left half-written."""


def is_url(src: str | os.PathLike[str]) -> bool:
    return isinstance(src, str) and urllib.parse.urlparse(src).scheme in ("http", "https")


def fetch_bytes(url: str, *, timeout: float = TIMEOUT_S) -> bytes:
    """A small document (a package index). Raises InstallError saying why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise InstallError(f"cannot fetch {url}: {_reason(exc)}") from exc


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = TIMEOUT_S,
) -> str:
    """Download ``url`` to ``dest`` and return its sha256.

    The bytes go to a temporary file next to ``dest``; it is renamed to ``dest`` only when as
    many bytes arrived as the server announced and the digest matches ``sha256`` (if given).
    On any failure the temporary file is removed and ``dest`` is untouched.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest.parent)
    part = Path(name)
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            label = Path(urllib.parse.urlparse(url).path).name[:40] or "download"
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"download {label}", file=sys.stderr, disable=not progress,
            ) as bar:  # fmt: skip
                while chunk := resp.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            got = out.tell()
        if total is not None and got != total:
            raise InstallError(f"download of {url} stopped at {got} of {total} bytes")
        hexdigest = digest.hexdigest()
        if sha256 and hexdigest != sha256.lower():
            raise InstallError(f"{url}: sha256 mismatch: expected {sha256}, got {hexdigest}")
        os.replace(part, dest)
        return hexdigest
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise InstallError(f"cannot download {url}: {_reason(exc)}") from exc
    finally:
        part.unlink(missing_ok=True)  # gone already after a successful rename


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


_DRIVE = re.compile(r"^[A-Za-z]:")


def unsafe_member(info: zipfile.ZipInfo) -> str | None:
    """Why this archive member must not be unpacked, or None when it is a plain file or dir."""
    name = info.filename
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symlink"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "absolute path"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "path escaping the archive"
    return None


def safe_unzip(archive: Path, dest: Path, *, progress: bool = False, name: str = "") -> None:
    """Unpack ``archive`` into ``dest``, refusing (before writing anything) an archive with a
    symlink, an absolute path or a path with '..' in it."""
    label = name or archive.name
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:
                problem = unsafe_member(m)
                if problem is not None:
                    raise InstallError(f"{label}: unsafe path in archive ({problem}): {m.filename}")
            root = dest.resolve()
            with tqdm(
                total=sum(m.file_size for m in members), unit="B", unit_scale=True,
                unit_divisor=1024, desc="unpack", file=sys.stderr, disable=not progress,
            ) as bar:  # fmt: skip
                for m in members:
                    written = Path(zf.extract(m, dest)).resolve()
                    if not written.is_relative_to(root):  # belt and braces
                        raise InstallError(f"{label}: unsafe path in archive: {m.filename}")
                    bar.update(m.file_size)
    except zipfile.BadZipFile as exc:
        raise InstallError(f"{label} is not a zip archive: {exc}") from exc
    except OSError as exc:
        raise InstallError(f"{label}: damaged archive: {exc}") from exc


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, http.client.HTTPException):
        return f"bad HTTP response: {exc!r}"
    reason = getattr(exc, "reason", None) or exc
    return f"{reason} (offline, or the host is unreachable from here?)"
