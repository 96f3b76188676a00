"""Safe extraction of tar and zip archives: no member may land outside the destination.

The rules are tarfile's ``"data"`` extraction filter (PEP 706): no absolute path, no
member or link target outside the destination, no special file. Two additions: an
absolute member name is refused (the filter would strip its leading ``/`` and extract
it), and zip members, which zipfile has no filter for (it rewrites unsafe names
silently), are each put through the same filter before any is written.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import zipfile
from pathlib import Path, PureWindowsPath

from fusnet.errors import DownloadError

logger = logging.getLogger(__package__)  # records keep the name fusnet.data.download


def _data_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """tarfile's ``data_filter``, refusing absolute names instead of stripping them."""
    if member.name.startswith(("/", "\\")) or PureWindowsPath(member.name).drive:
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def _extract_tar(archive: Path, dest: str) -> int:
    # Member by member: a bad member late in the archive leaves the safe ones before it.
    with tarfile.open(archive, "r:*") as tar:
        tar.extractall(dest, filter=_data_filter)
        return len(tar.getmembers())


def _extract_zip(archive: Path, dest: str) -> int:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # check everything before writing anything
            member = tarfile.TarInfo(info.filename)
            if stat.S_ISLNK(info.external_attr >> 16):
                member.type = tarfile.SYMTYPE
                member.linkname = zf.read(info).decode("utf-8", "replace")
            _data_filter(member, dest)
        zf.extractall(dest)
        return len(infos)


def extract_archive(archive: Path, dest: Path) -> int:
    """Extract a tar (plain, gz, bz2, xz) or zip archive into ``dest`` (made if missing);
    return the number of members. DownloadError for an unreadable or unknown archive, or a
    member that would escape ``dest`` (naming the archive and the member)."""
    if not hasattr(tarfile, "data_filter"):
        raise DownloadError(f"extracting {archive} safely needs tarfile's extraction filters "
                            "(Python 3.10.12, 3.11.4, 3.12 or newer); upgrade Python")
    dest.mkdir(parents=True, exist_ok=True)
    logger.info("extracting %s into %s", archive, dest)
    base = os.path.realpath(dest)
    try:
        if archive.name.lower().endswith(".zip"):
            count = _extract_zip(archive, base)
        elif tarfile.is_tarfile(archive):
            count = _extract_tar(archive, base)
        elif zipfile.is_zipfile(archive):
            count = _extract_zip(archive, base)
        else:
            raise DownloadError(f"{archive} is neither a tar nor a zip archive; delete it")
    except tarfile.FilterError as exc:
        raise DownloadError(f"refusing to extract {archive}: {exc}; the archive is damaged or "
                            "malicious, delete it") from exc
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DownloadError(f"cannot extract {archive}: {exc}; delete it and retry") from exc
    except OSError as exc:
        raise DownloadError(f"cannot extract {archive} into {dest}: {exc}") from exc
    logger.info("extracted %d members of %s", count, archive.name)
    return count
