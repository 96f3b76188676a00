"""Safe extraction of tar and zip archives: no member may land outside the destination.

:func:`extract_archive` refuses absolute member paths, ``..`` components, links that
point outside the destination and special files, raising
:class:`~fusnet.errors.DownloadError` naming the archive and the member.
"""

from __future__ import annotations

import logging
import os
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath

from fusnet.errors import DownloadError

logger = logging.getLogger(__package__)  # records keep the name fusnet.data.download


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
