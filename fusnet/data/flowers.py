"""Oxford flower datasets (Nilsback & Zisserman): Flowers-17 and Flowers-102.

Neither is in the paper's tables (its "Flowers" has 5 classes); they are here for
development and for the generalisation experiments.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from fusnet.data.base import ImageListDataset
from fusnet.data.layout import (
    check_official_split,
    how_to_get,
    load_mat,
    mat_ints,
    mat_key,
    read_columns,
    require_root,
)
from fusnet.data.registry import register_dataset
from fusnet.data.splits import stratified_split
from fusnet.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

FLOWERS17_CLASSES: tuple[str, ...] = (
    "Daffodil", "Snowdrop", "LilyValley", "Bluebell", "Crocus", "Iris", "Tigerlily", "Tulip",
    "Fritillary", "Sunflower", "Daisy", "ColtsFoot", "Dandelion", "Cowslip", "Buttercup",
    "Windflower", "Pansy",
)
"""The official class order of Flowers-17: ``image_n.jpg`` has label ``(n - 1) // 80``."""

FLOWERS17_PER_CLASS = 80
FLOWERS17_TEST_FRACTION = 0.25  # without datasplits.mat: the official 60 (40+20 val) / 20

_IMAGE_NUMBER = re.compile(r"image_(\d+)\.jpg$")


def _jpg_dir(name: str, root: Path, tops: tuple[str, ...], marker: str) -> tuple[Path, Path]:
    """``(folder holding jpg/, jpg/)``, from that folder, its parent (the folder named one
    of ``tops``, as ``fusnet data download`` makes it) or ``jpg/`` itself as ``root``."""
    for base in (root, *(root / top for top in tops)):
        if (base / "jpg").is_dir():
            return base, base / "jpg"
    if (root / marker).is_file():
        return root.parent, root
    raise DataError(f"dataset {name!r}: missing folder {root / 'jpg'}; {how_to_get(name)}")


@register_dataset("flowers17")
def load_flowers17(
    root: Path | None, split: str, *, datasplit: int = 1, split_seed: int = 0
) -> ImageListDataset:
    """Oxford 17 Category Flower Dataset: 17 classes x 80 images, 1,020 train / 340 test.

    Layout (``17flowers.tgz``): ``jpg/image_0001.jpg`` ... ``image_1360.jpg`` (listed in
    ``jpg/files.txt`` when present); ``image_n.jpg`` has label ``(n - 1) // 80``. With the
    official ``datasplits.mat`` (beside or in ``jpg/``), train = ``trn{k} + val{k}``
    (40 + 20 a class), test = ``tst{k}``; without it, a seeded split of the same sizes.

    Args:
        datasplit: which of the three official splits of ``datasplits.mat`` (1, 2, 3).
        split_seed: seed of the split made without ``datasplits.mat``.
    """
    name = "flowers17"
    check_official_split(name, split)
    if datasplit not in (1, 2, 3):
        raise ConfigError(f"flowers17 datasplit must be 1, 2 or 3, got {datasplit}")
    root = require_root(name, root)
    base, jpg = _jpg_dir(name, root, ("flowers17", "17flowers"), "image_0001.jpg")
    files_txt = jpg / "files.txt"
    if files_txt.is_file():
        names = [r[0] for r in read_columns(name, files_txt, 1)]
        source = files_txt
    else:
        names = sorted(p.name for p in jpg.glob("image_*.jpg"))
        source = jpg
        if not names:
            raise DataError(f"dataset {name!r}: no image_*.jpg in {jpg}; {how_to_get(name)}")
    numbers: dict[int, Path] = {}
    for file_name in names:
        match = _IMAGE_NUMBER.search(file_name)
        if match is None:
            raise DataError(
                f"dataset {name!r}: {source} lists {file_name!r}, not an image_NNNN.jpg name; "
                f"restore the official jpg/ folder ({how_to_get(name)})"
            )
        numbers[int(match.group(1))] = jpg / file_name
    n_max = FLOWERS17_PER_CLASS * len(FLOWERS17_CLASSES)
    out_of_range = [n for n in numbers if not 1 <= n <= n_max]
    if out_of_range:
        raise DataError(
            f"dataset {name!r}: {source} lists image numbers {sorted(out_of_range)[:10]} outside "
            f"1..{n_max}; Flowers-17 labels come from the number, so the folder is not the "
            f"official one ({how_to_get(name)})"
        )

    splits_file = next(
        (p for p in (base / "datasplits.mat", jpg / "datasplits.mat") if p.is_file()), None
    )
    if splits_file is not None:
        mat = load_mat(name, splits_file)
        if split == "train":
            chosen = np.concatenate(
                [
                    mat_ints(mat_key(name, splits_file, mat, f"trn{datasplit}")),
                    mat_ints(mat_key(name, splits_file, mat, f"val{datasplit}")),
                ]
            )
        else:
            chosen = mat_ints(mat_key(name, splits_file, mat, f"tst{datasplit}"))
        missing = sorted(set(chosen.tolist()) - set(numbers))
        if missing:
            raise DataError(
                f"dataset {name!r}: {splits_file} uses images {missing[:10]} that {source} does "
                f"not list; restore the official jpg/ folder ({how_to_get(name)})"
            )
        picked = sorted(set(chosen.tolist()))
        source = splits_file
    else:
        ordered = sorted(numbers)
        labels = np.asarray([(n - 1) // FLOWERS17_PER_CLASS for n in ordered], dtype=np.int64)
        train_idx, test_idx = stratified_split(labels, FLOWERS17_TEST_FRACTION, split_seed)
        idx = train_idx if split == "train" else test_idx
        picked = [ordered[i] for i in idx.tolist()]
        logger.debug("flowers17: no datasplits.mat; seeded split (seed %d)", split_seed)
    samples = [(numbers[n], (n - 1) // FLOWERS17_PER_CLASS) for n in picked]
    return ImageListDataset(
        name, split, samples, FLOWERS17_CLASSES, root=root, data_dir=base, source=source
    )


@register_dataset("flowers102")
def load_flowers102(root: Path | None, split: str) -> ImageListDataset:
    """Oxford 102 Category Flower Dataset: 102 classes, 2,040 train / 6,149 test.

    Layout: ``jpg/image_00001.jpg`` ... (``102flowers.tgz``), ``imagelabels.mat``
    (``labels``: 1..102 per image) and ``setid.mat`` (``trnid``, ``valid``, ``tstid``:
    1-based image numbers) beside ``jpg/`` (``root`` may be the parent of a folder named
    ``flowers102`` or ``flowers-102``, torchvision's). train = ``trnid + valid`` (10 + 10
    a class), test = ``tstid``. Class names (none published): ``class_001`` ...
    """
    name = "flowers102"
    check_official_split(name, split)
    root = require_root(name, root)
    base, jpg = _jpg_dir(name, root, ("flowers102", "flowers-102"), "image_00001.jpg")
    labels_file = base / "imagelabels.mat"
    labels = mat_ints(mat_key(name, labels_file, load_mat(name, labels_file), "labels")) - 1
    setid_file = base / "setid.mat"
    setid = load_mat(name, setid_file)
    keys = ("trnid", "valid") if split == "train" else ("tstid",)
    ids = np.sort(np.concatenate([mat_ints(mat_key(name, setid_file, setid, k)) for k in keys]))
    bad = ids[(ids < 1) | (ids > labels.size)]
    if bad.size:
        raise DataError(
            f"dataset {name!r}: {setid_file} uses image numbers {bad[:10].tolist()} outside "
            f"1..{labels.size} of {labels_file}; re-download both files ({how_to_get(name)})"
        )
    num_classes = int(labels.max()) + 1 if labels.size else 0
    class_names = [f"class_{c + 1:03d}" for c in range(num_classes)]
    samples = [(jpg / f"image_{n:05d}.jpg", int(labels[n - 1])) for n in ids.tolist()]
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=base, source=setid_file
    )
