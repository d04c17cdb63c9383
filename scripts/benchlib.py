"""Helpers shared by the benchmark scripts: a hub as its own process, metrics, percentiles.

The hub runs as `python -m commhub.cli serve` from the repository root, so the checkout's
code is what is measured (not whatever copy of the package the virtualenv has installed).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class HubProcess:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path
    secret: str

    @property
    def ps(self) -> psutil.Process:
        return psutil.Process(self.proc.pid)

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


def start_hub(workdir: Path, settings: dict[str, str], timeout: float = 60.0) -> HubProcess:
    """`commhub serve --port 0` with COMMHUB_<NAME> settings; output goes to workdir/hub.log."""
    workdir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(32)
    env = {
        **os.environ,
        "COMMHUB_SECRET": secret,
        **{f"COMMHUB_{k.upper()}": v for k, v in settings.items()},
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


async def scrape(http: aiohttp.ClientSession, url: str, prefix: str = "") -> dict[str, float]:
    """The hub's /metrics as {'name{label=value,...}': value} (histogram buckets left out)."""
    async with http.get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=10)) as resp:
        text = await resp.text()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith(prefix):
            continue
        for s in family.samples:
            if "le" in s.labels:
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
