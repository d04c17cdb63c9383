"""The one downloader and the one safe unzip, on real files and a real HTTP server on loopback."""

from __future__ import annotations

import hashlib
import stat
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from commhub import installers
from commhub.download import InstallError, download, safe_unzip

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB, more than one read chunk


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/whole":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
        elif self.path == "/short":  # announces the payload, sends half of it and hangs up
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2])
            self.wfile.flush()
            self.close_connection = True
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_download_whole_with_checksum_renames_into_place(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "d" / "model.zip"
    digest = download(f"{server}/whole", dest, sha256=hashlib.sha256(PAYLOAD).hexdigest(),
                      progress=False)  # fmt: skip
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["model.zip"]  # no .part left


def test_length_mismatch_leaves_no_file(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.zip"
    with pytest.raises(InstallError, match=rf"stopped at {len(PAYLOAD) // 2} of {len(PAYLOAD)}"):
        download(f"{server}/short", dest, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_sha_mismatch_leaves_no_file_and_keeps_the_old_one(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "model.zip"
    dest.write_bytes(b"the installed one")
    with pytest.raises(InstallError, match="sha256 mismatch: expected 0000"):
        download(f"{server}/whole", dest, sha256="0" * 64, progress=False)
    assert [p.name for p in tmp_path.iterdir()] == ["model.zip"]
    assert dest.read_bytes() == b"the installed one"  # replaced only when verified


def test_http_error_and_refused_connection_leave_no_file(server: str, tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="HTTP 404"):
        download(f"{server}/absent", tmp_path / "x", progress=False)
    with pytest.raises(InstallError, match="unreachable"):
        download("http://127.0.0.1:1/x", tmp_path / "x", progress=False)
    assert list(tmp_path.iterdir()) == []


def _zip_with(path: Path, info: zipfile.ZipInfo, data: str = "x") -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("ok/fine.txt", "fine")
        zf.writestr(info, data)
    return path


def _symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (zipfile.ZipInfo("../../slipped.txt"), "path escaping the archive"),
        (zipfile.ZipInfo("ok/../../slipped.txt"), "path escaping the archive"),
        (zipfile.ZipInfo("..\\..\\slipped.txt"), "path escaping the archive"),
        (zipfile.ZipInfo("/tmp/absolute.txt"), "absolute path"),
        (zipfile.ZipInfo("C:/absolute.txt"), "absolute path"),
        (_symlink("ok/link", "/etc/passwd"), "symlink"),
    ],
)
def test_unsafe_archives_are_refused_before_anything_is_written(
    tmp_path: Path, member: zipfile.ZipInfo, why: str
) -> None:
    archive = _zip_with(tmp_path / "evil.zip", member, "/etc/passwd")
    out = tmp_path / "out" / "inner"
    out.mkdir(parents=True)
    with pytest.raises(InstallError, match=rf"evil.zip: unsafe path in archive \({why}\)"):
        safe_unzip(archive, out)
    assert list(out.iterdir()) == []  # not even the harmless member
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.zip", "out"]


def test_safe_unzip_unpacks_a_plain_archive(tmp_path: Path) -> None:
    archive = tmp_path / "good.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("pkg/a.txt", "a")
        zf.writestr("pkg/sub/b.txt", "b")
    safe_unzip(archive, tmp_path / "out")
    assert (tmp_path / "out/pkg/sub/b.txt").read_text() == "b"
    (tmp_path / "bad.zip").write_bytes(b"PK not a zip")
    with pytest.raises(InstallError, match=r"bad\.zip is not a zip archive"):
        safe_unzip(tmp_path / "bad.zip", tmp_path / "out2")


def test_spec_registry_dispatches_and_explains(tmp_path: Path) -> None:
    assert {"argos", "apertium", "defaults", "vosk"} <= set(installers.spec_kinds())
    seen: list[installers.InstallRequest] = []

    def fake(req: installers.InstallRequest) -> list[str]:
        seen.append(req)
        return [f"got {req.target}"]

    installers.register_spec("testkind", fake)
    try:
        assert installers.install_spec("testkind:a:b", tmp_path, force=True) == ["got a:b"]
        assert seen[0].force and seen[0].models_dir == tmp_path
    finally:
        installers._SPECS.pop("testkind")
    with pytest.raises(InstallError, match="vosk: needs something after the colon"):
        installers.install_spec("vosk:", tmp_path)
    with pytest.raises(InstallError, match="no such file"):
        installers.install_spec("argos:/no/such.argosmodel", tmp_path)
    with pytest.raises(InstallError, match="no model 'klingon'"):
        installers.install_spec("klingon", tmp_path)
