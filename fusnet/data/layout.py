"""Helpers for reading the official download layouts: locating folders, reading lists.

Every failure raises :class:`~fusnet.errors.DataError` naming the file and saying how
to get it (``fusnet data download NAME --root DIR`` or ``data/README.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fusnet.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

USER_MADE: dict[str, str] = {
    "csv": "write ROOT/train.csv and ROOT/test.csv with the header 'path,label' (paths "
    "relative to ROOT or absolute) and pass that ROOT as root (see data/README.md)",
    "imagefolder": "put one folder of images per class under ROOT (or ROOT/train/<class>/ and "
    "ROOT/test/<class>/) and pass that ROOT as root (see data/README.md)",
}
"""Datasets that the user lays out (no download exists): what to do instead."""


def how_to_get(name: str) -> str:
    """The standard hint appended to every "file not found" message."""
    if name in USER_MADE:
        return USER_MADE[name]
    from fusnet.data.download._sources import DOWNLOADS

    if name not in DOWNLOADS:
        return "lay the files out as data/README.md describes and pass that folder as root"
    return (
        f"get the official files with `fusnet data download {name} --root DIR` "
        f"(or by hand, see data/README.md) and pass that DIR as root"
    )


def require_root(name: str, root: Path | str | None) -> Path:
    """``root`` as a Path (user-expanded), or DataError when it is None or not a folder."""
    if root is None:
        raise DataError(f"dataset {name!r} needs a root folder (got root=None); {how_to_get(name)}")
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"dataset {name!r}: root folder {root} does not exist; {how_to_get(name)}")
    return root


def locate(name: str, root: Path, tops: Sequence[str], marker: str) -> Path:
    """Find the dataset's top folder, the one holding ``marker``, from the user's root.

    Tries ``root/<top>`` for each of ``tops`` (the archive's top-folder names, preferred
    first), then ``root`` itself, then a unique immediate sub-folder.

    Raises:
        DataError: no candidate holds ``marker``, or several sub-folders do.
    """
    for top in tops:
        if (root / top / marker).exists():
            return root / top
    if (root / marker).exists():
        return root
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / marker).exists())
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise DataError(
            f"dataset {name!r}: several folders under {root} hold {marker} "
            f"({', '.join(str(p) for p in found)}); pass the one you mean as root"
        )
    expected = root / tops[0] / marker if tops else root / marker
    raise DataError(f"dataset {name!r}: missing {expected}; {how_to_get(name)}")


def require_file(name: str, path: Path) -> Path:
    """Return ``path`` if it is a file, else raise a DataError naming it."""
    if not path.is_file():
        raise DataError(f"dataset {name!r}: missing file {path}; {how_to_get(name)}")
    return path


def read_columns(name: str, path: Path, columns: int) -> list[list[str]]:
    """Read a whitespace-separated list file: ``columns`` strings per non-empty line, the
    last taking the rest of the line (names with spaces: ``"<id> Cessna 172"``).

    Raises:
        DataError: the file is missing or empty, or a line has too few fields.
    """
    require_file(name, path)
    rows: list[list[str]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=columns - 1)
            if len(parts) != columns:
                raise DataError(
                    f"dataset {name!r}: {path} line {lineno} has {len(parts)} field(s), "
                    f"expected {columns}: {line!r}; the file is damaged, re-download it "
                    f"({how_to_get(name)})"
                )
            rows.append(parts)
    if not rows:
        raise DataError(f"dataset {name!r}: {path} is empty; {how_to_get(name)}")
    return rows


def parse_int(name: str, path: Path, text: str) -> int:
    """``int(text)``, with a DataError naming ``path`` when it is not an integer."""
    try:
        return int(text)
    except ValueError:
        raise DataError(
            f"dataset {name!r}: {path} holds {text!r} where an integer is expected; "
            f"the file is damaged, re-download it ({how_to_get(name)})"
        ) from None


def load_mat(name: str, path: Path) -> dict[str, np.ndarray]:
    """Read a MATLAB ``.mat`` file; DataError when it is missing or unreadable."""
    import scipy.io  # slow to import, and only the Oxford and Stanford sets need it

    require_file(name, path)
    try:
        return scipy.io.loadmat(str(path))
    except Exception as exc:  # scipy raises several unrelated types on bad files
        raise DataError(
            f"dataset {name!r}: cannot read {path} ({exc}); re-download it ({how_to_get(name)})"
        ) from exc


def mat_key(name: str, path: Path, mat: dict[str, np.ndarray], key: str) -> np.ndarray:
    """``mat[key]``, with a DataError naming the file when the variable is absent."""
    if key not in mat:
        present = sorted(k for k in mat if not k.startswith("__"))
        raise DataError(
            f"dataset {name!r}: {path} has no variable {key!r} (found {present}); "
            f"is this the official file? ({how_to_get(name)})"
        )
    return mat[key]


def mat_strings(cells: np.ndarray) -> list[str]:
    """Flatten a MATLAB cell array of strings (as loadmat returns it) to Python strings."""
    out: list[str] = []
    for cell in np.asarray(cells, dtype=object).ravel():
        value = cell
        while isinstance(value, np.ndarray):
            value = value.ravel()[0] if value.size else ""
        out.append(str(value))
    return out


def mat_ints(values: np.ndarray) -> np.ndarray:
    """Flatten a MATLAB numeric array to a 1-D int64 array."""
    return np.asarray(values).astype(np.int64).ravel()


def list_images(folder: Path) -> list[Path]:
    """All image files under ``folder`` (recursively), sorted, by extension."""
    return sorted(
        p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )


def check_official_split(name: str, split: str) -> None:
    """Raise ConfigError unless ``split`` is an official split (``train``/``test``)."""
    if split not in ("train", "test"):
        raise ConfigError(
            f"dataset {name!r} loaders read the official 'train' or 'test' split, got {split!r}; "
            f"use fusnet.data.build_dataset for 'val'/'fit'"
        )
