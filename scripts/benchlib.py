"""Helpers shared by the benchmark scripts (and the soak script): a hub as its own process,
its metrics, percentiles, timelines of event-loop lag and of the hub's CPU and memory.

The hub runs as `python -m commhub.cli serve` from the repository root, so the checkout's
code is what is measured (not whatever copy of the package the virtualenv has installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent

# Settings of a hub that a load generator on one address must not trip: no limits.
UNLIMITED = {
    "rate_limit": "100000",
    "rate_burst": "100000",
    "byte_rate": str(10**9),
    "byte_burst": str(10**9),
    "max_connections_per_ip": "100000",  # every client comes from 127.0.0.1
    "join_rate": "100000",
    "join_burst": "100000",
    "room_capacity": "10000",
    "log_level": "warning",
    "send_buffer": str(64 * 2**20),
}
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the checkout's commhub, not the copy installed in the venv

from commhub import auth  # noqa: E402
from tests.helpers.audio import write_wav  # noqa: E402,F401 (the benches' WAV writer too)


@dataclass
class HubProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    secret: str

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

    def token(self, room: str, identity: str, **claims: Any) -> str:
        """An access token for this hub (claims as commhub.auth.issue takes them)."""
        return auth.issue(self.secret, room=room, identity=identity, **claims)

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (drain-then-stop), then SIGKILL after `timeout`; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_problems(self) -> list[str]:
        """Lines of the hub's log at ERROR or CRITICAL, and tracebacks."""
        return [
            line
            for line in self.log.read_text(errors="replace").splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]


def start_hub(
    workdir: Path, settings: dict[str, str] | None = None, timeout: float = 60.0
) -> HubProcess:
    """`commhub serve --port 0` with COMMHUB_<NAME> settings; output goes to workdir/hub.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    env = {
        **os.environ,
        "COMMHUB_SECRET": secret,
        **{f"COMMHUB_{k.upper()}": v for k, v in (settings or {}).items()},
    }
    log = workdir / "hub.log"
    cmd = [sys.executable, "-m", "commhub.cli", "serve", "--port", "0", "--data-dir", str(workdir)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = re.search(r"commhub listening on (http://\S+)", log.read_text(errors="replace"))
        if found:
            return HubProcess(proc, found.group(1), log, secret)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    raise RuntimeError(f"the hub did not start; its log:\n{log.read_text(errors='replace')}")


async def scrape(
    http: aiohttp.ClientSession, url: str, prefix: str = "", buckets: bool = False
) -> dict[str, float]:
    """The hub's /metrics as {'name{label=value,...}': value} (histogram buckets left out
    unless asked for)."""
    async with http.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        for s in family.samples:
            if "le" in s.labels and not buckets:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}"] = float(s.value)
    return out


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, ensure_ascii=False, indent=2))


async def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``cond`` until true; TimeoutError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        await asyncio.sleep(0.02)


async def loop_lag(out: list[float], period: float = 0.02) -> None:
    """Timeline of how late this process's event loop wakes up (is the load generator, which
    paces and stamps everything, keeping up?). Runs until cancelled."""
    while True:
        before = time.monotonic()
        await asyncio.sleep(period)
        out.append(time.monotonic() - before - period)


async def sample_rss(ps: psutil.Process, out: list[float], period: float = 0.2) -> None:
    """Timeline of a process's RSS in MiB. Runs until cancelled."""
    while True:
        with contextlib.suppress(psutil.Error):
            out.append(ps.memory_info().rss / 2**20)
        await asyncio.sleep(period)


def cpu_seconds(ps: psutil.Process) -> float:
    t = ps.cpu_times()
    return t.user + t.system


def cpu_pct(ps: psutil.Process) -> float:
    """CPU % since the previous call for ``ps`` (the first call starts the clock); NaN once
    the process is gone."""
    with contextlib.suppress(psutil.Error):
        return ps.cpu_percent(None)
    return math.nan
