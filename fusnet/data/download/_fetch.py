"""Resumable HTTP download of one file, with size and checksum verification.

Hand-written on purpose: torchvision's ``download_url`` starts every file from byte 0 (no
``Range`` resume, no retry of a broken transfer: a 5 GB Food-101 archive cut at 90%
would start over), and its ``check_integrity`` knows MD5 only while some sources publish
only a SHA-256 (here both come from one read of the file).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from fusnet.data.download._sources import RemoteFile
from fusnet.errors import DownloadError

logger = logging.getLogger(__package__)  # records keep the name fusnet.data.download

USER_AGENT = "fusnet-download/1.0 (Python urllib)"
_CHUNK = 1 << 20
_RETRIES = 3  # extra attempts after a transfer broke off having made progress


def file_digests(path: Path) -> tuple[str, str]:
    """MD5 and SHA-256 hex digests of a file, read once."""
    md5, sha = hashlib.md5(usedforsecurity=False), hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            md5.update(chunk)
            sha.update(chunk)
    return md5.hexdigest(), sha.hexdigest()


def verify_file(path: Path, remote: RemoteFile) -> None:
    """Check ``path`` against the size and checksums of ``remote`` (DownloadError if one
    differs); warn when ``remote`` has no checksum, the content being then unverified."""
    actual_size = path.stat().st_size
    if remote.size is not None and actual_size != remote.size:
        raise DownloadError(
            f"{path} has {actual_size:,} bytes, expected {remote.size:,} for {remote.url}"
        )
    if not remote.verified:
        logger.warning("NOT VERIFIED: no published checksum is known for %s; %s is used "
                       "unchecked (%d bytes)", remote.url, path, actual_size)
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
                logger.info("server ignored the Range request for %s; restarting from byte 0",
                            label)
            offset, mode = 0, "wb"
            total = remaining
        if size is not None and total is not None and total != size:
            part.unlink(missing_ok=True)
            raise DownloadError(
                f"{url} offers {total:,} bytes but {size:,} are expected; the server publishes "
                f"a different file than the one fusnet knows"
            )
        received = 0
        bar = tqdm(total=total if total is not None else size, initial=offset, unit="B",
                   unit_scale=True, unit_divisor=1024, desc=label, disable=None, leave=False)
        with part.open(mode) as fh, bar:
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
    """Download ``url`` to ``dest`` (returned) through ``dest.part``, resuming and verifying
    against ``remote``'s size and checksums (none: unverified). A ``dest`` already there
    that passes the check is kept offline; one that fails is fetched again.

    Args:
        timeout: seconds to wait for the connection and for each read.
        retries: extra attempts, each resuming, after a transfer broke off having received
            bytes (a failure to connect is not retried).

    Raises:
        DownloadError: the server is unreachable or answers an error, the transfer keeps
            breaking off, or the file fails its check (it is then deleted).
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
            logger.warning("transfer of %s broke off after %d bytes (%s); resuming (attempt %d "
                           "of %d)", url, after, _describe_failure(exc), attempt, retries)
            time.sleep(0.2 * attempt)
    try:
        verify_file(part, remote)
    except DownloadError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest
