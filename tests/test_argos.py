"""Argos engine for real: tiny random-weight packages through install -> load -> translate."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from commhub.translate import (
    ArgosTranslator,
    InstallError,
    TranslationService,
    argos_dir,
    install_argos_package,
    install_argos_pair,
)
from tests.helpers import translate as translate_helpers
from tests.helpers.hubproc import free_port

argos_archives = translate_helpers.argos_archives  # the session fixture, used by name

SHORT = 24  # max decoding length: random weights never stop early, keep tests quick


def engine(models: Path) -> ArgosTranslator:
    return ArgosTranslator(argos_dir(models), max_decoding_length=SHORT)


def installed(models: Path) -> list[str]:
    return sorted(p.name for p in argos_dir(models).iterdir() if not p.name.startswith("."))


async def test_install_load_translate(tmp_path: Path, argos_archives: dict[str, Path]) -> None:
    info = install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    assert (info.source, info.target, info.version) == ("en", "es", "1.0")
    eng = engine(tmp_path)
    assert eng.pairs() == {("en", "es")}
    service = TranslationService([eng], registry=CollectorRegistry())
    try:
        result = await service.translate("Where is the city hall?", "en", "es")
    finally:
        await service.aclose()
    assert result.status == "ok", result.detail
    assert result.engine == "argos"
    assert isinstance(result.text, str) and result.text.strip()
    assert eng.calls == 1


def test_reinstall_replaces_package(tmp_path: Path, argos_archives: dict[str, Path]) -> None:
    install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    assert installed(tmp_path) == ["translate-en_es"]


@pytest.fixture
async def served(argos_archives: dict[str, Path]) -> Any:
    """The archives and an Argos-style index, over HTTP on loopback."""

    async def archive(request: web.Request) -> web.StreamResponse:
        path = argos_archives.get(request.match_info["pair"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    async def index(request: web.Request) -> web.Response:
        base = str(request.url.origin())
        entries = [
            {"from_code": "en", "to_code": "es", "type": "translate", "links": [f"{base}/m/en-es"]},
            {"from_code": "en", "to_code": "de", "links": [f"{base}/m/missing"]},
        ]
        return web.json_response(entries)

    app = web.Application()
    app.router.add_get("/m/{pair}", archive)
    app.router.add_get("/index.json", index)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


async def test_install_from_url_shows_progress(
    tmp_path: Path, served: str, capfd: pytest.CaptureFixture[str]
) -> None:
    info = await asyncio.to_thread(install_argos_package, f"{served}/m/en-es", tmp_path, True)
    assert (info.source, info.target) == ("en", "es")
    assert "100%" in capfd.readouterr().err  # tqdm's bar went to stderr
    assert installed(tmp_path) == ["translate-en_es"]
    assert not [p for p in argos_dir(tmp_path).iterdir() if p.name.startswith(".download")]


async def test_install_pair_from_index(tmp_path: Path, served: str) -> None:
    info = await asyncio.to_thread(
        install_argos_pair, "en-es", tmp_path, False, f"{served}/index.json"
    )
    assert info.path == argos_dir(tmp_path) / "translate-en_es"
    with pytest.raises(InstallError, match="no en->ko package"):
        await asyncio.to_thread(
            install_argos_pair, "en-ko", tmp_path, False, f"{served}/index.json"
        )
    with pytest.raises(InstallError, match="no download of en->de worked"):
        await asyncio.to_thread(
            install_argos_pair, "en-de", tmp_path, False, f"{served}/index.json"
        )


def test_offline_errors_say_how_to_install_from_file(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/index.json"  # nobody listens there
    with pytest.raises(InstallError, match=r"(?s)unreachable.*install it from the file"):
        install_argos_pair("en-ko", tmp_path, progress=False, index_url=url)
    with pytest.raises(InstallError, match="cannot download"):
        install_argos_package(url.replace("index.json", "x.argosmodel"), tmp_path, progress=False)


def _zip(path: Path, files: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


@pytest.mark.parametrize(
    ("files", "error"),
    [
        (None, "not an Argos package"),
        ({"pkg/README.md": "hi"}, "no metadata.json"),
        ({"pkg/metadata.json": json.dumps({"type": "sbd", "from_code": "en"})}, "type 'translate'"),
        ({"pkg/metadata.json": json.dumps({"from_code": "en", "to_code": "es"})}, "no CTranslate2"),
        ({"../evil/metadata.json": "{}"}, "unsafe path"),
    ],
)
def test_bad_packages_rejected_and_nothing_left(
    tmp_path: Path, files: dict[str, str] | None, error: str
) -> None:
    src = tmp_path / "bad.argosmodel"
    if files is None:
        src.write_bytes(b"this is not a zip file")
    else:
        _zip(src, files)
    models = tmp_path / "models"
    with pytest.raises(InstallError, match=error):
        install_argos_package(src, models, progress=False)
    assert installed(models) == []
    assert not (tmp_path / "evil").exists()


async def test_pivot_through_english(tmp_path: Path, argos_archives: dict[str, Path]) -> None:
    install_argos_package(argos_archives["xx-en"], tmp_path, progress=False)
    install_argos_package(argos_archives["en-yy"], tmp_path, progress=False)
    eng = engine(tmp_path)
    service = TranslationService([eng], registry=CollectorRegistry())
    try:
        assert service.engine_for("xx", "yy") == "argos via en"
        assert service.engine_for("yy", "xx") is None
        assert service.matrix() == {
            ("xx", "en"): "argos", ("en", "yy"): "argos", ("xx", "yy"): "argos via en",
        }  # fmt: skip
        result = await service.translate("bonjour le monde", "xx", "yy")
    finally:
        await service.aclose()
    assert (result.status, result.engine) == ("ok", "argos via en"), result.detail
    assert result.text.strip()
    assert eng.calls == 2  # one call per leg


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every attempt to resolve a name or open a connection is recorded and refused."""
    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> Any:
        attempts.append(args)
        raise OSError("network access refused by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    yield attempts


async def test_translating_never_touches_the_network(
    tmp_path: Path, argos_archives: dict[str, Path], no_network: list[Any]
) -> None:
    with pytest.raises(OSError):  # the guard itself works
        socket.create_connection(("127.0.0.1", 9))
    no_network.clear()
    install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    eng = engine(tmp_path)
    out = await asyncio.to_thread(eng.translate_batch, ["Hello. How are you today?"], "en", "es")
    assert out[0].strip()
    assert no_network == []


_FRESH_PROCESS = """
import socket, sys
from pathlib import Path
def refuse(*a, **k):
    raise OSError("network access refused")
socket.socket.connect = refuse
socket.getaddrinfo = refuse
from commhub.translate import ArgosTranslator, argos_dir, install_argos_package
models = Path(sys.argv[2])
install_argos_package(sys.argv[1], models, progress=False)
out = ArgosTranslator(argos_dir(models), max_decoding_length=8).translate_batch(
    ["Good morning. Where is the station?"], "en", "es")
print("OK", bool(out[0].strip()))
"""


def test_fresh_process_no_network_and_home_untouched(
    tmp_path: Path, argos_archives: dict[str, Path]
) -> None:
    """A new interpreter imports argostranslate here: nothing may go to $HOME or the network."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "ARGOS_"))}
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", _FRESH_PROCESS, str(argos_archives["en-es"]), str(tmp_path / "m")],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "OK True"
    assert list(home.iterdir()) == []


async def test_concurrent_requests_share_engine_calls(
    tmp_path: Path, argos_archives: dict[str, Path]
) -> None:
    install_argos_package(argos_archives["en-es"], tmp_path, progress=False)
    texts = [f"caption number {i} for the room" for i in range(16)]

    async def run(max_batch: int | None) -> tuple[int, float, float]:
        eng = engine(tmp_path)
        service = TranslationService([eng], registry=CollectorRegistry(), max_batch=max_batch)
        try:
            results = await asyncio.gather(*(service.translate(t, "en", "es") for t in texts))
        finally:
            await service.aclose()
        assert all(r.status == "ok" and r.text.strip() for r in results)
        registry = service.metrics.registry
        calls = registry.get_sample_value(
            "commhub_translation_engine_calls_total", {"engine": "argos"}
        )
        sizes = registry.get_sample_value("commhub_translation_batch_size_sum", {"engine": "argos"})
        assert calls == eng.calls
        return eng.calls, float(calls or 0), float(sizes or 0)

    batched, _, texts_sent = await run(None)
    assert batched < len(texts) and texts_sent == len(texts)
    unbatched, _, _ = await run(1)
    assert unbatched == len(texts)
