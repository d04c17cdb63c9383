"""Apertium engine: one long-lived pipeline per pair in null-flush mode.

Starting Apertium costs ~0.2 s (a dozen processes); a sentence through a warm pipeline
costs ~1 ms. So each pair keeps one pipeline, fed text + "\\n\\0" and read until "\\0".

Why not `apertium -z`: its txt deformatter (apertium-destxt) has no null-flush and holds
output until end of input. We run the mode's own pipeline (`apertium-wblank-mode -z`, the
official tool that adds -z to every stage) and escape the stream format ourselves.
Why "\\n\\0" and not "\\0": lt-proc -b (lttoolbox 3.7) only flushes a \\0 that follows a blank.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from .base import TranslationError
from .languages import to_iso1, to_iso3

log = logging.getLogger(__name__)

# Characters with a meaning in Apertium's stream format; escaped on the way in.
_SPECIAL = re.compile(r"([\\\[\]\$/@<>{}])")
# An escaped "^" standing alone as a word stalls lt-proc (3.7): it travels as a private-use
# character instead, which every stage passes through untouched.
_CARET = "\ue000"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_CHUNK_BYTES = 8192  # written before reading back: far below the pipes' buffers, so no deadlock


def default_modes_dir() -> Path | None:
    """<prefix>/share/apertium/modes of the `apertium` on PATH ($APERTIUM_MODES_DIR wins)."""
    env = os.environ.get("APERTIUM_MODES_DIR")
    if env:
        return Path(env)
    exe = shutil.which("apertium")
    if exe is None:
        return None
    return Path(exe).resolve().parent.parent / "share" / "apertium" / "modes"


def discover_modes(modes_dir: Path | None) -> dict[tuple[str, str], Path]:
    """Installed modes as ISO 639-1 pairs. Variant modes (spa-eng_US) and debug modes skipped."""
    found: dict[tuple[str, str], Path] = {}
    if modes_dir is None or not modes_dir.is_dir():
        return found
    for mode in sorted(modes_dir.glob("*.mode")):
        parts = mode.stem.split("-")
        if len(parts) != 2 or any("_" in p or not p.isalpha() for p in parts):
            continue
        found[(to_iso1(parts[0]), to_iso1(parts[1]))] = mode
    return found


def escape(text: str) -> str:
    text = text.replace("\0", "").replace(_CARET, "")
    return _SPECIAL.sub(r"\\\1", text).replace("^", _CARET)


def unescape(text: str) -> str:
    return _ESCAPED.sub(r"\1", text).replace(_CARET, "^")


class ApertiumPipe:
    """One running pipeline for one mode. Thread-safe; restarts itself after a crash."""

    def __init__(self, mode_file: Path, *, timeout: float = 10.0) -> None:
        self.mode_file = mode_file
        self.timeout = timeout
        self.starts = 0
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._command: str | None = None
        self._closed = False

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def pid(self) -> int | None:
        """Process-group id of the running pipeline (None before first use)."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    def translate(self, texts: Sequence[str]) -> list[str]:
        with self._lock:
            try:
                return self._translate(texts)
            except (OSError, TranslationError) as exc:
                if self._closed:
                    raise TranslationError("apertium engine closed") from exc
                # The pipeline died or hung: restart once and retry; a second failure is real.
                log.warning("apertium %s failed (%s); restarting", self.mode_file.stem, exc)
                self._kill()
                return self._translate(texts)

    def _translate(self, texts: Sequence[str]) -> list[str]:
        proc = self._ensure()
        assert proc.stdin is not None and proc.stdout is not None
        out: list[str] = []
        for chunk in _chunks([(escape(t) + "\n\0").encode() for t in texts]):
            try:
                proc.stdin.write(b"".join(chunk))
                proc.stdin.flush()
            except BrokenPipeError:  # it died before reading: say so, as _read would
                raise TranslationError(f"apertium exited (code {proc.poll()})") from None
            out.extend(self._read(proc, len(chunk)))
        return out

    def _read(self, proc: subprocess.Popen[bytes], count: int) -> list[str]:
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        while buf.count(0) < count:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TranslationError(f"apertium gave no answer within {self.timeout:g} s")
            data = os.read(fd, 65536)
            if not data:
                raise TranslationError(f"apertium exited (code {proc.poll()})")
            buf += data
        parts = bytes(buf).split(b"\0")
        if parts[count]:
            raise TranslationError("apertium answered more than was asked")
        # We appended "\n" to each input so lt-proc flushes; drop it again.
        return [unescape(p.removesuffix(b"\n").decode("utf-8", "replace")) for p in parts[:count]]

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._closed:
            raise TranslationError("apertium engine closed")
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        if self._proc is not None:
            self._kill()
        if self._command is None:
            self._command = _pipeline_command(self.mode_file)
        env = dict(os.environ, LC_ALL="C.UTF-8")  # the tools refuse non-UTF-8 locales
        # Own process group: a restart or close kills every stage, not just the shell.
        self._proc = subprocess.Popen(
            ["bash", "-c", self._command, "apertium", "-n", ""],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
        self.starts += 1
        return self._proc

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        proc.wait()

    def close(self) -> None:
        self._closed = True
        self._kill()  # without the lock: unblocks a reader, who then sees _closed


def _chunks(items: list[bytes]) -> list[list[bytes]]:
    chunks: list[list[bytes]] = [[]]
    size = 0
    for item in items:
        if chunks[-1] and size + len(item) > _CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += len(item)
    return [c for c in chunks if c]


def _pipeline_command(mode_file: Path) -> str:
    try:
        done = subprocess.run(
            ["apertium-wblank-mode", "-z", str(mode_file)],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TranslationError(
            f"cannot build the apertium pipeline for {mode_file}: {exc}"
        ) from exc
    return done.stdout.strip()


class ApertiumTranslator:
    name = "apertium"
    max_batch = 32

    def __init__(self, modes_dir: Path | None = None, *, timeout: float = 10.0) -> None:
        self.modes_dir = modes_dir if modes_dir is not None else default_modes_dir()
        self.timeout = timeout
        self._pipes: dict[tuple[str, str], ApertiumPipe] = {}
        self._lock = threading.Lock()

    def pairs(self) -> set[tuple[str, str]]:
        return set(discover_modes(self.modes_dir))

    def pipe(self, source: str, target: str) -> ApertiumPipe:
        key = (to_iso1(source), to_iso1(target))
        with self._lock:
            pipe = self._pipes.get(key)
            if pipe is None:
                mode = discover_modes(self.modes_dir).get(key)
                if mode is None:
                    raise TranslationError(
                        f"no apertium {to_iso3(source)}-{to_iso3(target)} mode installed"
                    )
                pipe = self._pipes[key] = ApertiumPipe(mode, timeout=self.timeout)
            return pipe

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str]:
        out = self.pipe(source, target).translate(texts)
        # Dropped words leave edge blanks ("It costs" -> " Cuesta"); keep only the input's own.
        return [o.strip() if t == t.strip() else o for t, o in zip(texts, out, strict=True)]

    def close(self) -> None:
        with self._lock:
            pipes = list(self._pipes.values())
            self._pipes.clear()
        for pipe in pipes:
            pipe.close()
