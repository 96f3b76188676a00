"""The images a gallery index is built from: a folder (recursively) or a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path

from fusnet.errors import DataError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

Item = tuple[str, str]
"""(absolute image path, label; "" when unlabelled)."""


def collect_images(source: str | Path) -> list[Item]:
    """Every image of a folder or a CSV file, in a fixed order.

    A folder is walked recursively, files sorted by relative path; an image in a
    sub-folder gets that sub-folder's path as its label ("" at the top level). A
    CSV file has a ``path`` column (relative paths are relative to the CSV's
    folder) and optionally a ``label`` column; its row order is kept.

    Args:
        source: a folder or a ``.csv`` file.

    Returns:
        (absolute path, label) pairs.

    Raises:
        DataError: the source does not exist, holds no image, or a CSV lacks ``path``.
    """
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        items = []
        for p in files:
            parent = p.parent.relative_to(source).as_posix()
            items.append((str(p.resolve()), "" if parent == "." else parent))
        if not items:
            raise DataError(
                f"{source} holds no image file ({', '.join(sorted(IMAGE_SUFFIXES))}): "
                "point at the folder of your photos, or a CSV with a path column"
            )
        return items
    if source.is_file() and source.suffix.lower() == ".csv":
        return _from_csv(source)
    if source.is_file():
        raise DataError(f"{source} is neither a folder nor a .csv file listing images")
    raise DataError(f"{source} does not exist: pass a folder of images or a CSV file")


def _from_csv(path: Path) -> list[Item]:
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None or "path" not in reader.fieldnames:
            raise DataError(
                f"{path} has no 'path' column (found {reader.fieldnames}): the first row must "
                "name the columns, e.g. path,label"
            )
        items = []
        for row in reader:
            p = Path(row["path"])
            p = p if p.is_absolute() else path.parent / p
            items.append((str(p.resolve()), (row.get("label") or "").strip()))
    if not items:
        raise DataError(f"{path} lists no image: add one row per image under its header")
    return items
