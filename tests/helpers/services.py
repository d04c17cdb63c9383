"""Real services from Debian packages, started on loopback by the tests, each in a temp
folder: redis-server (one per test) and PostgreSQL (one cluster per session: initdb takes
seconds; each test gets its own database, see tests/conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.helpers.hubproc import free_port


class RedisServer:
    """A throwaway redis-server on 127.0.0.1 (no persistence): restartable on its port."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.folder = folder
        self.port = port or free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    async def start(self, timeout: float = 10.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc = await asyncio.create_subprocess_exec(
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.folder),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        async with asyncio.timeout(timeout):
            while True:
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                    writer.write(b"PING\r\n")
                    await writer.drain()
                    writer.close()
                    return
                await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self.proc = None

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()


def _postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's programs (initdb, pg_ctl), if installed."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: float(p.parents[1].name)
    )
    return found[-1].parent if found else None


class PostgresServer:
    """A throwaway PostgreSQL cluster on 127.0.0.1: initdb into a temp dir, pg_ctl start/stop
    on a fixed port (a restart keeps it). The server refuses to run as root, and the tests
    run as root: then its programs run as the `postgres` user, in a dir it owns (made under
    /tmp, which that user can reach; pytest's own tmp dirs are root's alone)."""

    USER = "commhub"  # the cluster's superuser, trusted on loopback (no password)

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self.folder: Path | None = None

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str) -> str:
        return f"postgresql+asyncpg://{self.USER}@127.0.0.1:{self.port}/{database}"

    @staticmethod
    def available() -> bool:
        if _postgres_bin() is None:
            return False
        return os.geteuid() != 0 or shutil.which("runuser") is not None

    def _run(self, program: str, *args: str, timeout: float = 120.0) -> None:
        binary = _postgres_bin()
        assert binary is not None and self.folder is not None
        cmd = [str(binary / program), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=self.folder)
        if done.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stderr}{tail}")

    def setup(self) -> None:
        """initdb (seconds) and start; blocking (a session fixture calls it)."""
        self.folder = Path(tempfile.mkdtemp(prefix="commhub-pg-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        # --no-sync: a test cluster need not survive a power cut (the server's own fsync
        # is off too, below): the shared machine's disk is spared
        self._run("initdb", "-D", str(self.folder / "db"), "-A", "trust", "-U", self.USER,
                  "--no-sync", "-E", "UTF8", "--locale", "C")  # fmt: skip
        self.start_blocking()

    def start_blocking(self) -> None:
        assert self.folder is not None
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
            " -c max_connections=200"
        )
        self._run("pg_ctl", "-D", str(self.folder / "db"), "-o", options,
                  "-l", str(self.folder / "log"), "-w", "-t", "60", "start")  # fmt: skip

    def stop_blocking(self) -> None:
        """A fast stop: open sessions are cut (their transactions roll back), as on an
        operator's `systemctl restart`."""
        assert self.folder is not None
        self._run("pg_ctl", "-D", str(self.folder / "db"), "-m", "fast", "-w", "-t", "60", "stop")

    @property
    def running(self) -> bool:
        return self.folder is not None and (self.folder / "db" / "postmaster.pid").exists()

    async def start(self) -> None:
        await asyncio.to_thread(self.start_blocking)

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_blocking)

    async def restart(self, down_for: float = 0.0) -> None:
        await self.stop()
        await asyncio.sleep(down_for)
        await self.start()

    def teardown(self) -> None:
        if self.folder is None:
            return
        if self.running:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop_blocking()
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = None
