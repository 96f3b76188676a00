"""The official-layout loaders on real photographs (../shared/data: cub100, flowers17,
nabirds33)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fusnet.data import OFFICIAL_SPLIT_SIZES, build_dataset, build_transform
from fusnet.data.flowers import FLOWERS17_CLASSES

CUB100_TRAIN, CUB100_TEST = 2999, 2903
NABIRDS33_TRAIN, NABIRDS33_TEST, NABIRDS33_CLASSES = 606, 620, 33


@pytest.fixture(scope="module")
def cub_train(cub100_root: Path):
    return build_dataset("cub200", cub100_root, "train")


def test_cub100_official_split_sizes(cub_train, cub100_root: Path) -> None:
    test = build_dataset("cub200", cub100_root, "test")
    assert len(cub_train) == CUB100_TRAIN and len(test) == CUB100_TEST
    assert cub_train.num_classes == test.num_classes == 100
    assert cub_train.class_counts().min() >= 29 and test.class_counts().min() >= 1
    assert not {p for p, _ in cub_train.samples} & {p for p, _ in test.samples}


def test_cub100_labels_follow_classes_txt(cub_train, cub100_root: Path) -> None:
    assert cub_train.class_names[0] == "Black_footed_Albatross"
    assert cub_train.labels.dtype == np.int64 and len(cub_train.labels) == len(cub_train)
    top = cub100_root / "CUB_200_2011"
    assert cub_train.root == cub100_root and cub_train.data_dir == top
    folders = sorted(p.name for p in (top / "images").iterdir())
    for path, label in cub_train.samples[::97]:
        assert path.parent.name == folders[label]
        assert path.is_file()


def test_cub100_items_are_pil_rgb_without_transform(cub_train) -> None:
    image, label = cub_train[0]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert label == 0 and isinstance(label, int)


def test_cub100_with_the_paper_transform(cub100_root: Path) -> None:
    ds = build_dataset("cub200", cub100_root, "test", build_transform(224, train=False))
    x, y = ds[len(ds) - 1]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32  # (3, H, W)
    assert y == 99


def test_cub100_fit_and_val_partition_train(cub_train, cub100_root: Path) -> None:
    fit = build_dataset("cub200", cub100_root, "fit", val_fraction=0.1, seed=0)
    val = build_dataset("cub200", cub100_root, "val", val_fraction=0.1, seed=0)
    assert len(fit) + len(val) == CUB100_TRAIN
    assert len(val) == 300  # 3 a class (30 * 0.1, and round(2.9) for the 29-image class)
    assert val.class_counts().min() >= 1
    assert {p for p, _ in fit.samples} | {p for p, _ in val.samples} == {
        p for p, _ in cub_train.samples
    }
    again = build_dataset("cub200", cub100_root, "val", val_fraction=0.1, seed=0, verify=False)
    assert again.samples == val.samples


def test_flowers17_derived_split_sizes(flowers17_root: Path) -> None:
    train = build_dataset("flowers17", flowers17_root, "train")
    test = build_dataset("flowers17", flowers17_root, "test")
    assert (len(train), len(test)) == OFFICIAL_SPLIT_SIZES["flowers17"][:2] == (1020, 340)
    assert train.class_counts().tolist() == [60] * 17
    assert test.class_counts().tolist() == [20] * 17
    assert train.class_names == list(FLOWERS17_CLASSES)
    for path, label in train.samples + test.samples:
        n = int(path.stem.split("_")[1])
        assert label == (n - 1) // 80
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}


def test_flowers17_derived_split_is_seeded(flowers17_root: Path) -> None:
    a = build_dataset("flowers17", flowers17_root, "test", verify=False)
    b = build_dataset("flowers17", flowers17_root, "test", verify=False)
    c = build_dataset("flowers17", flowers17_root, "test", verify=False, split_seed=1)
    assert a.samples == b.samples and a.samples != c.samples
    image, _ = a[0]
    assert image.mode == "RGB"


def test_root_may_point_at_the_top_folder(cub100_root: Path, flowers17_root: Path) -> None:
    ds = build_dataset("cub200", cub100_root / "CUB_200_2011", "test", verify=False)
    assert len(ds) == CUB100_TEST
    fl = build_dataset("flowers17", flowers17_root / "jpg", "test", verify=False)
    assert len(fl) == 340


@pytest.fixture(scope="module")
def nabirds33(nabirds33_root: Path):
    """Both splits, every image fully decoded once (about a second each)."""
    return {split: build_dataset("nabirds", nabirds33_root, split, decode=True)
            for split in ("train", "test")}


def test_nabirds33_split_sizes(nabirds33) -> None:
    train, test = nabirds33["train"], nabirds33["test"]
    assert (len(train), len(test)) == (NABIRDS33_TRAIN, NABIRDS33_TEST)
    assert train.num_classes == test.num_classes == NABIRDS33_CLASSES
    assert train.class_counts().min() >= 10 and test.class_counts().min() >= 10
    assert not {p for p, _ in train.samples} & {p for p, _ in test.samples}


def test_nabirds33_labels_are_classes_txt_order(nabirds33, nabirds33_root: Path) -> None:
    top = nabirds33_root / "nabirds"
    listed = [line.split(" ", 1) for line in (top / "classes.txt").read_text().splitlines()]
    ids = [int(cid) for cid, _ in listed]
    assert ids == sorted(ids)  # so classes.txt order is the loader's sorted-id order
    for ds in nabirds33.values():
        assert ds.data_dir == top and ds.class_names == [name for _, name in listed]
        assert sorted(set(ds.labels.tolist())) == list(range(NABIRDS33_CLASSES))
        for path, label in ds.samples:  # images/<class_id:04d>/<file>.jpg
            assert int(path.parent.name) == ids[label]


def test_nabirds33_items_are_450px_rgb(nabirds33) -> None:
    test = nabirds33["test"]
    for i in (0, len(test) - 1):
        image, label = test[i]
        assert image.mode == "RGB" and image.size == (450, 450)
        assert label == test.samples[i][1]


def test_nabirds33_warns_that_it_has_no_hierarchy(nabirds33_root: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="fusnet.data.official"):
        build_dataset("nabirds", nabirds33_root, "test", verify=False)
    assert any("hierarchy.txt not found" in r.getMessage() for r in caplog.records)


def test_nabirds33_passes_fusnet_data_verify(nabirds33_root: Path, capsys) -> None:
    from fusnet.cli import main

    assert main(["data", "verify", "nabirds", "--root", str(nabirds33_root)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"nabirds train: {NABIRDS33_TRAIN} images, {NABIRDS33_CLASSES} classes",
        f"nabirds test: {NABIRDS33_TEST} images, {NABIRDS33_CLASSES} classes"]


def test_the_cpu_recipe_points_nabirds_at_the_subset(nabirds33_root: Path) -> None:
    from fusnet.experiments import ExperimentConfig
    from fusnet.experiments.config import recipe_run_config

    exp = ExperimentConfig.from_parameters("03_ablation", profile="cpu", datasets=["nabirds"],
                                           bits=[12])
    root = exp.dataset_root("nabirds")
    if not Path(root).is_dir():  # FUSNET_SHARED_DATA elsewhere, no ../shared beside the repo
        pytest.skip(f"the cpu recipe's folder {root} is not here")
    assert exp.dataset_root("nabirds", resolve=False) == "../shared/data/nabirds33"
    config = exp.run_config("nabirds", 12)
    assert config.data.dataset == "nabirds" and config.data.root == root
    assert recipe_run_config("cpu", "nabirds").data.root == root
    assert len(build_dataset("nabirds", root, "test", verify=False)) == NABIRDS33_TEST
