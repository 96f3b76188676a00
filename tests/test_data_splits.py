"""Seeded per-class splits: split_train_val and stratified_split."""

from __future__ import annotations

import numpy as np
import pytest

from fusnet.data import split_train_val, stratified_split
from fusnet.errors import ConfigError


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes)), sizes)


def test_val_is_a_seeded_per_class_share() -> None:
    labels = _labels([30, 29, 45, 10])
    fit, val = split_train_val(labels, 0.1, seed=0)
    assert fit.dtype == np.int64 and val.dtype == np.int64
    assert np.array_equal(np.sort(np.concatenate([fit, val])), np.arange(len(labels)))
    assert np.bincount(labels[val]).tolist() == [3, 3, 5, 1]  # halves round up: 4.5 -> 5
    assert np.all(np.diff(fit) > 0) and np.all(np.diff(val) > 0)


def test_val_is_deterministic_and_depends_on_seed() -> None:
    labels = _labels([40] * 5)
    a = split_train_val(labels, 0.2, seed=3)
    b = split_train_val(labels, 0.2, seed=3)
    c = split_train_val(labels, 0.2, seed=4)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_val_keeps_one_image_for_fitting_and_takes_at_least_one() -> None:
    labels = _labels([1, 2, 3, 5])
    fit, val = split_train_val(labels, 0.1, seed=0)
    counts = np.bincount(labels[val], minlength=4)
    assert counts.tolist() == [0, 1, 1, 1]  # 1-image class keeps it; others give >= 1
    assert np.bincount(labels[fit], minlength=4).min() >= 1
    fit, val = split_train_val(labels, 0.9, seed=0)
    assert np.bincount(labels[fit], minlength=4).tolist() == [1, 1, 1, 1]


def test_a_class_split_does_not_depend_on_other_classes() -> None:
    labels = _labels([20, 20])
    more = _labels([20, 20, 7])
    _, val = split_train_val(labels, 0.25, seed=1)
    _, val_more = split_train_val(more, 0.25, seed=1)
    assert np.array_equal(val, val_more[val_more < 40])


def test_zero_fraction_holds_out_nothing() -> None:
    fit, val = split_train_val(_labels([5, 5]), 0.0, seed=0)
    assert val.size == 0 and fit.size == 10


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_bad_fraction_is_a_config_error(fraction: float) -> None:
    with pytest.raises(ConfigError, match="val_fraction"):
        split_train_val(_labels([5]), fraction, seed=0)


def test_labels_must_be_1d_integers() -> None:
    with pytest.raises(ConfigError, match="1-D"):
        split_train_val(np.zeros((2, 2), dtype=np.int64), 0.1)
    with pytest.raises(ConfigError, match="integers"):
        split_train_val(np.asarray([0.5, 1.0]), 0.1)


def test_stratified_split_sizes() -> None:
    labels = _labels([80] * 17)
    train, test = stratified_split(labels, 0.25, seed=0)
    assert np.bincount(labels[test]).tolist() == [20] * 17
    assert np.bincount(labels[train]).tolist() == [60] * 17
    assert np.intersect1d(train, test).size == 0
    with pytest.raises(ConfigError, match="test_fraction"):
        stratified_split(labels, 0.0)
