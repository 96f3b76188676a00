"""Loaders of the datasets we cannot ship, on tiny trees in their official layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from fusnet.data import DATASETS, OFFICIAL_SPLIT_SIZES, PAPER_SPLIT_SIZES, build_dataset
from fusnet.errors import ConfigError, DataError


def _jpeg(path: Path, shade: int = 128) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 10), (shade % 256, 60, 200)).save(path, "JPEG")
    return path


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cells(strings: list[str]) -> np.ndarray:
    """A MATLAB cell column of strings, as the official .mat lists store them."""
    out = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        out[i, 0] = s
    return out


def _check(ds, n: int, counts: list[int]) -> None:
    assert len(ds) == n == len(ds.labels) == len(ds.samples)
    assert ds.class_counts().tolist() == counts
    assert ds.labels.dtype == np.int64
    image, label = ds[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and label == ds.labels[0]


def test_every_loader_is_registered_with_its_official_sizes() -> None:
    expected = {"cub200", "aircraft", "nabirds", "food101", "vegfru", "stanford_dogs"}
    expected |= {"flowers17", "flowers102", "imagefolder", "csv", "synthetic"}
    assert expected <= set(DATASETS)
    assert OFFICIAL_SPLIT_SIZES["cub200"] == (5994, 5794, 200)
    assert OFFICIAL_SPLIT_SIZES["aircraft"] == (6667, 3333, 100)
    assert OFFICIAL_SPLIT_SIZES["nabirds"] == (23929, 24633, 555)
    assert OFFICIAL_SPLIT_SIZES["food101"] == (75750, 25250, 101)
    assert OFFICIAL_SPLIT_SIZES["vegfru"] == (29200, 116931, 292)
    assert OFFICIAL_SPLIT_SIZES["stanford_dogs"] == (12000, 8580, 120)
    assert OFFICIAL_SPLIT_SIZES["flowers102"] == (2040, 6149, 102)
    assert OFFICIAL_SPLIT_SIZES["flowers17"] == (1020, 340, 17)
    # the paper swaps NABirds' train and test
    nab, paper = OFFICIAL_SPLIT_SIZES["nabirds"], PAPER_SPLIT_SIZES["nabirds"]
    assert (nab.train, nab.test) == (paper.test, paper.train)


# --- FGVC-Aircraft -----------------------------------------------------------------

AIRCRAFT_VARIANTS = ["707-320", "Cessna 172", "F/A-18"]


@pytest.fixture
def aircraft_root(tmp_path: Path) -> Path:
    data = tmp_path / "fgvc-aircraft-2013b" / "data"
    _write(data / "variants.txt", AIRCRAFT_VARIANTS)
    image_id = 1000000
    for part, per_class in (("trainval", 4), ("test", 2)):
        lines = []
        for variant in AIRCRAFT_VARIANTS:
            for _ in range(per_class):
                image_id += 1
                _jpeg(data / "images" / f"{image_id}.jpg", image_id)
                lines.append(f"{image_id} {variant}")
        _write(data / f"images_variant_{part}.txt", lines)
    return tmp_path


def test_aircraft_reads_trainval_and_test(aircraft_root: Path) -> None:
    train = build_dataset("aircraft", aircraft_root, "train")
    test = build_dataset("aircraft", aircraft_root, "test")
    _check(train, 12, [4, 4, 4])
    _check(test, 6, [2, 2, 2])
    assert train.class_names == AIRCRAFT_VARIANTS  # names with spaces and slashes intact
    top = build_dataset("aircraft", aircraft_root / "fgvc-aircraft-2013b", "test")
    assert top.samples == test.samples


def test_aircraft_rejects_unknown_level_and_unknown_variant(aircraft_root: Path) -> None:
    with pytest.raises(ConfigError, match="annotation_level"):
        build_dataset("aircraft", aircraft_root, "test", annotation_level="model")
    data = aircraft_root / "fgvc-aircraft-2013b" / "data"
    _write(data / "images_variant_test.txt", ["1000001 Boeing 999"])
    with pytest.raises(DataError, match=r"images_variant_test\.txt.*Boeing 999"):
        build_dataset("aircraft", aircraft_root, "test")


# --- NABirds ---------------------------------------------------------------------


@pytest.fixture
def nabirds_root(tmp_path: Path) -> Path:
    top = tmp_path / "nabirds"
    # taxonomy: 0 -> 1 -> {295, 313, 400}; 2 is an inner node without images
    _write(
        top / "classes.txt",
        [
            "0 Birds",
            "1 Perching Birds",
            "2 Waterfowl",
            "295 Oak Titmouse",
            "313 Bushtit",
            "400 Cedar Waxwing",
        ],
    )
    _write(top / "hierarchy.txt", ["1 0", "2 0", "295 1", "313 1", "400 1"])
    images, labels, split = [], [], []
    for cls, (n_train, n_test) in {313: (3, 2), 295: (2, 4), 400: (1, 1)}.items():
        for k in range(n_train + n_test):
            uuid = f"{cls:04d}aaaa-{k:04d}-4000-8000-000000000000"
            rel = f"{cls:04d}/{uuid.replace('-', '')}.jpg"
            _jpeg(top / "images" / rel, k)
            images.append(f"{uuid} {rel}")
            labels.append(f"{uuid} {cls}")
            split.append(f"{uuid} {int(k < n_train)}")
    _write(top / "images.txt", images)
    _write(top / "image_class_labels.txt", labels)
    _write(top / "train_test_split.txt", split)
    return tmp_path


def test_nabirds_remaps_leaf_classes_in_id_order(nabirds_root: Path) -> None:
    train = build_dataset("nabirds", nabirds_root, "train")
    test = build_dataset("nabirds", nabirds_root, "test")
    assert train.class_names == ["Oak Titmouse", "Bushtit", "Cedar Waxwing"]  # ids 295, 313, 400
    _check(train, 6, [2, 3, 1])
    _check(test, 7, [4, 2, 1])
    assert all(p.parent.name == f"{[295, 313, 400][y]:04d}" for p, y in test.samples)


def test_nabirds_rejects_images_labelled_with_inner_nodes(nabirds_root: Path) -> None:
    top = nabirds_root / "nabirds"
    lines = (top / "image_class_labels.txt").read_text().splitlines()
    lines[0] = lines[0].split()[0] + " 1"
    _write(top / "image_class_labels.txt", lines)
    with pytest.raises(DataError, match="non-leaf"):
        build_dataset("nabirds", nabirds_root, "train")


# --- Food-101 ----------------------------------------------------------------------

FOOD_CLASSES = ["apple_pie", "baby_back_ribs", "baklava"]


@pytest.fixture
def food_root(tmp_path: Path) -> Path:
    top = tmp_path / "food-101"
    _write(top / "meta" / "classes.txt", FOOD_CLASSES)
    for part, ids in (("train", range(100, 104)), ("test", range(200, 202))):
        entries = [f"{c}/{i}" for c in FOOD_CLASSES for i in ids]
        for entry in entries:
            _jpeg(top / "images" / f"{entry}.jpg")
        _write(top / "meta" / f"{part}.txt", entries)
    return tmp_path


def test_food101_reads_meta_lists(food_root: Path) -> None:
    train = build_dataset("food101", food_root, "train")
    _check(train, 12, [4, 4, 4])
    test = build_dataset("food101", food_root / "food-101", "test")
    _check(test, 6, [2, 2, 2])
    assert test.class_names == FOOD_CLASSES
    assert test.samples[-1][0].name == "201.jpg" and test.samples[-1][1] == 2


# --- VegFru ------------------------------------------------------------------------


def _vegfru_tree(root: Path, first_label: int) -> None:
    classes = [("veg200_images", "celery"), ("veg200_images", "leek"), ("fru92_images", "mango")]
    for part, per_class in (("train", 3), ("val", 1), ("test", 5)):
        lines = []
        for label, (group, cls) in enumerate(classes, start=first_label):
            for k in range(per_class):
                rel = f"{group}/{cls}/{part}_{k}.jpg"
                _jpeg(root / rel)
                lines.append(f"{rel} {label}")
        _write(root / "vegfru_list" / f"vegfru_{part}.txt", lines)


@pytest.mark.parametrize("first_label", [0, 1])
def test_vegfru_reads_train_list_alone(tmp_path: Path, first_label: int) -> None:
    _vegfru_tree(tmp_path / "vegfru", first_label)
    train = build_dataset("vegfru", tmp_path, "train")
    test = build_dataset("vegfru", tmp_path / "vegfru", "test")
    _check(train, 9, [3, 3, 3])  # vegfru_val.txt is not part of train
    _check(test, 15, [5, 5, 5])
    assert train.class_names == ["celery", "leek", "mango"]


# --- Stanford Dogs ---------------------------------------------------------------

DOG_FOLDERS = ["n02085620-Chihuahua", "n02085782-Japanese_spaniel", "n02116738-African_hunting_dog"]


@pytest.fixture
def dogs_root(tmp_path: Path) -> Path:
    for part, per_class in (("train", 4), ("test", 3)):
        files, labels = [], []
        for label, folder in enumerate(DOG_FOLDERS, start=1):
            for k in range(per_class):
                rel = f"{folder}/{folder.split('-')[0]}_{part}{k}.jpg"
                _jpeg(tmp_path / "Images" / rel)
                files.append(rel)
                labels.append(label)
        scipy.io.savemat(
            tmp_path / f"{part}_list.mat",
            {
                "file_list": _cells(files),
                "annotation_list": _cells([f[:-4] for f in files]),
                "labels": np.asarray(labels, dtype=np.uint8)[:, None],
            },
        )
    return tmp_path


def test_stanford_dogs_reads_mat_lists(dogs_root: Path) -> None:
    train = build_dataset("stanford_dogs", dogs_root, "train")
    test = build_dataset("stanford_dogs", dogs_root, "test")
    _check(train, 12, [4, 4, 4])
    _check(test, 9, [3, 3, 3])
    assert train.class_names == ["Chihuahua", "Japanese_spaniel", "African_hunting_dog"]
    assert test.samples[0][0] == dogs_root / "Images" / DOG_FOLDERS[0] / "n02085620_test0.jpg"


# --- Oxford Flowers-102 ------------------------------------------------------------


@pytest.fixture
def flowers102_root(tmp_path: Path) -> Path:
    n_images = 24  # 3 classes x 8 images, interleaved labels
    labels = np.asarray([1 + i % 3 for i in range(n_images)], dtype=np.uint8)
    for n in range(1, n_images + 1):
        _jpeg(tmp_path / "jpg" / f"image_{n:05d}.jpg", n)
    scipy.io.savemat(tmp_path / "imagelabels.mat", {"labels": labels[None, :]})
    ids = np.arange(1, n_images + 1)
    scipy.io.savemat(
        tmp_path / "setid.mat",
        {"trnid": ids[None, 0:3], "valid": ids[None, 3:6], "tstid": ids[None, 6:]},
    )
    return tmp_path


def test_flowers102_train_is_trnid_plus_valid(flowers102_root: Path) -> None:
    train = build_dataset("flowers102", flowers102_root, "train")
    test = build_dataset("flowers102", flowers102_root, "test")
    _check(train, 6, [2, 2, 2])
    _check(test, 18, [6, 6, 6])
    assert train.samples[0] == (flowers102_root / "jpg" / "image_00001.jpg", 0)
    assert train.class_names == ["class_001", "class_002", "class_003"]


def test_flowers102_rejects_ids_beyond_the_labels(flowers102_root: Path) -> None:
    scipy.io.savemat(
        flowers102_root / "setid.mat", {"trnid": [[1, 99]], "valid": [[2]], "tstid": [[3]]}
    )
    with pytest.raises(DataError, match=r"setid\.mat.*99"):
        build_dataset("flowers102", flowers102_root, "train")


# --- Oxford Flowers-17 with the official datasplits.mat ----------------------------


@pytest.fixture
def flowers17_split_root(tmp_path: Path) -> Path:
    base = tmp_path / "flowers17"  # as `fusnet data download flowers17` lays it out
    names = []
    trn, val, tst = [], [], []
    for c in range(17):
        numbers = [c * 80 + k for k in range(1, 5)]  # 4 images a class
        for n in numbers:
            _jpeg(base / "jpg" / f"image_{n:04d}.jpg", n)
            names.append(f"image_{n:04d}.jpg")
        trn.append(numbers[0])
        val.append(numbers[1])
        tst += numbers[2:]
    _write(base / "jpg" / "files.txt", names)
    scipy.io.savemat(
        base / "datasplits.mat",
        {
            "trn1": np.asarray(trn)[None, :],
            "val1": np.asarray(val)[None, :],
            "tst1": np.asarray(tst)[None, :],
            "trn2": np.asarray(tst)[None, :],
            "val2": np.asarray(val)[None, :],
            "tst2": np.asarray(trn)[None, :],
        },
    )
    return base


def test_flowers17_uses_datasplits_mat(flowers17_split_root: Path) -> None:
    train = build_dataset("flowers17", flowers17_split_root, "train")
    test = build_dataset("flowers17", flowers17_split_root, "test")
    _check(train, 34, [2] * 17)
    _check(test, 34, [2] * 17)
    assert train.source == flowers17_split_root / "datasplits.mat"
    assert {int(p.stem[6:]) for p, _ in train.samples} == {
        c * 80 + k for c in range(17) for k in (1, 2)
    }
    parent = build_dataset("flowers17", flowers17_split_root.parent, "train", verify=False)
    assert parent.samples == train.samples
    other = build_dataset("flowers17", flowers17_split_root, "test", datasplit=2)
    _check(other, 17, [1] * 17)
    with pytest.raises(DataError, match=r"datasplits\.mat has no variable 'trn3'"):
        build_dataset("flowers17", flowers17_split_root, "train", datasplit=3)


# --- generic: imagefolder and csv ---------------------------------------------------


def test_imagefolder_with_train_and_test_folders(tmp_path: Path) -> None:
    for part, per_class in (("train", 3), ("test", 2)):
        for cls in ("daisy", "rose", "tulip"):
            for k in range(per_class):
                _jpeg(tmp_path / part / cls / f"{k}.jpg")
    (tmp_path / "train" / "rose" / "notes.txt").write_text("not an image")
    _jpeg(tmp_path / "train" / "zinnia" / "0.jpg")  # a class only in train
    train = build_dataset("imagefolder", tmp_path, "train")
    test = build_dataset("imagefolder", tmp_path, "test", verify=False)
    assert train.class_names == test.class_names == ["daisy", "rose", "tulip", "zinnia"]
    _check(train, 10, [3, 3, 3, 1])
    assert test.class_counts().tolist() == [2, 2, 2, 0]


def test_imagefolder_flat_is_split_per_class(tmp_path: Path) -> None:
    for cls, n in (("a", 10), ("b", 5)):
        for k in range(n):
            _jpeg(tmp_path / cls / f"{k}.jpg")
    train = build_dataset("imagefolder", tmp_path, "train")
    test = build_dataset("imagefolder", tmp_path, "test")
    _check(train, 12, [8, 4])
    _check(test, 3, [2, 1])  # 20 % of each class
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}
    other = build_dataset("imagefolder", tmp_path, "test", test_fraction=0.5, split_seed=3)
    assert other.class_counts().tolist() == [5, 3]  # 2.5 rounds up


def test_imagefolder_needs_both_split_folders(tmp_path: Path) -> None:
    _jpeg(tmp_path / "train" / "a" / "0.jpg")
    with pytest.raises(DataError, match="test"):
        build_dataset("imagefolder", tmp_path, "train")


def test_csv_with_integer_labels_and_classes_txt(tmp_path: Path) -> None:
    for part, n in (("train", 4), ("test", 2)):
        rows = ["path,label"]
        for k in range(n):
            rows.append(f"img/{part}{k}.jpg,{k % 2}")
            _jpeg(tmp_path / "img" / f"{part}{k}.jpg")
        _write(tmp_path / f"{part}.csv", rows)
    _write(tmp_path / "classes.txt", ["Christ Church", "Radcliffe Camera"])
    train = build_dataset("csv", tmp_path, "train")
    _check(train, 4, [2, 2])
    assert train.class_names == ["Christ Church", "Radcliffe Camera"]


def test_csv_with_name_labels(tmp_path: Path) -> None:
    _write(tmp_path / "train.csv", ["path,label", "a.jpg,zebra", "b.jpg,ant", "c.jpg,bee"])
    _write(tmp_path / "test.csv", ["path,label", "d.jpg,bee"])
    for f in "abcd":
        _jpeg(tmp_path / f"{f}.jpg")
    train = build_dataset("csv", tmp_path, "train")
    assert train.class_names == ["ant", "bee", "zebra"]  # sorted over both files
    assert train.labels.tolist() == [2, 0, 1]
    test = build_dataset("csv", tmp_path, "test")
    assert test.labels.tolist() == [1]


def test_csv_needs_path_and_label_columns(tmp_path: Path) -> None:
    _write(tmp_path / "train.csv", ["file,class", "a.jpg,0"])
    with pytest.raises(DataError, match=r"train\.csv.*'path' and 'label'"):
        build_dataset("csv", tmp_path, "train")
