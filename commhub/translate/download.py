"""Streamed HTTP(S) download with a progress bar on stderr, written atomically."""

from __future__ import annotations

import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .base import InstallError

_CHUNK = 1 << 16
TIMEOUT_S = 30.0


def is_url(src: str | os.PathLike[str]) -> bool:
    return isinstance(src, str) and src.startswith(("http://", "https://"))


def fetch_bytes(url: str, *, timeout: float = TIMEOUT_S) -> bytes:
    """A small document (a package index). Raises InstallError saying why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            data: bytes = resp.read()
            return data
    except (urllib.error.URLError, OSError) as exc:
        raise InstallError(f"cannot fetch {url}: {_reason(exc)}") from exc


def download(
    url: str, dest_dir: Path, *, progress: bool = True, timeout: float = TIMEOUT_S
) -> Path:
    """Download into a new temporary file inside ``dest_dir`` (same filesystem as the
    install, so the caller can rename it into place). The caller deletes it."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".download-", suffix=".part", dir=dest_dir)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0) or None
            label = url.rsplit("/", 1)[-1][:40] or "download"
            with tqdm(
                total=total, unit="B", unit_scale=True, desc=label, file=sys.stderr,
                disable=not progress,
            ) as bar:  # fmt: skip
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
            if total is not None and out.tell() != total:
                raise InstallError(f"download of {url} stopped at {out.tell()} of {total} bytes")
    except (urllib.error.URLError, OSError) as exc:
        path.unlink(missing_ok=True)
        raise InstallError(f"cannot download {url}: {_reason(exc)}") from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    reason = getattr(exc, "reason", None) or exc
    return f"{reason} (offline, or the host is unreachable from here?)"
