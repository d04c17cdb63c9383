"""What `pip install` of a built wheel gives a user: schemas, page and catalog included.

An editable install reads everything from the source tree and hides missing package data, so
this builds a real wheel, installs it into a scratch folder, and runs the hub from there."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from commhub import auth
from tests.wsclient import SignalClient

ROOT = Path(__file__).resolve().parent.parent
NOT_SOURCE = (".git", ".venv", "*.egg-info", "build", "dist", "data", "installed", "bench-results")
NOT_SOURCE += ("__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache")
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built offline and installed (without its dependencies, which the test's
    environment has) into a folder that is then put first on PYTHONPATH."""
    out = tmp_path_factory.mktemp("wheel")
    # A copy without the editable install's egg-info, whose file list would fill the gaps.
    source = out / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-q", "-w", str(out / "dist"), str(source)], check=True, timeout=300)
    (wheel,) = (out / "dist").glob("commhub-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for needed in (
        "commhub/schemas/defs.json",
        "commhub/schemas/client/chat.json",
        "commhub/schemas/server/joined.json",
        "commhub/catalog.json",
        "commhub/web/index.html",
        "commhub/web/commhub.js",
        "commhub/web/desk.html",
        "commhub/web/console.html",
        "commhub/store/migrations/env.py",
        "commhub/store/migrations/script.py.mako",
        "commhub/store/migrations/versions/0001_initial.py",
        "commhub/moderation/filters/lists/es.txt",
        "commhub/moderation/filters/lists/ko.txt",
    ):
        assert needed in names, f"{needed} is missing from the wheel"
    site = out / "site"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run([*install, "--target", str(site), str(wheel)], check=True, timeout=300)
    return site


def wheel_env(site: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(site), "COMMHUB_SECRET": "w" * 40}


def test_the_wheel_is_what_runs(installed: Path, tmp_path: Path) -> None:
    where = subprocess.run(
        [sys.executable, "-c", "import commhub.catalog as c; print(c.__file__)"],
        env=wheel_env(installed), cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert where.stdout.strip().startswith(str(installed))
    listed = subprocess.run(
        [sys.executable, "-m", "commhub.cli", "models", "list"],
        env=wheel_env(installed), cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert "ko" in listed.stdout


async def test_installed_hub_serves_the_page_and_speaks_the_protocol(
    installed: Path, tmp_path: Path
) -> None:
    env = {**wheel_env(installed), "COMMHUB_CAPTIONS": "false", "COMMHUB_TRANSLATION": "false"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "commhub.cli", "serve", "--port", "0",
        "--data-dir", str(tmp_path / "data"),
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
        assert line.startswith("commhub listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        async with aiohttp.ClientSession() as http, http.get(f"{url}/") as page:
            assert page.status == 200 and "<html" in (await page.text()).lower()
        clients = []
        for who in ("minji", "sam"):
            c = await SignalClient.connect(url, auth.issue("w" * 40, room="r", identity=who))
            await c.join()
            clients.append(c)
        await clients[0].send({"type": "chat", "text": "from the wheel"})
        assert (await clients[1].expect("chat"))["text"] == "from the wheel"
        for c in clients:
            await c.close()
        async with aiohttp.ClientSession() as http, http.get(f"{url}/readyz") as ready:
            assert (await ready.json())["store"] == "ok"  # migrated from the wheel's scripts
        db = sqlite3.connect(tmp_path / "data" / "commhub.db")
        try:
            assert db.execute("select text from chat").fetchall() == [("from the wheel",)]
            assert db.execute("select version_num from alembic_version").fetchall()
        finally:
            db.close()
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 15)
