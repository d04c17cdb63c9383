"""Apertium engine: one long-lived pipeline per pair in null-flush mode.

Starting Apertium costs ~0.2 s (a dozen processes); a sentence through a warm pipeline
costs ~1 ms. So each pair keeps one pipeline, fed text + "\\n\\0" and read until "\\0".

Why not `apertium -z`: its txt deformatter (apertium-destxt) has no null-flush and holds
output until end of input. We run the mode's own pipeline (`apertium-wblank-mode -z`, the
official tool that adds -z to every stage) and escape the stream format ourselves.
Why "\\n\\0" and not "\\0": lt-proc -b (lttoolbox 3.7) only flushes a \\0 that follows a blank.

Why markers: a null count alone cannot tell whose answer is whose. One stray \\0 (U+FFFF
makes lt-proc emit one; a stage killed mid-stream makes the others flush empty answers at
end of input) would leave the shared pipeline one answer behind for every room. So each text
travels as "[@N]text[@N]": a superblank, which every stage passes through untouched and in
place (measured on 25,000 real texts both ways, translations identical to unmarked ones),
with N this pipe's sequence number. An answer counts only if it is exactly one such pair
with its own N around it; text typed by a user cannot forge one, because its "[" and "]"
reach Apertium escaped. Anything else restarts the pipeline and retries once.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import select
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .base import PartialFailure, TranslationError
from .languages import to_iso1, to_iso3
from .text import clean_text

log = logging.getLogger(__name__)

# Characters with a meaning in Apertium's stream format; escaped on the way in.
_SPECIAL = re.compile(r"([\\\[\]\$/@<>{}])")
# An escaped "^" standing alone as a word stalls lt-proc (3.7): it travels as a private-use
# character instead, which every stage passes through untouched.
_CARET = "\ue000"
_ESCAPED = re.compile(r"\\(.)", re.DOTALL)
_CHUNK_BYTES = 8192  # written before reading back: far below the pipes' buffers, so no deadlock
# In an answer: an escape pair (skipped, so an escaped "[@1]" typed by a user never matches),
# or one of our markers.
_MARKER = re.compile(r"\\.|\[@(\d+)\]", re.DOTALL)
_MAX_RESTARTS = 3  # per call: a few bad texts cannot keep a pair restarting for long


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
        self._run: _Stages | None = None
        self._stages: list[list[str]] | None = None
        self._closed = False
        self._seq = 0  # never reset, so no answer from an earlier process can pass for a new one

    @property
    def restarts(self) -> int:
        return max(0, self.starts - 1)

    @property
    def pid(self) -> int | None:
        """Process-group id of the running pipeline (None before first use or once dead)."""
        run = self._run
        return run.pgid if run is not None and run.alive() else None

    def stage_pids(self) -> list[tuple[str, int]]:
        """(program, pid) of each running stage, upstream first."""
        run = self._run
        return [] if run is None else list(zip(run.names, (p.pid for p in run.procs), strict=False))

    def translate(self, texts: Sequence[str]) -> list[str | TranslationError]:
        """One outcome per text, in order: its own translation (proved by its markers), or
        the error that stopped it. After any trouble the pipeline is restarted and the text
        at fault tried once more; texts after it go on through the new pipeline."""
        with self._lock:
            out: list[str | TranslationError] = []
            tries = restarts = 0  # failed tries of the text at out[len(out)]; restarts so far
            while len(out) < len(texts):
                try:
                    for answer in self._attempt(texts, len(out)):
                        out.append(answer)
                        tries = 0
                except (OSError, ValueError, TranslationError) as exc:  # ValueError: closed file
                    if self._closed:
                        closed = TranslationError("apertium engine closed")
                        out += [closed] * (len(texts) - len(out))
                        break
                    self._kill()  # out of step, dead or hung: nothing more is read from it
                    if len(out) == len(texts):
                        break  # stray output after the last answer; every answer was proved
                    log.warning("apertium %s failed (%s); restarting", self.mode_file.stem, exc)
                    error = exc if isinstance(exc, TranslationError) else TranslationError(exc)
                    tries, restarts = tries + 1, restarts + 1
                    if tries == 2:  # the same text failed on a fresh pipeline too
                        out.append(error)
                        tries = 0
                    if restarts > _MAX_RESTARTS:
                        out += [error] * (len(texts) - len(out))
            return out

    def _attempt(self, texts: Sequence[str], first: int) -> Iterator[str]:
        """Translations of texts[first:], each yielded once proved to be its own."""
        run = self._ensure()
        i = first
        while i < len(texts):
            chunk: list[bytes] = []
            seqs: list[int] = []
            size = 0
            while i < len(texts):
                mark = f"[@{self._seq + 1}]"
                item = f"{mark}{escape(texts[i])}{mark}\n\0".encode("utf-8", "replace")
                if chunk and size + len(item) > _CHUNK_BYTES:
                    break
                self._seq += 1
                chunk.append(item)
                seqs.append(self._seq)
                size += len(item)
                i += 1
            try:
                run.stdin.write(b"".join(chunk))
                run.stdin.flush()
            except BrokenPipeError:  # it died before reading: say so, as _read would
                raise TranslationError(run.exited()) from None
            yield from self._read(run, seqs)

    def _read(self, run: _Stages, seqs: list[int]) -> Iterator[str]:
        fd = run.stdout.fileno()
        deadline = time.monotonic() + self.timeout
        buf = bytearray()
        pos = 0
        for seq in seqs:
            while (end := buf.find(0, pos)) < 0:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([fd], [], [], left)[0]:
                    raise TranslationError(f"apertium gave no answer within {self.timeout:g} s")
                data = os.read(fd, 65536)
                if not data:
                    raise TranslationError(run.exited())
                buf += data
            yield _own_answer(buf[pos:end].decode("utf-8", "replace"), seq)
            pos = end + 1
        if pos < len(buf):
            raise TranslationError("apertium answered more than was asked")

    def _ensure(self) -> _Stages:
        if self._closed:
            raise TranslationError("apertium engine closed")
        if self._run is not None and self._run.alive():
            return self._run
        self._kill()  # a stage died since the last request: start them all afresh
        if self._stages is None:
            self._stages = _pipeline_stages(self.mode_file)
        self._run = _Stages(self._stages)
        self.starts += 1
        return self._run

    def _kill(self) -> None:
        run, self._run = self._run, None
        if run is not None:
            run.kill()

    def close(self) -> None:
        self._closed = True
        self._kill()  # without the lock: unblocks a reader, who then sees _closed


def _own_answer(part: str, seq: int) -> str:
    """The translation inside "[@seq]...[@seq]" (+ the "\\n" we sent), or TranslationError."""
    body = part.removesuffix("\n")
    mark = f"[@{seq}]"
    if (  # no escapes in it: a plain look is proof enough (the common case)
        "\\" not in body and body.count("[@") == 2 and body.startswith(mark) and body.endswith(mark)
    ):
        return unescape(body[len(mark) : -len(mark)])
    marks = [m for m in _MARKER.finditer(body) if m.group(1) is not None]
    if (
        len(marks) != 2
        or marks[0].start() != 0
        or marks[1].end() != len(body)
        or not marks[0].group(1) == marks[1].group(1) == str(seq)
    ):
        raise TranslationError(f"apertium answer out of step (expected #{seq}); restarted")
    return unescape(body[marks[0].end() : marks[1].start()])


def _pipeline_stages(mode_file: Path) -> list[list[str]]:
    """The mode's null-flush pipeline as one argv per stage.

    Each stage is our own child, with no shell between: a shell running the pipeline keeps
    the pipes' ends open, so a stage killed at the end of the line meant a reader waiting
    for the full timeout instead of seeing end of input at once. "$1" and "$2" stand for what
    the apertium script passes: "-n" (no unknown-word marks, as `apertium -u`) and nothing.
    A mode that is more than a plain pipeline runs in bash as before.
    """
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
    command = done.stdout.strip()
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    stages: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token == "|":
                stages.append([])
            elif token == "$1":
                stages[-1].append("-n")
            elif token != "$2":
                if "$" in token or token[0] in lexer.punctuation_chars:
                    raise ValueError(token)
                stages[-1].append(token)
    except ValueError:
        stages = [[]]
    if not all(stages):
        return [["bash", "-c", command, "apertium", "-n", ""]]
    return stages


class _Stages:
    """The running processes of one pipeline, in one process group, stdin to stdout."""

    def __init__(self, stages: list[list[str]]) -> None:
        env = dict(os.environ, LC_ALL="C.UTF-8")  # the tools refuse non-UTF-8 locales
        self.names = [Path(argv[0]).name for argv in stages]
        self.procs: list[subprocess.Popen[bytes]] = []
        try:
            for argv in stages:
                prev = self.procs[-1] if self.procs else None
                self.procs.append(
                    subprocess.Popen(
                        argv,
                        stdin=prev.stdout if prev is not None else subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        env=env,
                        # Own group (restart and close kill every stage), and not the
                        # terminal's, so a Ctrl-C reaches the hub alone.
                        process_group=self.procs[0].pid if self.procs else 0,
                    )
                )
                if prev is not None and prev.stdout is not None:
                    prev.stdout.close()  # the next stage holds it now; EOF travels down
        except (OSError, subprocess.SubprocessError) as exc:
            self.kill()
            raise TranslationError(f"cannot start apertium ({argv[0]}): {exc}") from exc
        first, last = self.procs[0], self.procs[-1]
        assert first.stdin is not None and last.stdout is not None
        self.pgid = first.pid
        self.stdin, self.stdout = first.stdin, last.stdout

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def exited(self) -> str:
        """Which stage ended (a killed or failing one first), for the error detail."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.procs[-1].wait(0.1)  # its stdout just ended: it is exiting, if not gone yet
        codes = [(name, p.poll()) for name, p in zip(self.names, self.procs, strict=False)]
        ended = [c for c in codes if c[1] is not None]
        name, code = next((c for c in ended if c[1] != 0), ended[0] if ended else codes[-1])
        return f"apertium exited ({name}: code {code})"

    def kill(self) -> None:
        if self.procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.procs[0].pid, signal.SIGKILL)
        for proc in self.procs:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    with contextlib.suppress(OSError):
                        stream.close()
            proc.wait()


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
        """Raises PartialFailure, with every text's outcome, when any text failed."""
        clean = [clean_text(t) for t in texts]  # the service did this already; callers may not
        outcomes = self.pipe(source, target).translate(clean)
        # Dropped words leave edge blanks ("It costs" -> " Cuesta"); keep only the input's own.
        out = [
            o.strip() if isinstance(o, str) and t == t.strip() else o
            for t, o in zip(clean, outcomes, strict=True)
        ]
        done = [o for o in out if isinstance(o, str)]
        if len(done) < len(out):
            raise PartialFailure(out)
        return done

    def close(self) -> None:
        with self._lock:
            pipes = list(self._pipes.values())
            self._pipes.clear()
        for pipe in pipes:
            pipe.close()
