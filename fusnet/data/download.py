"""Fetch the official dataset files, verify their checksums, and extract them safely.

``download_dataset(name, root)`` downloads each file of a dataset from its official
source into ``root`` (or a sub-folder of it), verifies it, extracts the archives, and
returns the dataset's folder, which :func:`fusnet.data.build_dataset` accepts as root.

* Downloads resume: bytes go to ``<file>.part``; a later run asks the server for the
  rest with ``Range: bytes=N-`` (a server that ignores it and answers 200 restarts the
  file from byte 0). A finished file is checked (size, MD5 and/or SHA-256) and only
  then renamed to its final name; a file that fails the check is deleted.
* Extraction refuses absolute member paths, ``..`` components, links that point
  outside the destination and special files (tar: our own checks, then
  ``filter="data"`` where Python has it; zip: our own checks), raising
  :class:`~fusnet.errors.DownloadError` naming the archive and the member.
* A marker file ``ROOT/.fusnet-download-<name>.json`` records a finished dataset; the
  next call returns at once. ``force=True`` ignores it: files already present are
  checked again (and fetched again only if missing or bad) and re-extracted.
* No internet: every network failure raises a DownloadError naming the URL and
  saying where to put the files by hand (:func:`manual_instructions`). Files placed
  by hand under their final name are verified and extracted on the next call.
* ``base_url_override`` or the ``FUSNET_DOWNLOAD_MIRROR`` environment variable
  (e.g. ``http://mirror.lan/fusnet``) replaces the scheme and host of every URL; the
  official path is appended to it.

Sources and checksums (confirmed from public code; never made up):

============= ========================================================== ===========================
dataset       files (official host)                                      checksum confirmed from
============= ========================================================== ===========================
cub200        ``CUB_200_2011.tgz`` (data.caltech.edu, CaltechDATA)       MD5: many CUB loaders
                                                                         (TDeVries/cub2011-style,
                                                                         avalanche, ...)
aircraft      ``fgvc-aircraft-2013b.tar.gz`` (www.robots.ox.ac.uk)       MD5: R torchvision, Google
                                                                         dataset catalogues, scripts
food101       ``food-101.tar.gz`` (data.vision.ee.ethz.ch)               MD5: torchvision;
                                                                         SHA-256 + size: TFDS
flowers17     ``17flowers.tgz``, ``datasplits.mat`` (robots.ox.ac.uk)    MD5: several Flowers17
                                                                         loaders and catalogues
flowers102    ``102flowers.tgz``, ``imagelabels.mat``, ``setid.mat``     MD5: torchvision;
                                                                         SHA-256 + size: TFDS
stanford_dogs ``images.tar``, ``lists.tar`` (vision.stanford.edu)        SHA-256 + size: TFDS
============= ========================================================== ===========================

Notes on the checksums:

* FGVC-Aircraft: public code disagrees. The MD5 ``d4acdd33...`` is the one used by most
  loaders (and paired by one script with the SHA-256 ``e4e323d4...`` and size
  2,753,340,328 of the archive served today); TensorFlow Datasets lists an older
  SHA-256 (``d5f68b1b...``, 2,770,575,360 bytes) and one script quotes a "legacy" MD5
  from the Oxford page. We keep only the widely confirmed MD5. If Oxford republishes
  the archive, the check fails loudly (the error says how to proceed).
* CUB-200-2011: no size is stored (the size TFDS lists is for a Google Drive copy).
* Every file has at least one confirmed checksum. Should an entry ever hold none,
  the download logs a loud warning that the file is NOT verified.

NABirds (terms must be accepted at https://dl.allaboutbirds.org/nabirds) and VegFru
(the authors' Baidu Pan / project page) have no unauthenticated download: asking for
them raises a DownloadError holding the manual instructions.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import socket
import stat
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from tqdm import tqdm

from fusnet.errors import DownloadError

logger = logging.getLogger(__name__)

MIRROR_ENV = "FUSNET_DOWNLOAD_MIRROR"
"""Environment variable naming a mirror that replaces the scheme and host of every URL."""

USER_AGENT = "fusnet-download/1.0 (Python urllib)"
_CHUNK = 1 << 20
_RETRIES = 3  # extra attempts after a transfer broke off having made progress
_MARKER = ".fusnet-download-{name}.json"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset's official download.

    Attributes:
        url: official URL.
        filename: name to save it under (default: the last component of the URL path).
        md5: published MD5 hex digest, or None when not confirmed.
        sha256: published SHA-256 hex digest, or None when not confirmed.
        size: size in bytes, or None when not confirmed.
        extract: whether the file is an archive to extract.
    """

    url: str
    filename: str | None = None
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None
    extract: bool = False

    @property
    def name(self) -> str:
        """The local file name."""
        return self.filename or PurePosixPath(urllib.parse.urlsplit(self.url).path).name

    @property
    def verified(self) -> bool:
        """Whether the file has a checksum to verify against."""
        return self.md5 is not None or self.sha256 is not None

    def describe(self) -> str:
        """One line naming the URL and its checksums, for instructions."""
        sums = [f"md5 {self.md5}"] if self.md5 else []
        sums += [f"sha256 {self.sha256}"] if self.sha256 else []
        sums += [f"{self.size:,} bytes"] if self.size is not None else []
        extra = f" ({', '.join(sums)})" if sums else " (no published checksum)"
        return f"{self.url} -> {self.name}{extra}"


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and how it lies under ``root`` once extracted.

    Attributes:
        name: registry name (as in :data:`fusnet.data.DATASETS`).
        title: human-readable name.
        homepage: the dataset's official page.
        subdir: folder under ``root`` that receives the files and their extraction
            (``""``: ``root`` itself, for archives that hold their own top folder).
        top: folder under ``root`` holding the dataset once extracted (returned by
            :func:`download_dataset`).
        expected: paths under ``root`` that exist once the dataset is in place.
        files: the files to fetch; empty for manual-only datasets.
        manual: how to get a dataset that has no direct download (None otherwise).
    """

    name: str
    title: str
    homepage: str
    subdir: str
    top: str
    expected: tuple[str, ...]
    files: tuple[RemoteFile, ...] = ()
    manual: str | None = None


_OXFORD = "https://www.robots.ox.ac.uk/~vgg/data"
_DOGS = "http://vision.stanford.edu/aditya86/ImageNetDogs"

DOWNLOADS: dict[str, DatasetSource] = {
    "cub200": DatasetSource(
        name="cub200",
        title="Caltech-UCSD Birds-200-2011",
        homepage="https://www.vision.caltech.edu/datasets/cub_200_2011/",
        subdir="",
        top="CUB_200_2011",
        expected=(
            "CUB_200_2011/images.txt",
            "CUB_200_2011/train_test_split.txt",
            "CUB_200_2011/images",
        ),
        files=(
            RemoteFile(
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                filename="CUB_200_2011.tgz",
                md5="97eceeb196236b17998738112f37df78",
                extract=True,
            ),
        ),
    ),
    "aircraft": DatasetSource(
        name="aircraft",
        title="FGVC-Aircraft 2013b",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/",
        subdir="",
        top="fgvc-aircraft-2013b",
        expected=("fgvc-aircraft-2013b/data/images", "fgvc-aircraft-2013b/data/variants.txt"),
        files=(
            RemoteFile(
                f"{_OXFORD}/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",
                md5="d4acdd33327262359767eeaa97a4f732",
                extract=True,
            ),
        ),
    ),
    "food101": DatasetSource(
        name="food101",
        title="Food-101",
        homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
        subdir="",
        top="food-101",
        expected=("food-101/meta/classes.txt", "food-101/meta/train.txt", "food-101/images"),
        files=(
            RemoteFile(
                "http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",
                md5="85eeb15f3717b99a5da872d97d918f87",
                sha256="d97d15e438b7f4498f96086a4f7e2fa42a32f2712e87d3295441b2b6314053a4",
                size=4996278331,
                extract=True,
            ),
        ),
    ),
    "flowers17": DatasetSource(
        name="flowers17",
        title="Oxford 17 Category Flower Dataset",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/17/",
        subdir="flowers17",
        top="flowers17",
        expected=("flowers17/jpg/files.txt", "flowers17/datasplits.mat"),
        files=(
            RemoteFile(
                f"{_OXFORD}/flowers/17/17flowers.tgz",
                md5="b59a65d8d1a99cd66944d474e1289eab",
                extract=True,
            ),
            RemoteFile(
                f"{_OXFORD}/flowers/17/datasplits.mat", md5="4828cddfd0d803c5abbdebcb1e148a1e"
            ),
        ),
    ),
    "flowers102": DatasetSource(
        name="flowers102",
        title="Oxford 102 Category Flower Dataset",
        homepage="https://www.robots.ox.ac.uk/~vgg/data/flowers/102/",
        subdir="flowers102",
        top="flowers102",
        expected=("flowers102/jpg", "flowers102/imagelabels.mat", "flowers102/setid.mat"),
        files=(
            RemoteFile(
                f"{_OXFORD}/flowers/102/102flowers.tgz",
                md5="52808999861908f626f3c1f4e79d11fa",
                sha256="2d01ecc807db462958cfe3d92f57a8c252b4abd240eb955770201e45f783b246",
                size=344862509,
                extract=True,
            ),
            RemoteFile(
                f"{_OXFORD}/flowers/102/imagelabels.mat",
                md5="e0620be6f572b9609742df49c70aed4d",
                sha256="4903e94206bac23bf772aadf06451916df56b58fc483a62db32a97b82656651d",
                size=502,
            ),
            RemoteFile(
                f"{_OXFORD}/flowers/102/setid.mat",
                md5="a5357ecc9cb78c4bef273ce3793fc85c",
                sha256="46b8678f91fd95d3c8f4feab80d271a6c834a1dd896fe29fd3e6ad9ce5c8dccd",
                size=14989,
            ),
        ),
    ),
    "stanford_dogs": DatasetSource(
        name="stanford_dogs",
        title="Stanford Dogs",
        homepage="http://vision.stanford.edu/aditya86/ImageNetDogs/",
        subdir="stanford_dogs",
        top="stanford_dogs",
        expected=(
            "stanford_dogs/Images",
            "stanford_dogs/train_list.mat",
            "stanford_dogs/test_list.mat",
        ),
        files=(
            RemoteFile(
                f"{_DOGS}/images.tar",
                sha256="a443fc2f9a851aa1a7b8e4fa4af94b8459fce2c9f5a2f4dd4669cf9673a4ec58",
                size=793579520,
                extract=True,
            ),
            RemoteFile(
                f"{_DOGS}/lists.tar",
                sha256="34b47cacd9a98b5d150e084f24d29391c084c55272295ec65c85651bc35f4d6c",
                size=481280,
                extract=True,
            ),
        ),
    ),
    "nabirds": DatasetSource(
        name="nabirds",
        title="NABirds (Cornell Lab of Ornithology)",
        homepage="https://dl.allaboutbirds.org/nabirds",
        subdir="",
        top="nabirds",
        expected=(
            "nabirds/images.txt",
            "nabirds/image_class_labels.txt",
            "nabirds/train_test_split.txt",
            "nabirds/classes.txt",
            "nabirds/hierarchy.txt",
            "nabirds/images",
        ),
        manual=(
            "NABirds has no direct download: open https://dl.allaboutbirds.org/nabirds, accept "
            "the terms of use, download nabirds.tar.gz and extract it into ROOT "
            "(`tar -xzf nabirds.tar.gz -C ROOT`)."
        ),
    ),
    "vegfru": DatasetSource(
        name="vegfru",
        title="VegFru",
        homepage="https://github.com/ustc-vim/vegfru",
        subdir="vegfru",
        top="vegfru",
        expected=(
            "vegfru/vegfru_list/vegfru_train.txt",
            "vegfru/vegfru_list/vegfru_test.txt",
            "vegfru/veg200_images",
            "vegfru/fru92_images",
        ),
        manual=(
            "VegFru has no direct download: follow the 'Download VegFru Dataset' link on "
            "https://github.com/ustc-vim/vegfru (the authors' Baidu Pan share, "
            "http://pan.baidu.com/s/1boSNcV9; see also the project page "
            "http://vim.ustc.edu.cn/?product=vegfru) and extract the image archives and the "
            "list files into ROOT/vegfru."
        ),
    ),
}
"""Dataset name -> its official source. Names match :data:`fusnet.data.DATASETS`."""

_ALIASES = {
    "cub": "cub200",
    "cub_200_2011": "cub200",
    "fgvc_aircraft": "aircraft",
    "food_101": "food101",
    "dogs": "stanford_dogs",
    "oxford_flowers17": "flowers17",
    "oxford_flowers102": "flowers102",
}


def available_downloads() -> list[str]:
    """Names of the datasets that :func:`download_dataset` can fetch unattended.

    Manual-only datasets (NABirds, VegFru) are in :data:`DOWNLOADS` but not listed.
    """
    return sorted(name for name, src in DOWNLOADS.items() if src.files)


def _source(name: str) -> DatasetSource:
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in DOWNLOADS:
        raise DownloadError(
            f"no download is known for dataset {name!r}; known: {', '.join(sorted(DOWNLOADS))}"
        )
    return DOWNLOADS[key]


def _layout(src: DatasetSource, root: str) -> str:
    return "\n".join(f"  {root}/{path}" for path in src.expected)


def manual_instructions(name: str, root: Path | str | None = None) -> str:
    """Say where to get a dataset by hand and how to lay it out under ``root``.

    Args:
        name: dataset name (see :data:`DOWNLOADS`).
        root: the dataset root to show in the paths (``ROOT`` when None).

    Returns:
        Multi-line instructions: the source, the files with their checksums, where to
        put them, and the paths that must exist afterwards.

    Raises:
        DownloadError: ``name`` is unknown.
    """
    src = _source(name)
    where = str(root) if root is not None else "ROOT"
    lines = [f"{src.title} ({src.homepage})"]
    if src.manual is not None:
        lines.append(src.manual.replace("ROOT", where))
    else:
        dest = f"{where}/{src.subdir}" if src.subdir else where
        lines.append("Download these files (on a machine with internet access):")
        lines += [f"  {f.describe()}" for f in src.files]
        lines.append(
            f"and either put them, under these names, into {dest} and run "
            f"`fusnet data download {src.name} --root {where}` again (it verifies the "
            f"checksums and extracts the archives without going online), or extract the "
            f"archives into {dest} yourself."
        )
        lines.append(
            f"Or point ${MIRROR_ENV} at a mirror holding the same paths as the official hosts."
        )
    lines.append("Afterwards these must exist:")
    lines.append(_layout(src, where))
    lines.append(f"Then pass {where}/{src.top} to fusnet as the dataset root.")
    return "\n".join(lines)


def mirror_url(url: str, mirror: str | None) -> str:
    """Replace the scheme and host of ``url`` with those of ``mirror`` (and its path prefix).

    Args:
        url: the official URL.
        mirror: e.g. ``"http://127.0.0.1:8000"`` or ``"https://mirror.lan/data"``; None or
            empty leaves ``url`` unchanged.

    Returns:
        ``mirror`` + the path and query of ``url``.

    Raises:
        DownloadError: ``mirror`` is not an absolute URL.
    """
    if not mirror:
        return url
    base = urllib.parse.urlsplit(mirror)
    if not base.scheme or not base.netloc:
        raise DownloadError(
            f"mirror {mirror!r} is not a URL like http://host[:port][/prefix] "
            f"(from base_url_override or ${MIRROR_ENV})"
        )
    orig = urllib.parse.urlsplit(url)
    path = base.path.rstrip("/") + orig.path
    return urllib.parse.urlunsplit((base.scheme, base.netloc, path, orig.query, ""))


# ---------------------------------------------------------------------------- checksums


def file_digests(path: Path) -> tuple[str, str]:
    """MD5 and SHA-256 hex digests of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check ``path`` against the size and checksums of ``remote``.

    Logs a warning when ``remote`` has no checksum (the content is then not verified).

    Raises:
        DownloadError: the size or a checksum differs.
    """
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        raise DownloadError(
            f"{path} has {actual_size:,} bytes, expected {remote.size:,} for {remote.url}"
        )
    if not remote.verified:
        logger.warning(
            "NOT VERIFIED: no published checksum is known for %s; %s is used unchecked (%d bytes)",
            remote.url,
            path,
            actual_size,
        )
        return
    md5, sha = file_digests(path)
    for algo, expected, actual in (("md5", remote.md5, md5), ("sha256", remote.sha256, sha)):
        if expected is not None and actual != expected.lower():
            raise DownloadError(
                f"{algo} mismatch for {path} (from {remote.url}): expected {expected}, got "
                f"{actual}. The download is corrupt, or the server now publishes a different "
                f"file; delete it and retry, and if it fails again compare with the "
                f"dataset's page"
            )
    logger.info("verified %s (%s)", path.name, "md5" if remote.md5 else "sha256")


# ---------------------------------------------------------------------------- transfer


_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


class _RestartError(Exception):
    """The partial file cannot be continued: start it again from byte 0."""


def _transfer(url: str, part: Path, size: int | None, timeout: float, label: str) -> None:
    """Fetch ``url`` into ``part``, continuing an existing partial file when possible."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset > size:
        logger.warning("%s is larger than the expected %d bytes; starting again", part, size)
        part.unlink()
        offset = 0
    if size is not None and offset == size:
        return
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            match = re.fullmatch(r"bytes\s+\*/(\d+)", exc.headers.get("Content-Range", "") or "")
            exc.close()
            if match is not None and int(match.group(1)) == offset:
                return  # the partial file is already complete
            raise _RestartError(f"server refused the range bytes={offset}-") from exc
        raise
    with response:
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None and length.isdigit() else None
        if offset and response.status == 206:
            match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
            if match is None or int(match.group(1)) != offset:
                raise _RestartError(
                    f"server answered the range bytes={offset}- with "
                    f"{response.headers.get('Content-Range')!r}"
                )
            total = int(match.group(3)) if match.group(3) != "*" else None
            mode = "ab"
            logger.info("resuming %s at byte %d", label, offset)
        else:
            if offset:
                logger.info(
                    "server ignored the Range request for %s; restarting from byte 0", label
                )
            offset, mode = 0, "wb"
            total = remaining
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} offers {total:,} bytes but {size:,} are expected; the server publishes "
                f"a different file than the one fusnet knows"
            )
        received = 0
        with (
            part.open(mode) as fh,
            tqdm(
                total=total if total is not None else size,
                initial=offset,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=label,
                disable=None,
                leave=False,
            ) as bar,
        ):
            while chunk := response.read(_CHUNK):
                fh.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if remaining is not None and received < remaining:
            raise http.client.IncompleteRead(b"", remaining - received)


def _describe_failure(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"the server answered HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, socket.gaierror):
            return f"the host name could not be resolved ({reason}); is this machine offline?"
        if isinstance(reason, (TimeoutError, socket.timeout)):
            return "the connection timed out; is this machine offline?"
        if isinstance(reason, ConnectionRefusedError):
            return "the connection was refused"
        return f"{type(reason).__name__}: {reason}"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "the connection timed out"
    return f"{type(exc).__name__}: {exc}"


def download_file(
    url: str,
    dest: Path,
    *,
    remote: RemoteFile | None = None,
    timeout: float = 60.0,
    retries: int = _RETRIES,
) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``, resuming and verifying.

    An existing ``dest`` that passes the check is kept without going online; one that
    fails it is deleted and fetched again.

    Args:
        url: the URL to fetch (already mirrored, if wanted).
        dest: final path of the file.
        remote: size and checksums to verify against (none: the file is not verified).
        timeout: seconds to wait for the connection and for each read.
        retries: extra attempts (each resuming) after a transfer that broke off having
            received some bytes. A failure to connect is not retried.

    Returns:
        ``dest``.

    Raises:
        DownloadError: the server cannot be reached or answers with an error, the
            transfer keeps breaking off, or the file fails its check (it is then
            deleted, so a later run starts afresh).
    """
    remote = remote or RemoteFile(url, filename=dest.name)
    if dest.is_file():
        try:
            verify_file(dest, remote)
        except DownloadError as exc:
            logger.warning("%s; deleting it and downloading again", exc)
            dest.unlink()
        else:
            logger.info("%s is already here", dest)
            return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    logger.info("downloading %s -> %s", url, dest)
    attempt, restarted = 0, False
    while True:
        before = part.stat().st_size if part.exists() else 0
        try:
            _transfer(url, part, remote.size, timeout, dest.name)
            break
        except _RestartError as exc:
            if restarted:
                raise DownloadError(f"could not download {url}: {exc}") from exc
            logger.warning("%s; restarting %s from byte 0", exc, dest.name)
            part.unlink(missing_ok=True)
            restarted = True
        except (OSError, http.client.HTTPException) as exc:
            after = part.stat().st_size if part.exists() else 0
            progressed = after != before and not isinstance(exc, urllib.error.HTTPError)
            if not progressed or attempt >= retries:
                kept = f"; the {after:,} bytes received are kept in {part}" if after else ""
                raise DownloadError(
                    f"could not download {url}: {_describe_failure(exc)}{kept}"
                ) from exc
            attempt += 1
            logger.warning(
                "transfer of %s broke off after %d bytes (%s); resuming (attempt %d of %d)",
                url,
                after,
                _describe_failure(exc),
                attempt,
                retries,
            )
            time.sleep(0.2 * attempt)
    try:
        verify_file(part, remote)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


# ---------------------------------------------------------------------------- extraction


def _is_absolute(name: str) -> bool:
    return (
        name.startswith(("/", "\\"))
        or PurePosixPath(name).is_absolute()
        or bool(PureWindowsPath(name).drive)
    )


def _within(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip(os.sep) + os.sep)


def _check_member_name(archive: Path, name: str, base: str) -> str:
    """Return the real destination path of member ``name`` or raise DownloadError."""

    def refuse(why: str) -> DownloadError:
        return DownloadError(
            f"refusing to extract {archive}: member {name!r} {why}; the archive is damaged "
            f"or malicious, delete it"
        )

    if _is_absolute(name):
        raise refuse("has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise refuse("contains '..'")
    parent = os.path.realpath(os.path.join(base, *parts[:-1]))
    target = os.path.join(parent, parts[-1])
    if not _within(target, base):
        raise refuse(f"would be written outside {base}")
    return target


def _check_link(archive: Path, name: str, link: str, start: str, base: str) -> None:
    if _is_absolute(link):
        raise DownloadError(
            f"refusing to extract {archive}: member {name!r} links to the absolute path "
            f"{link!r}; the archive is damaged or malicious, delete it"
        )
    resolved = os.path.realpath(os.path.join(start, link))
    if not _within(resolved, base):
        raise DownloadError(
            f"refusing to extract {archive}: member {name!r} links to {link!r}, outside "
            f"{base}; the archive is damaged or malicious, delete it"
        )


def _checked_tar_members(
    tar: tarfile.TarFile, archive: Path, base: str
) -> Iterator[tarfile.TarInfo]:
    for member in tar:
        target = _check_member_name(archive, member.name, base)
        if member.issym():
            _check_link(archive, member.name, member.linkname, os.path.dirname(target), base)
        elif member.islnk():
            _check_link(archive, member.name, member.linkname, base, base)
        elif not (member.isfile() or member.isdir()):
            raise DownloadError(
                f"refusing to extract {archive}: member {member.name!r} is a special file "
                f"(device or FIFO); the archive is damaged or malicious, delete it"
            )
        yield member


_FILTER_ERROR: type[Exception] | tuple[()] = getattr(tarfile, "FilterError", ())


def _extract_tar(archive: Path, dest: Path) -> int:
    base = os.path.realpath(dest)
    count = 0
    with tarfile.open(archive, "r:*") as tar:
        for member in _checked_tar_members(tar, archive, base):
            try:
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, base, set_attrs=True, filter="data")
                else:  # Python < 3.10.12 / 3.11.4: our checks above are the guard
                    tar.extract(member, base, set_attrs=False)
            except _FILTER_ERROR as exc:  # pragma: no cover - our checks come first
                raise DownloadError(
                    f"refusing to extract {archive}: member {member.name!r}: {exc}"
                ) from exc
            count += 1
    return count


def _extract_zip(archive: Path, dest: Path) -> int:
    base = os.path.realpath(dest)
    count = 0
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything before writing anything
            target = _check_member_name(archive, info.filename, base)
            if stat.S_ISLNK(info.external_attr >> 16):
                link = zf.read(info).decode("utf-8", "replace")
                _check_link(archive, info.filename, link, os.path.dirname(target), base)
        for info in infos:
            zf.extract(info, base)
            count += 1
    return count


def extract_archive(archive: Path, dest: Path) -> int:
    """Extract a tar (plain, gz, bz2, xz) or zip archive into ``dest``, refusing escapes.

    Members with absolute paths or ``..``, links pointing outside ``dest`` and special
    files are refused. Tar members are checked one by one as they are extracted (so a
    bad member late in the archive leaves the earlier, safe members in ``dest`` and
    nothing outside); zip members are all checked first.

    Args:
        archive: the archive file.
        dest: folder to extract into (created if missing).

    Returns:
        The number of members extracted.

    Raises:
        DownloadError: the archive is unreadable, of an unknown kind, or holds a
            member that would escape ``dest``.
    """
    dest.mkdir(parents=True, exist_ok=True)
    logger.info("extracting %s into %s", archive, dest)
    try:
        if archive.name.lower().endswith(".zip"):
            count = _extract_zip(archive, dest)
        elif tarfile.is_tarfile(archive):
            count = _extract_tar(archive, dest)
        elif zipfile.is_zipfile(archive):
            count = _extract_zip(archive, dest)
        else:
            raise DownloadError(f"{archive} is neither a tar nor a zip archive; delete it")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"cannot extract {archive}: {exc}; delete it and retry") from exc
    except OSError as exc:
        raise DownloadError(f"cannot extract {archive} into {dest}: {exc}") from exc
    logger.info("extracted %d members of %s", count, archive.name)
    return count


# ---------------------------------------------------------------------------- datasets


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
    marker = root / _MARKER.format(name=src.name)
    tmp = marker.with_name(marker.name + ".tmp")
    record = {
        "dataset": src.name,
        "files": _marker_record(src),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, marker)


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
        root: folder to put the dataset in (created if missing). Several datasets may
            share one root.
        force: ignore the "done" marker: check every file again (fetching only those
            missing or failing the check) and extract again.
        timeout: seconds to wait for a connection and for each read.
        base_url_override: mirror replacing the scheme and host of the official URLs
            (default: ``$FUSNET_DOWNLOAD_MIRROR``, else the official hosts).

    Returns:
        The dataset's folder (``root/CUB_200_2011``, ``root/flowers102``, ...); it, or
        ``root``, is what :func:`fusnet.data.build_dataset` takes as root.

    Raises:
        DownloadError: the dataset has no direct download, a file cannot be fetched
            (the message names the URL and says where to put the files by hand), fails
            its checksum, or an archive holds an unsafe member.
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
