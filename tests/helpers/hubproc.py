"""The hub as its own process (`python -m commhub.cli serve`), so a test can kill it and start
it again on the same port, as an operator would restart it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without COMMHUB_* settings (but checking what the hub
    sends), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMMHUB_")}
    env["COMMHUB_CHECK_OUTGOING"] = "1"  # a message breaking its schema is logged and refused
    env["COMMHUB_CAPTION_WARM_RECOGNIZERS"] = "0"  # seconds of CPU each: only where tested
    env.update(extra)
    return env


class HubProcess:
    def __init__(
        self, data_dir: Path, port: int = 0, env: dict[str, str] | None = None, *args: str
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.env = clean_env(**(env or {}))
        self.args = list(args)
        self.proc: asyncio.subprocess.Process | None = None
        self.lines: list[str] = []  # what it printed on stdout, across restarts
        self._reader: asyncio.Task[None] | None = None
        self._listening: asyncio.Future[int] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.data_dir / "hub.log", "ab")  # noqa: SIM115, ASYNC230 (tiny, local)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "commhub.cli", "serve", "--host", "127.0.0.1",
                "--port", str(self.port), "--data-dir", str(self.data_dir), *self.args,
                stdout=asyncio.subprocess.PIPE, stderr=log, env=self.env,
            )  # fmt: skip
        finally:
            log.close()
        self._listening = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read(self.proc, self._listening))
        async with asyncio.timeout(timeout):
            self.port = await asyncio.shield(self._listening)

    async def _read(self, proc: asyncio.subprocess.Process, listening: asyncio.Future[int]) -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            line = raw.decode().rstrip("\n")
            self.lines.append(line)
            m = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
            if m and not listening.done():
                listening.set_result(int(m.group(1)))
        if not listening.done():
            listening.set_exception(RuntimeError(f"the hub exited: {self.log()[-2000:]}"))

    def log(self) -> str:
        path = self.data_dir / "hub.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Signal the hub and wait until it is gone; returns its exit code."""
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        async with asyncio.timeout(timeout):
            code = await self.proc.wait()
            if self._reader is not None:
                await self._reader
        return code

    async def close(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
