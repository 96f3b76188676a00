"""Tests of fusnet.data.download against an HTTP server started on 127.0.0.1.

Nothing here goes online: the official URLs are redirected to the local server with
``base_url_override`` / ``$FUSNET_DOWNLOAD_MIRROR``, and a test-only registry entry
(``tiny``) carries the checksums of a small generated archive.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import random
import re
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fusnet.data import download as dl
from fusnet.data.download import (
    DOWNLOADS,
    MIRROR_ENV,
    DatasetSource,
    RemoteFile,
    available_downloads,
    download_dataset,
    download_file,
    extract_archive,
    manual_instructions,
    mirror_url,
)
from fusnet.errors import DownloadError

ARCHIVE_PATH = "/files/v1/tiny.tar.gz"
LABELS_PATH = "/files/v1/labels.mat"
OFFICIAL = "https://datasets.example.invalid"


# ---------------------------------------------------------------------------- server


@dataclass
class ServerState:
    """What the test server serves and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    ignore_range: bool = False
    cut_after: int | None = None  # send only this many body bytes once, then hang up


class _Handler(BaseHTTPRequestHandler):
    timeout = 5  # seconds a connection may idle

    def do_GET(self) -> None:
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        path = urlsplit(self.path).path
        requested = self.headers.get("Range")
        state.requests.append((path, requested))
        data = state.files.get(path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", requested or "")
        if match and not state.ignore_range:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if state.cut_after is not None:
            self.wfile.write(body[: state.cut_after])
            state.cut_after = None
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # silence stderr
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, ServerState]]:
    """A threaded HTTP server on 127.0.0.1; shut down after the test (or after 60 s)."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = ServerState()
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    watchdog = threading.Timer(60.0, httpd.shutdown)  # bounded even if teardown never runs
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# ---------------------------------------------------------------------------- fixtures


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class Tiny:
    """A test-only dataset laid out like CUB: ``tiny/images.txt``, ``tiny/images/...``."""

    archive: bytes
    labels: bytes


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, server: tuple[str, ServerState]) -> Tiny:
    """Register a ``tiny`` dataset whose files the server holds, with their checksums."""
    _, state = server
    rng_bytes = random.Random(0).randbytes(128 * 1024)  # incompressible: archive > 128 KiB
    archive = _tar_gz(
        {
            "tiny/images.txt": b"1 001.Foo/a.jpg\n2 002.Bar/b.jpg\n",
            "tiny/images/001.Foo/a.jpg": rng_bytes,
            "tiny/images/002.Bar/b.jpg": b"\xff\xd8fake jpeg\xff\xd9",
        }
    )
    labels = b"MATLAB 5.0 MAT-file, fake labels" * 10
    state.files[ARCHIVE_PATH] = archive
    state.files[LABELS_PATH] = labels
    source = DatasetSource(
        name="tiny",
        title="Tiny test dataset",
        homepage=f"{OFFICIAL}/tiny/",
        subdir="",
        top="tiny",
        expected=("tiny/images.txt", "tiny/images/001.Foo/a.jpg", "labels.mat"),
        files=(
            RemoteFile(
                OFFICIAL + ARCHIVE_PATH,
                md5=hashlib.md5(archive).hexdigest(),
                extract=True,
            ),
            RemoteFile(
                OFFICIAL + LABELS_PATH + "?download=1",
                filename="labels.mat",
                sha256=hashlib.sha256(labels).hexdigest(),
                size=len(labels),
            ),
        ),
    )
    monkeypatch.setitem(DOWNLOADS, "tiny", source)
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    return Tiny(archive, labels)


def _files_outside(tmp_path: Path, root: Path) -> list[Path]:
    return [p for p in tmp_path.rglob("*") if root not in p.parents and p != root]


# ---------------------------------------------------------------------------- registry


def test_registry_has_sources_and_checksums() -> None:
    assert set(available_downloads()) == {
        "cub200",
        "aircraft",
        "food101",
        "flowers17",
        "flowers102",
        "stanford_dogs",
    }
    for name, src in DOWNLOADS.items():
        assert src.name == name
        text = manual_instructions(name, "/data")
        for path in src.expected:
            assert f"/data/{path}" in text
        if src.manual is not None:
            assert not src.files
            continue
        for remote in src.files:
            assert remote.url.startswith(("http://", "https://"))
            assert remote.verified, f"{remote.url} has no checksum"
            assert remote.md5 is None or re.fullmatch(r"[0-9a-f]{32}", remote.md5)
            assert remote.sha256 is None or re.fullmatch(r"[0-9a-f]{64}", remote.sha256)
            assert remote.name in text
    assert DOWNLOADS["cub200"].files[0].md5 == "97eceeb196236b17998738112f37df78"
    assert DOWNLOADS["cub200"].files[0].name == "CUB_200_2011.tgz"


def test_mirror_url_replaces_scheme_and_host() -> None:
    url = "https://data.caltech.edu/records/x/files/CUB_200_2011.tgz?download=1"
    assert mirror_url(url, None) == url
    assert mirror_url(url, "http://127.0.0.1:81") == (
        "http://127.0.0.1:81/records/x/files/CUB_200_2011.tgz?download=1"
    )
    assert mirror_url(url, "http://m.lan/pre/") == (
        "http://m.lan/pre/records/x/files/CUB_200_2011.tgz?download=1"
    )
    with pytest.raises(DownloadError, match="mirror"):
        mirror_url(url, "not a url")


def test_unknown_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="cub200"):
        download_dataset("no_such_set", tmp_path)


@pytest.mark.parametrize(
    ("name", "where"),
    [("nabirds", "dl.allaboutbirds.org/nabirds"), ("vegfru", "github.com/ustc-vim/vegfru")],
)
def test_manual_only_datasets_raise_instructions(tmp_path: Path, name: str, where: str) -> None:
    with pytest.raises(DownloadError) as info:
        download_dataset(name, tmp_path)
    message = str(info.value)
    assert where in message
    for path in DOWNLOADS[name].expected:
        assert str(tmp_path / path) in message or f"{tmp_path}/{path}" in message
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- downloads


def test_download_verify_extract_and_idempotent(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny
) -> None:
    url, state = server
    root = tmp_path / "root"
    top = download_dataset("tiny", root, timeout=5, base_url_override=url)
    assert top == root / "tiny"
    assert (top / "images.txt").read_bytes().startswith(b"1 001.Foo/a.jpg")
    assert (top / "images" / "002.Bar" / "b.jpg").read_bytes() == b"\xff\xd8fake jpeg\xff\xd9"
    assert (root / "tiny.tar.gz").read_bytes() == tiny.archive
    assert (root / "labels.mat").read_bytes() == tiny.labels
    assert not list(root.glob("*.part"))
    assert (root / ".fusnet-download-tiny.json").is_file()
    assert state.requests == [(ARCHIVE_PATH, None), (LABELS_PATH, None)]

    # Done: no request, nothing changes.
    assert download_dataset("tiny", root, timeout=5, base_url_override=url) == top
    assert len(state.requests) == 2

    # force: files present are re-verified (not fetched) and extracted again.
    (top / "images.txt").unlink()
    download_dataset("tiny", root, force=True, timeout=5, base_url_override=url)
    assert (top / "images.txt").is_file()
    assert len(state.requests) == 2


def test_resume_partial_download_with_range(
    tmp_path: Path,
    server: tuple[str, ServerState],
    tiny: Tiny,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, state = server
    monkeypatch.setenv(MIRROR_ENV, url)  # the environment variable works like the argument
    root = tmp_path / "root"
    root.mkdir()
    half = len(tiny.archive) // 2
    (root / "tiny.tar.gz.part").write_bytes(tiny.archive[:half])
    download_dataset("tiny", root, timeout=5)
    assert (ARCHIVE_PATH, f"bytes={half}-") in state.requests
    assert (root / "tiny.tar.gz").read_bytes() == tiny.archive
    assert not (root / "tiny.tar.gz.part").exists()


def test_server_ignoring_range_restarts_cleanly(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny
) -> None:
    url, state = server
    state.ignore_range = True
    root = tmp_path / "root"
    root.mkdir()
    garbage = b"garbage that must not survive" * 100
    (root / "tiny.tar.gz.part").write_bytes(garbage)
    download_dataset("tiny", root, timeout=5, base_url_override=url)
    assert state.requests[0] == (ARCHIVE_PATH, f"bytes={len(garbage)}-")
    assert (root / "tiny.tar.gz").read_bytes() == tiny.archive
    assert (root / "tiny" / "images.txt").is_file()


@pytest.mark.parametrize("extra", [0, 7])
def test_complete_or_oversized_partial_file(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny, extra: int
) -> None:
    """A .part already complete (416, Content-Range */N == N) is kept; a longer one restarts."""
    url, state = server
    root = tmp_path / "root"
    root.mkdir()
    (root / "tiny.tar.gz.part").write_bytes(tiny.archive + b"x" * extra)
    download_dataset("tiny", root, timeout=5, base_url_override=url)
    archive_requests = [r for r in state.requests if r[0] == ARCHIVE_PATH]
    offset = len(tiny.archive) + extra
    expected = [(ARCHIVE_PATH, f"bytes={offset}-")] + ([(ARCHIVE_PATH, None)] if extra else [])
    assert archive_requests == expected
    assert (root / "tiny.tar.gz").read_bytes() == tiny.archive


def test_broken_transfer_is_resumed(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny
) -> None:
    url, state = server
    state.cut_after = 40_000
    root = tmp_path / "root"
    download_dataset("tiny", root, timeout=5, base_url_override=url)
    assert len(tiny.archive) > 100_000
    assert state.requests[:2] == [(ARCHIVE_PATH, None), (ARCHIVE_PATH, "bytes=40000-")]
    assert (root / "tiny.tar.gz").read_bytes() == tiny.archive


def test_checksum_mismatch_removes_the_file(
    tmp_path: Path,
    server: tuple[str, ServerState],
    tiny: Tiny,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url, _ = server
    src = DOWNLOADS["tiny"]
    bad = RemoteFile(src.files[0].url, md5="0" * 32, extract=True)
    monkeypatch.setitem(DOWNLOADS, "tiny", DatasetSource(**{**src.__dict__, "files": (bad,)}))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="md5 mismatch") as info:
        download_dataset("tiny", root, timeout=5, base_url_override=url)
    assert "tiny.tar.gz" in str(info.value)
    assert not (root / "tiny.tar.gz").exists()
    assert not (root / "tiny.tar.gz.part").exists()
    assert not (root / "tiny").exists()
    assert not (root / ".fusnet-download-tiny.json").exists()


def test_corrupt_existing_file_is_fetched_again(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny
) -> None:
    url, state = server
    root = tmp_path / "root"
    root.mkdir()
    (root / "labels.mat").write_bytes(b"x" * len(tiny.labels))  # right size, wrong content
    download_dataset("tiny", root, timeout=5, base_url_override=url)
    assert (root / "labels.mat").read_bytes() == tiny.labels
    assert (LABELS_PATH, None) in state.requests


def test_http_error_names_the_url(
    tmp_path: Path, server: tuple[str, ServerState], tiny: Tiny
) -> None:
    url, state = server
    del state.files[LABELS_PATH]
    with pytest.raises(DownloadError, match=r"HTTP 404") as info:
        download_dataset("tiny", tmp_path / "root", timeout=5, base_url_override=url)
    assert f"{url}{LABELS_PATH}" in str(info.value)


def test_unreachable_host_gives_manual_instructions(tmp_path: Path, tiny: Tiny) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    mirror = f"http://127.0.0.1:{port}"
    root = tmp_path / "root"
    with pytest.raises(DownloadError) as info:
        download_dataset("tiny", root, timeout=5, base_url_override=mirror)
    message = str(info.value)
    assert f"{mirror}{ARCHIVE_PATH}" in message
    assert "refused" in message
    assert f"{root}/tiny/images.txt" in message  # the layout to make by hand
    assert OFFICIAL + ARCHIVE_PATH in message  # where to get the file
    assert not (root / ".fusnet-download-tiny.json").exists()


def test_unverified_file_logs_a_warning(
    tmp_path: Path, server: tuple[str, ServerState], caplog: pytest.LogCaptureFixture
) -> None:
    url, state = server
    state.files["/plain.bin"] = b"abc" * 10
    with caplog.at_level(logging.WARNING, logger=dl.__name__):
        path = download_file(f"{url}/plain.bin", tmp_path / "plain.bin", timeout=5)
    assert path.read_bytes() == b"abc" * 10
    assert "NOT VERIFIED" in caplog.text


# ---------------------------------------------------------------------------- extraction


def _evil_tar(kind: str, outside: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("tiny/images.txt")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"ok"))
        if kind == "symlink":
            link = tarfile.TarInfo("tiny/link")
            link.type = tarfile.SYMTYPE
            link.linkname = "../../outside"
            tar.addfile(link)
            name = "tiny/link/evil.txt"
        else:
            name = {"dotdot": "../evil.txt", "absolute": str(outside / "evil.txt")}[kind]
        evil = tarfile.TarInfo(name)
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    return buf.getvalue()


@pytest.mark.parametrize(
    ("kind", "member"),
    [("dotdot", "../evil.txt"), ("absolute", "evil.txt"), ("symlink", "tiny/link")],
)
def test_unsafe_archive_is_refused(
    tmp_path: Path,
    server: tuple[str, ServerState],
    tiny: Tiny,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    member: str,
) -> None:
    url, state = server
    outside = tmp_path / "outside"
    outside.mkdir()
    evil = _evil_tar(kind, outside)
    state.files[ARCHIVE_PATH] = evil
    src = DOWNLOADS["tiny"]
    remote = RemoteFile(src.files[0].url, md5=hashlib.md5(evil).hexdigest(), extract=True)
    monkeypatch.setitem(DOWNLOADS, "tiny", DatasetSource(**{**src.__dict__, "files": (remote,)}))
    root = tmp_path / "root"
    with pytest.raises(DownloadError, match="refusing to extract") as info:
        download_dataset("tiny", root, timeout=5, base_url_override=url)
    message = str(info.value)
    assert "tiny.tar.gz" in message and member in message
    assert _files_outside(tmp_path, root) == [outside]
    assert not (root / ".fusnet-download-tiny.json").exists()


def test_zip_extraction_checks_members(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as zf:
        zf.writestr("top/a.txt", "a")
    assert extract_archive(good, tmp_path / "out") == 1
    assert (tmp_path / "out" / "top" / "a.txt").read_text() == "a"

    for i, name in enumerate(["../evil.txt", "/abs/evil.txt", "top/../../evil.txt"]):
        bad = tmp_path / f"bad{i}.zip"
        with zipfile.ZipFile(bad, "w") as zf:
            zf.writestr("top/b.txt", "b")
            zf.writestr(zipfile.ZipInfo(name), "evil")
        dest = tmp_path / f"dest{i}"
        with pytest.raises(DownloadError, match=re.escape(repr(name))) as info:
            extract_archive(bad, dest)
        assert bad.name in str(info.value)
        assert not dest.exists() or not any(dest.rglob("*"))  # checked before writing
    assert not (tmp_path / "evil.txt").exists()

    link_zip = tmp_path / "link.zip"
    with zipfile.ZipFile(link_zip, "w") as zf:
        info_link = zipfile.ZipInfo("top/link")
        info_link.external_attr = (0o120777 << 16) | 0
        zf.writestr(info_link, "../../..")
    with pytest.raises(DownloadError, match="outside"):
        extract_archive(link_zip, tmp_path / "dest_link")
    assert not os.path.lexists(tmp_path / "dest_link" / "top" / "link")
