"""The synthetic default dataset: deterministic, fast, fine-grained, learnable."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from fusnet.data import SyntheticDataset, build_dataset, build_transform
from fusnet.data.synthetic import MAX_CLASSES, class_designs
from fusnet.errors import ConfigError


def test_default_sizes_and_items() -> None:
    train = build_dataset("synthetic", None, "train")
    test = build_dataset("synthetic", None, "test")
    assert isinstance(train, SyntheticDataset)
    assert (len(train), len(test), train.num_classes) == (300, 100, 10)
    assert train.class_counts().tolist() == [30] * 10
    assert train.labels.dtype == np.int64 and len(train.samples) == 300
    assert train.root is None and len(set(train.class_names)) == 10
    image, label = train[299]
    assert isinstance(image, Image.Image) and image.mode == "RGB" and image.size == (64, 64)
    assert label == 9


def test_deterministic_from_seed_and_splits_differ() -> None:
    a = build_dataset("synthetic", None, "train", num_classes=4, train_per_class=5)
    b = build_dataset("synthetic", None, "train", num_classes=4, train_per_class=5)
    c = build_dataset("synthetic", None, "train", num_classes=4, train_per_class=5, data_seed=1)
    t = build_dataset("synthetic", None, "test", num_classes=4, test_per_class=5)
    assert np.array_equal(a.images, b.images)
    assert not np.array_equal(a.images, c.images)
    assert not np.array_equal(a.images, t.images)
    assert np.array_equal(a.designs, t.designs)  # both splits share the class designs
    # build_dataset's own seed carves val; it does not change the images
    v0 = build_dataset("synthetic", None, "val", num_classes=4, train_per_class=10, seed=0)
    v1 = build_dataset("synthetic", None, "val", num_classes=4, train_per_class=10, seed=1)
    full = build_dataset("synthetic", None, "train", num_classes=4, train_per_class=10)
    assert not np.array_equal(v0.images, v1.images)
    assert any((full.images == v1.images[0]).all(axis=(1, 2, 3)))


def test_classes_are_distinct_designs() -> None:
    designs = class_designs(MAX_CLASSES, seed=0)
    assert len({tuple(d) for d in designs.tolist()}) == MAX_CLASSES
    with pytest.raises(ConfigError, match="num_classes"):
        class_designs(MAX_CLASSES + 1, seed=0)


def test_images_vary_within_a_class() -> None:
    ds = build_dataset("synthetic", None, "train", num_classes=2, train_per_class=8)
    same = ds.images[ds.labels == 0].astype(np.float32)  # (8, S, S, 3)
    assert np.abs(same[0] - same[1]).mean() > 10  # own pose, background, tint


def test_generation_is_fast() -> None:
    start = time.perf_counter()
    ds = build_dataset(
        "synthetic", None, "train", num_classes=20, train_per_class=100, verify=False
    )
    elapsed = time.perf_counter() - start
    assert len(ds) == 2000
    assert elapsed < 4.0, f"2,000 synthetic images took {elapsed:.1f} s"


def test_val_and_fit_and_other_sizes() -> None:
    fit = build_dataset("synthetic", None, "fit", val_fraction=0.2)
    val = build_dataset("synthetic", None, "val", val_fraction=0.2)
    assert (len(fit), len(val)) == (240, 60)
    assert fit.images.shape == (240, 64, 64, 3)
    assert val.class_counts().tolist() == [6] * 10
    big = build_dataset("synthetic", "/ignored", "test", image_size=96, test_per_class=2)
    assert big.images.shape == (20, 96, 96, 3)
    x, _ = build_dataset("synthetic", None, "test", build_transform(64, train=True))[0]
    assert x.shape == (3, 64, 64)


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="image_size"):
        build_dataset("synthetic", None, "train", image_size=8)
    with pytest.raises(ConfigError, match="train_per_class"):
        build_dataset("synthetic", None, "train", train_per_class=0)
    with pytest.raises(ConfigError, match="no option"):
        build_dataset("synthetic", None, "train", classes=3)


def _tensor(ds: SyntheticDataset) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(ds.images).permute(0, 3, 1, 2).float() / 255  # (N, 3, S, S)
    return (x - 0.5) / 0.25, torch.from_numpy(ds.labels)


def test_not_trivial_for_a_pixel_nearest_centroid() -> None:
    xtr, ytr = _tensor(build_dataset("synthetic", None, "train"))
    xte, yte = _tensor(build_dataset("synthetic", None, "test"))
    centroids = torch.stack([xtr[ytr == c].mean(0) for c in range(10)]).flatten(1)  # (10, D)
    pred = torch.cdist(xte.flatten(1), centroids).argmin(1)
    assert (pred == yte).float().mean().item() < 0.35


@pytest.mark.slow
def test_learnable_by_a_small_cnn() -> None:
    torch.manual_seed(0)
    xtr, ytr = _tensor(build_dataset("synthetic", None, "train"))
    xte, yte = _tensor(build_dataset("synthetic", None, "test"))

    def block(cin: int, cout: int) -> list[torch.nn.Module]:
        return [
            torch.nn.Conv2d(cin, cout, 3, padding=1),
            torch.nn.GroupNorm(8, cout),
            torch.nn.ReLU(),
        ]

    model = torch.nn.Sequential(
        *block(3, 32),
        torch.nn.MaxPool2d(2),
        *block(32, 64),
        torch.nn.MaxPool2d(2),
        *block(64, 64),
        torch.nn.AdaptiveMaxPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), 32):
            idx = perm[i : i + 32]
            loss = torch.nn.functional.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        accuracy = (model(xte).argmax(1) == yte).float().mean().item()
    assert accuracy > 0.3, f"test accuracy {accuracy:.2f} (chance 0.10)"
