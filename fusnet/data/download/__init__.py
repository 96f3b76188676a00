"""Fetch the official dataset files, verify their checksums, and extract them safely.

``download_dataset(name, root)`` downloads each file of a dataset from its official
source into ``root`` (or a sub-folder of it), verifies it, extracts the archives, and
returns the dataset's folder, which :func:`fusnet.data.build_dataset` accepts as root.

* Downloads resume: bytes go to ``<file>.part``; a later run asks the server for the
  rest with ``Range: bytes=N-`` (a server that ignores it and answers 200 restarts the
  file from byte 0). A finished file is checked (size, MD5 and/or SHA-256) and only
  then renamed to its final name; a file that fails the check is deleted.
* Extraction refuses absolute member paths, members or links that would land outside
  the destination and special files (tarfile's ``filter="data"``, for zip members too),
  raising :class:`~fusnet.errors.DownloadError` naming the archive and the member.
* A marker file ``ROOT/.fusnet-download-<name>.json`` records a finished dataset; the
  next call returns at once. ``force=True`` ignores it: files already present are
  checked again (and fetched again only if missing or bad) and re-extracted.
* No internet: every network failure raises a DownloadError naming the URL and
  saying where to put the files by hand (:func:`manual_instructions`). Files placed
  by hand under their final name are verified and extracted on the next call.
* ``base_url_override`` or the ``FUSNET_DOWNLOAD_MIRROR`` environment variable
  (e.g. ``http://mirror.lan/fusnet``) replaces the scheme and host of every URL; the
  official path is appended to it.

Every file has at least one checksum confirmed from public code (MD5s from torchvision
and other loaders, SHA-256s and sizes from TensorFlow Datasets); none is made up. An
entry without one would be used with a loud "NOT VERIFIED" warning. FGVC-Aircraft:
public code disagrees, so only the widely used MD5 is kept (if Oxford republishes the
archive, the check fails and says how to proceed). CUB-200-2011 has no size (the one
TFDS lists is for a Google Drive copy).

NABirds (terms must be accepted at https://dl.allaboutbirds.org/nabirds) and VegFru
(the authors' Baidu Pan / project page) have no unauthenticated download: asking for
them raises a DownloadError holding the manual instructions.
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
    """Download, verify and extract a dataset's official files under ``root``.

    Args:
        name: dataset name (:func:`available_downloads`; NABirds and VegFru are manual).
        root: folder to put the dataset in (created if missing; datasets may share one).
        force: ignore the "done" marker (module docstring).
        timeout: seconds to wait for a connection and for each read.
        base_url_override: mirror replacing the scheme and host of the official URLs
            (default: ``$FUSNET_DOWNLOAD_MIRROR``, else the official hosts).

    Returns:
        The dataset's folder (``root/CUB_200_2011``, ...), a root for ``build_dataset``.

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
