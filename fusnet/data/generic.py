"""Generic loaders for datasets without an official layout of their own.

The paper's other generalisation sets (Table 2: Flowers-5, Animals-90, Oxford 5k
Buildings, BJFU100) come as class folders or are split by each user; load them with
``"imagefolder"`` or ``"csv"`` (data/README.md gives the paper's sizes).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from fusnet.data.base import ImageListDataset, Sample, listing
from fusnet.data.layout import check_official_split, list_images, require_file, require_root
from fusnet.data.registry import register_dataset
from fusnet.data.splits import stratified_split
from fusnet.errors import DataError


def _class_dirs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


@register_dataset("imagefolder")
def load_imagefolder(
    root: Path | None, split: str, *, test_fraction: float = 0.2, split_seed: int = 0
) -> ImageListDataset:
    """Images sorted into one folder per class.

    ``root/{train,test}/<class>/*`` (the given split), or ``root/<class>/*`` split here
    per class, seeded (the paper's Table 2 sets are about 80/20). Classes are the sorted
    folder names (of train and test); images are found recursively by extension.

    ``test_fraction`` and ``split_seed``: the flat layout's split.
    """
    name = "imagefolder"
    check_official_split(name, split)
    root = require_root(name, root)
    if (root / "train").is_dir() or (root / "test").is_dir():
        for part in ("train", "test"):
            if not (root / part).is_dir():
                raise DataError(
                    f"dataset {name!r}: {root / 'train'} exists but {root / part} does not; "
                    f"give both root/train/<class>/ and root/test/<class>/, or put the class "
                    f"folders directly under {root} to split them here"
                )
        class_names = sorted(set(_class_dirs(root / "train")) | set(_class_dirs(root / "test")))
        folder = root / split
        samples: list[Sample] = []
        for label, cls in enumerate(class_names):
            if (folder / cls).is_dir():
                samples += [(p, label) for p in list_images(folder / cls)]
        return ImageListDataset(
            name, split, samples, class_names, root=root, data_dir=root, source=folder
        )

    class_names = _class_dirs(root)
    if not class_names:
        raise DataError(
            f"dataset {name!r}: no class folders under {root}; expected root/<class>/<image> "
            f"or root/train/<class>/<image> + root/test/<class>/<image>"
        )
    everything = [(p, label) for label, c in enumerate(class_names) for p in list_images(root / c)]
    labels = np.asarray([y for _, y in everything], dtype=np.int64)
    train_idx, test_idx = stratified_split(labels, test_fraction, split_seed)
    idx = train_idx if split == "train" else test_idx
    samples = [everything[i] for i in idx.tolist()]
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=root, source=root
    )


def _read_csv(name: str, path: Path) -> list[tuple[str, str]]:
    require_file(name, path)
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in reader.fieldnames or []]
        if "path" not in fields or "label" not in fields:
            raise DataError(
                f"dataset {name!r}: {path} must have a header with columns 'path' and 'label' "
                f"(found {fields}); add the header line 'path,label'"
            )
        rows = []
        for lineno, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row["path"] or not row["label"]:
                raise DataError(
                    f"dataset {name!r}: {path} line {lineno} has an empty path or label"
                )
            rows.append((row["path"], row["label"]))
    return rows


@register_dataset("csv")
def load_csv(root: Path | None, split: str) -> ImageListDataset:
    """Image lists in ``root/train.csv`` and ``root/test.csv``: a header, then ``path``
    (relative to ``root``, or absolute) and ``label`` (a class index from 0, or a name).

    An optional ``root/classes.txt`` (one name a line) gives the class order: names for
    index labels, indices for name labels. Without it, index labels are named by their
    number and name labels sorted (over both files).
    """
    name = "csv"
    check_official_split(name, split)
    root = require_root(name, root)
    # read both files (when present) so that both splits get the same class list
    rows = {
        s: _read_csv(name, root / f"{s}.csv")
        for s in ("train", "test")
        if s == split or (root / f"{s}.csv").is_file()
    }
    if not rows[split]:
        raise DataError(f"dataset {name!r}: {root / (split + '.csv')} has no rows")
    _check_duplicates(name, root, rows)
    classes_file = root / "classes.txt"
    listed = None
    if classes_file.is_file():
        lines = classes_file.read_text(encoding="utf-8").splitlines()
        listed = [line.strip() for line in lines if line.strip()]
    all_labels = [lab for part in rows.values() for _, lab in part]
    numeric = all(lab.lstrip("-").isdigit() for lab in all_labels)
    if numeric:
        top = max(int(lab) for lab in all_labels)
        class_names = listed if listed is not None else [str(i) for i in range(top + 1)]
        labels = [int(lab) for _, lab in rows[split]]
    else:
        class_names = listed if listed is not None else sorted(set(all_labels))
        index = {c: i for i, c in enumerate(class_names)}
        unknown = sorted({lab for lab in all_labels if lab not in index})
        if unknown:
            raise DataError(
                f"dataset {name!r}: labels {unknown[:10]} of the CSV files in {root} are not in "
                f"{classes_file}; add them there or fix the CSV files"
            )
        labels = [index[lab] for _, lab in rows[split]]
    samples = [(root / p, y) for (p, _), y in zip(rows[split], labels, strict=True)]
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=root, source=root / f"{split}.csv"
    )


def _check_duplicates(name: str, root: Path, rows: dict[str, list[tuple[str, str]]]) -> None:
    """Reject an image listed twice in one CSV file, or in both: it would count twice in
    the database, or find itself as a query, and the retrieval numbers would be wrong."""
    where: dict[str, dict[Path, int]] = {}
    for split, part in rows.items():
        counts: dict[Path, int] = {}
        for path, _ in part:
            key = Path(os.path.normpath(root / path))
            counts[key] = counts.get(key, 0) + 1
        repeated = [p for p, n in counts.items() if n > 1]
        if repeated:
            listed = listing([f"{p} ({counts[p]} times)" for p in repeated], limit=5)
            raise DataError(
                f"dataset {name!r}: {root / (split + '.csv')} lists {len(repeated)} image(s) more "
                f"than once: {listed}; keep one row per image"
            )
        where[split] = counts
    if len(where) == 2:
        both = sorted(set(where["train"]) & set(where["test"]))
        if both:
            raise DataError(
                f"dataset {name!r}: {len(both)} image(s) are in both {root / 'train.csv'} and "
                f"{root / 'test.csv'}: {listing([str(p) for p in both], limit=5)}; a query must "
                "not be in the database, "
                "remove them from one of the files"
            )
