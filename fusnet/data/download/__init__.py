"""Fetch the official dataset files, verify their checksums, and extract them safely.

``download_dataset(name, root)`` fetches a dataset's files into ``root`` (or a sub-folder),
verifies and extracts them, and returns the dataset's folder, a root for
:func:`fusnet.data.build_dataset`.

* Downloads resume (``<file>.part``, ``Range: bytes=N-``; a server ignoring it restarts the
  file); a finished file is checked (size, MD5 and/or SHA-256) before it gets its name,
  and deleted if it fails.
* Extraction refuses members or links that would land outside the destination, absolute
  paths and special files, naming the archive and the member.
* ``ROOT/.fusnet-download-<name>.json`` marks a finished dataset: the next call returns
  at once. ``force=True`` checks the files present again (fetching only missing or bad
  ones) and re-extracts.
* Offline, a DownloadError names the URL and says where to put the files by hand
  (:func:`manual_instructions`); files placed so are verified and extracted next time.
* ``base_url_override`` or ``$FUSNET_DOWNLOAD_MIRROR`` (``http://mirror.lan/fusnet``)
  replaces the scheme and host of every URL.

Every file has a checksum confirmed from public code (MD5s from torchvision and other
loaders, SHA-256s and sizes from TensorFlow Datasets), none made up; one without would
be used with a loud "NOT VERIFIED" warning. FGVC-Aircraft keeps only the widely used MD5
(public code disagrees); CUB-200-2011 has no size (TFDS lists a Google Drive copy's).
NABirds and VegFru have no unauthenticated download: asking for them raises a
DownloadError holding the manual instructions.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from fusnet.data.download._extract import extract_archive
from fusnet.data.download._fetch import download_file, verify_file
from fusnet.data.download._sources import (
    DOWNLOADS,
    MIRROR_ENV,
    DatasetSource,
    RemoteFile,
    _layout,
    _source,
    available_downloads,
    manual_instructions,
    mirror_url,
)
from fusnet.errors import DownloadError
from fusnet.runtime import write_json

logger = logging.getLogger(__name__)

_MARKER = ".fusnet-download-{name}.json"


def _marker_record(src: DatasetSource) -> dict[str, dict[str, str | int | None]]:
    return {
        f.name: {"url": f.url, "md5": f.md5, "sha256": f.sha256, "size": f.size} for f in src.files
    }


def _is_done(src: DatasetSource, root: Path) -> bool:
    marker = root / _MARKER.format(name=src.name)
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if record.get("files") != _marker_record(src):
        logger.info("%s was made for other files; downloading again", marker)
        return False
    missing = [p for p in src.expected if not (root / p).exists()]
    if missing:
        logger.info("%s says done but %s is missing; downloading again", marker, root / missing[0])
        return False
    return True


def _write_marker(src: DatasetSource, root: Path) -> None:
    write_json(root / _MARKER.format(name=src.name), {
        "dataset": src.name, "files": _marker_record(src),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    })


def download_dataset(
    name: str,
    root: Path,
    *,
    force: bool = False,
    timeout: float = 60.0,
    base_url_override: str | None = None,
) -> Path:
    """Download, verify and extract dataset ``name``'s official files under ``root`` (made if
    missing; datasets may share one) and return the dataset's folder (module docstring for
    ``force`` and ``base_url_override``; ``timeout``: seconds for a connection and a read).

    Raises:
        DownloadError: no direct download, a file cannot be fetched (the message says
            where to put the files by hand), fails its checksum, or an unsafe archive.
    """
    src = _source(name)
    root = Path(root).expanduser()
    if src.manual is not None:
        raise DownloadError(
            f"dataset {src.name!r} cannot be downloaded automatically.\n"
            f"{manual_instructions(src.name, root)}"
        )
    top = root / src.top
    if not force and _is_done(src, root):
        logger.info("%s is already downloaded and extracted under %s", src.name, root)
        return top
    mirror = base_url_override if base_url_override is not None else os.environ.get(MIRROR_ENV)
    dest_dir = root / src.subdir if src.subdir else root
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {dest_dir}: {exc}") from exc
    for remote in src.files:
        url = mirror_url(remote.url, mirror)
        try:
            path = download_file(url, dest_dir / remote.name, remote=remote, timeout=timeout)
        except DownloadError as exc:
            raise DownloadError(
                f"{exc}\n\nTo install {src.name} by hand:\n{manual_instructions(src.name, root)}"
            ) from exc
        if remote.extract:
            extract_archive(path, dest_dir)
    missing = [root / p for p in src.expected if not (root / p).exists()]
    if missing:
        raise DownloadError(
            f"{src.name}: the files were downloaded and extracted but {missing[0]} is missing; "
            f"the archives' layout differs from the expected one:\n{_layout(src, str(root))}"
        )
    _write_marker(src, root)
    logger.info("%s is ready under %s", src.name, top)
    return top


__all__ = [
    "DOWNLOADS",
    "MIRROR_ENV",
    "DatasetSource",
    "RemoteFile",
    "available_downloads",
    "download_dataset",
    "download_file",
    "extract_archive",
    "manual_instructions",
    "mirror_url",
    "verify_file",
]
