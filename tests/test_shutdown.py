"""A real `commhub serve` process: SIGTERM tells participants, closes them, exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from commhub import auth
from tests.wsclient import SignalClient


async def test_sigterm_drains_and_exits_zero(tmp_path: Path) -> None:
    secret = "s" * 48
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "commhub.cli",
        "serve",
        "--port",
        "0",
        "--data-dir",
        str(tmp_path),
        env={**os.environ, "COMMHUB_SECRET": secret, "COMMHUB_SHUTDOWN_TIMEOUT": "3"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        assert line.startswith("commhub listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        clients = []
        tokens = [auth.issue(secret, room="r", identity=who) for who in ("a", "b")]
        for token in tokens:
            c = await SignalClient.connect(url, token)
            await c.join()
            clients.append(c)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        for c in clients:
            assert (await c.expect("server_shutdown"))["reconnect_after"] > 0
            assert await c.closed() == 1001
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert time.monotonic() - started < 5
        for c in clients:
            await c.close()
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert "Traceback" not in log
        # The access log shows the upgrades, but never the bearer token in their URL.
        assert "GET /v1/signal?access_token=REDACTED" in log, log
        assert not any(token in log for token in tokens)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
