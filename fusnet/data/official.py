"""Loaders for the fine-grained benchmarks of the paper's Table 1, and Stanford Dogs.

Each reads the official download unchanged, from ``root`` holding the archive's top
folder (``CUB_200_2011/``, ...) or that folder itself. Split sizes:
:data:`fusnet.data.sizes.OFFICIAL_SPLIT_SIZES`; downloads: data/README.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from fusnet.data.base import ImageListDataset, Sample
from fusnet.data.layout import (
    check_official_split,
    how_to_get,
    load_mat,
    locate,
    mat_ints,
    mat_key,
    mat_strings,
    parse_int,
    read_columns,
    require_root,
)
from fusnet.data.registry import register_dataset
from fusnet.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


def _strip_number(name: str) -> str:
    """``"001.Black_footed_Albatross" -> "Black_footed_Albatross"`` (CUB class folders)."""
    head, dot, tail = name.partition(".")
    return tail if dot and head.isdigit() else name


def _labelled_by_name(
    name: str,
    class_names: list[str],
    names_file: Path,
    list_file: Path,
    entries: Iterable[tuple[Path, str, str]],
    said: str,
    redownload: str = "re-download the archive",
) -> list[Sample]:
    """Samples of ``entries`` ((path, class name, list entry) from ``list_file``) labelled
    by the name's place in ``class_names`` (from ``names_file``). An unknown class raises
    a DataError saying ``said`` (formatted with ``entry`` and ``cls``) and ``redownload``."""
    index = {c: i for i, c in enumerate(class_names)}
    samples: list[Sample] = []
    for path, cls, entry in entries:
        if cls not in index:
            raise DataError(
                f"dataset {name!r}: {list_file} {said.format(entry=entry, cls=cls)}, which "
                f"{names_file} does not list; {redownload} ({how_to_get(name)})"
            )
        samples.append((path, index[cls]))
    return samples


def _cub_layout_samples(
    name: str, top: Path, split: str, label_of_class: dict[int, int]
) -> tuple[list[Sample], Path]:
    """The samples of one split of the CUB layout (NABirds uses it too) and the split file:
    ``images.txt`` (``<id> <path>``), ``image_class_labels.txt`` (``<id> <class_id>``),
    ``train_test_split.txt`` (``<id> <is_training>``), images under ``images/``."""
    labels_file, split_file = top / "image_class_labels.txt", top / "train_test_split.txt"
    image_class = {
        i: parse_int(name, labels_file, c) for i, c in read_columns(name, labels_file, 2)
    }
    is_train = dict(read_columns(name, split_file, 2))
    want = "1" if split == "train" else "0"
    samples: list[Sample] = []
    for image_id, rel in read_columns(name, top / "images.txt", 2):
        if image_id not in image_class or image_id not in is_train:
            missing = labels_file if image_id not in image_class else split_file
            raise DataError(
                f"dataset {name!r}: image id {image_id} ({rel}) of {top / 'images.txt'} is not "
                f"in {missing}; the list files are from different versions, re-download them "
                f"({how_to_get(name)})"
            )
        if is_train[image_id] != want:
            continue
        cid = image_class[image_id]
        if cid not in label_of_class:
            raise DataError(
                f"dataset {name!r}: {labels_file} gives image {image_id} class {cid}, which "
                f"{top / 'classes.txt'} does not list; re-download the list files"
            )
        samples.append((top / "images" / rel, label_of_class[cid]))
    return samples, split_file


@register_dataset("cub200")
def load_cub200(root: Path | None, split: str) -> ImageListDataset:
    """CUB-200-2011 (Wah et al., 2011): 200 bird species, 5,994 train / 5,794 test.

    Layout (``CUB_200_2011.tgz``): ``CUB_200_2011/`` with the lists of
    :func:`_cub_layout_samples` and ``classes.txt`` (``<class_id> <NNN.Name>``). Labels
    follow the sorted class ids; names drop the ``NNN.`` prefix. Any subset in this
    layout loads too (e.g. the 100-class test set).
    """
    name = "cub200"
    check_official_split(name, split)
    root = require_root(name, root)
    top = locate(name, root, ("CUB_200_2011",), "images.txt")
    classes = read_columns(name, top / "classes.txt", 2)
    class_ids = sorted(parse_int(name, top / "classes.txt", c) for c, _ in classes)
    id_to_name = {parse_int(name, top / "classes.txt", c): n for c, n in classes}
    class_names = [_strip_number(id_to_name[cid]) for cid in class_ids]
    label_of_class = {cid: i for i, cid in enumerate(class_ids)}
    samples, split_file = _cub_layout_samples(name, top, split, label_of_class)
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=split_file
    )


_AIRCRAFT_LEVELS = {"variant": "variants", "family": "families", "manufacturer": "manufacturers"}


@register_dataset("aircraft")
def load_aircraft(
    root: Path | None, split: str, *, annotation_level: str = "variant"
) -> ImageListDataset:
    """FGVC-Aircraft 2013b (Maji et al., 2013): 100 variants, 6,667 trainval / 3,333 test.

    Layout (``fgvc-aircraft-2013b.tar.gz``): ``fgvc-aircraft-2013b/data/`` with
    ``variants.txt`` (class names in label order), ``images_variant_{trainval,test}.txt``
    (``<image_id> <variant name>``) and ``images/<image_id>.jpg``. Our ``train`` is the
    official ``trainval``, as in every hashing paper. Images keep their copyright banner.

    ``annotation_level``: ``"variant"`` (the paper's 100 classes), ``"family"`` (70) or
    ``"manufacturer"`` (30).
    """
    name = "aircraft"
    check_official_split(name, split)
    if annotation_level not in _AIRCRAFT_LEVELS:
        raise ConfigError(
            f"aircraft annotation_level must be one of {sorted(_AIRCRAFT_LEVELS)}, "
            f"got {annotation_level!r}"
        )
    root = require_root(name, root)
    marker = f"{_AIRCRAFT_LEVELS[annotation_level]}.txt"
    top = locate(name, root, ("fgvc-aircraft-2013b/data", "data"), marker)
    names_file = top / marker
    class_names = [r[0] for r in read_columns(name, names_file, 1)]
    part = "trainval" if split == "train" else "test"
    list_file = top / f"images_{annotation_level}_{part}.txt"
    samples = _labelled_by_name(
        name, class_names, names_file, list_file,
        ((top / "images" / f"{image_id}.jpg", cls, image_id)
         for image_id, cls in read_columns(name, list_file, 2)),
        said="names class {cls!r}",
    )
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=list_file
    )


@register_dataset("nabirds")
def load_nabirds(root: Path | None, split: str) -> ImageListDataset:
    """NABirds (Van Horn et al., 2015): 555 leaf classes, 23,929 train / 24,633 test.

    Layout (``nabirds.tar.gz``): ``nabirds/`` with the lists of CUB
    (:func:`_cub_layout_samples`, uuids as ids), ``classes.txt`` (all 1,011 nodes of the
    taxonomy) and ``hierarchy.txt`` (``<child_id> <parent_id>``). Labels are the class
    ids that have images (the leaves), sorted and renumbered 0..554. The paper's Table 1
    swaps the two split sizes; we follow ``train_test_split.txt``.
    """
    name = "nabirds"
    check_official_split(name, split)
    root = require_root(name, root)
    top = locate(name, root, ("nabirds",), "image_class_labels.txt")
    classes_file, labels_file = top / "classes.txt", top / "image_class_labels.txt"
    id_to_name = {
        parse_int(name, classes_file, c): n for c, n in read_columns(name, classes_file, 2)
    }
    used = sorted({parse_int(name, labels_file, c) for _, c in read_columns(name, labels_file, 2)})
    unknown = [c for c in used if c not in id_to_name]
    if unknown:
        raise DataError(
            f"dataset {name!r}: {labels_file} uses class ids {unknown[:10]} that {classes_file} "
            f"does not list; re-download the archive ({how_to_get(name)})"
        )
    hierarchy_file = top / "hierarchy.txt"
    if hierarchy_file.is_file():
        parents = {
            parse_int(name, hierarchy_file, p) for _, p in read_columns(name, hierarchy_file, 2)
        }
        inner = [c for c in used if c in parents]
        if inner:
            raise DataError(
                f"dataset {name!r}: {labels_file} labels images with non-leaf classes "
                f"{inner[:10]} of {hierarchy_file}; re-download the archive ({how_to_get(name)})"
            )
    else:
        logger.warning("nabirds: %s not found; not checking that labels are leaves", hierarchy_file)
    class_names = [id_to_name[c] for c in used]
    samples, split_file = _cub_layout_samples(
        name, top, split, {c: i for i, c in enumerate(used)}
    )
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=split_file
    )


@register_dataset("food101")
def load_food101(root: Path | None, split: str) -> ImageListDataset:
    """Food-101 (Bossard et al., 2014): 101 dishes, 75,750 train / 25,250 test.

    Layout (``food-101.tar.gz``): ``food-101/meta/classes.txt`` (label order),
    ``meta/{train,test}.txt`` (``<class>/<image_id>``) and ``images/<class>/<image_id>.jpg``.
    The training images are noisy by the dataset's design.
    """
    name = "food101"
    check_official_split(name, split)
    root = require_root(name, root)
    top = locate(name, root, ("food-101",), "meta/classes.txt")
    names_file = top / "meta" / "classes.txt"
    class_names = [r[0] for r in read_columns(name, names_file, 1)]
    list_file = top / "meta" / f"{split}.txt"
    samples = _labelled_by_name(
        name, class_names, names_file, list_file,
        ((top / "images" / f"{entry}.jpg", entry.split("/", 1)[0], entry)
         for (entry,) in read_columns(name, list_file, 1)),
        said="lists {entry!r} of class {cls!r}", redownload="re-download",
    )
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=list_file
    )


@register_dataset("vegfru")
def load_vegfru(root: Path | None, split: str) -> ImageListDataset:
    """VegFru (Hou et al., 2017): 292 classes (200 veg + 92 fruit), 29,200 train / 116,931 test.

    Layout (as data/README.md assumes it): ``vegfru_list/vegfru_{train,test}.txt`` with
    lines ``<relative path> <label>`` (``veg200_images/<class>/<file>.jpg 17``). Class
    names are the class folders; the sorted label numbers of both lists become 0..291
    (0- or 1-based both work). ``train`` is ``vegfru_train.txt`` alone, not train + val.
    """
    name = "vegfru"
    check_official_split(name, split)
    root = require_root(name, root)
    top = locate(name, root, ("vegfru", "VegFru", "vegfru-dataset"), "vegfru_list")
    lists = {s: top / "vegfru_list" / f"vegfru_{s}.txt" for s in ("train", "test")}
    rows = {s: read_columns(name, f, 2) for s, f in lists.items()}
    names: dict[int, str] = {}
    for s, entries in rows.items():
        for rel, lab in entries:
            y = parse_int(name, lists[s], lab)
            folder = Path(rel).parent.name or str(y)
            if names.setdefault(y, folder) != folder:
                raise DataError(
                    f"dataset {name!r}: {lists[s]} gives label {y} to folders {names[y]!r} and "
                    f"{folder!r}; the list files are inconsistent, re-download them"
                )
    used = sorted(names)
    label_of = {y: i for i, y in enumerate(used)}
    class_names = [names[y] for y in used]
    samples = [(top / rel, label_of[int(lab)]) for rel, lab in rows[split]]
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=lists[split]
    )


@register_dataset("stanford_dogs")
def load_stanford_dogs(root: Path | None, split: str) -> ImageListDataset:
    """Stanford Dogs (Khosla et al., 2011): 120 breeds, 12,000 train / 8,580 test.

    Layout (``images.tar`` + ``lists.tar`` in one folder): ``Images/<wnid>-<Breed>/``
    beside ``{train,test}_list.mat`` (``file_list``: those paths, ``labels``: 1..120).
    Class names are the breed part of the folder name.
    """
    name = "stanford_dogs"
    check_official_split(name, split)
    root = require_root(name, root)
    top = locate(name, root, ("StanfordDogs", "stanford_dogs", "stanford-dogs"), "train_list.mat")
    lists: dict[str, tuple[list[str], list[int]]] = {}
    for part in ("train", "test"):
        mat_file = top / f"{part}_list.mat"
        mat = load_mat(name, mat_file)
        files = mat_strings(mat_key(name, mat_file, mat, "file_list"))
        labels = (mat_ints(mat_key(name, mat_file, mat, "labels")) - 1).tolist()  # 0-based
        if len(files) != len(labels) or min(labels, default=0) < 0:
            raise DataError(
                f"dataset {name!r}: {mat_file} has {len(files)} files and {len(labels)} labels "
                f"(labels must be 1..120, one per file); re-download lists.tar ({how_to_get(name)})"
            )
        lists[part] = (files, labels)
    names: dict[int, str] = {}
    for files, labels in lists.values():
        for rel, y in zip(files, labels, strict=True):
            folder = rel.split("/", 1)[0]
            names.setdefault(y, folder.split("-", 1)[1] if "-" in folder else folder)
    class_names = [names.get(y, f"class_{y + 1:03d}") for y in range(max(names) + 1)]
    files, labels = lists[split]
    samples = [(top / "Images" / rel, y) for rel, y in zip(files, labels, strict=True)]
    list_file = top / f"{split}_list.mat"
    return ImageListDataset(
        name, split, samples, class_names, root=root, data_dir=top, source=list_file
    )
