"""Deterministic, seeded, per-class (stratified) splits.

Every class draws from its own random stream, ``numpy.random.default_rng([seed, c])``,
so a class's split depends only on the seed, its class index and its own image list:
adding or removing another class changes nothing else.
"""

from __future__ import annotations

import numpy as np

from fusnet.errors import ConfigError


def _class_holdout(
    labels: np.ndarray, counts: dict[int, int], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``counts[c]`` randomly chosen samples of each class ``c``.

    Args:
        labels: (N,) int class index per sample.
        counts: class -> number of samples to hold out.
        seed: random seed.

    Returns:
        ``(keep_idx, holdout_idx)``: sorted int64 index arrays that partition ``range(N)``.
    """
    held: list[np.ndarray] = []
    for c, k in counts.items():
        members = np.flatnonzero(labels == c)  # (n_c,) ascending
        if k <= 0:
            continue
        rng = np.random.default_rng([seed, int(c)])
        held.append(rng.permutation(members)[:k])
    holdout = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[holdout] = False
    return np.flatnonzero(mask).astype(np.int64), holdout.astype(np.int64)


def _round_half_up(x: float) -> int:
    """Round to the nearest integer, halves up (Python's ``round`` rounds halves to even)."""
    return int(np.floor(x + 0.5))


def _check_labels(labels: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ConfigError(f"labels must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def split_train_val(
    labels: np.ndarray | list[int], val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation split from the training split, per class.

    Each class with ``n >= 2`` images gives ``max(1, round(val_fraction * n))``
    images (halves round up) to validation, capped at ``n - 1`` so that every class
    keeps at least one fitting image; a class with a single image keeps it for fitting. With
    ``val_fraction == 0`` nothing is held out.

    Args:
        labels: (N,) class index of each training image.
        val_fraction: share of each class to hold out, in ``[0, 1)``.
        seed: random seed; the same seed and labels always give the same split.

    Returns:
        ``(fit_idx, val_idx)``: sorted int64 indices into ``labels``; disjoint, and
        together they cover every index once.

    Raises:
        ConfigError: ``val_fraction`` outside ``[0, 1)`` or labels not 1-D integers.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    arr = _check_labels(labels)
    counts: dict[int, int] = {}
    if val_fraction > 0:
        classes, sizes = np.unique(arr, return_counts=True)
        for c, n in zip(classes.tolist(), sizes.tolist(), strict=True):
            counts[c] = 0 if n < 2 else min(n - 1, max(1, _round_half_up(val_fraction * n)))
    return _class_holdout(arr, counts, seed)


def stratified_split(
    labels: np.ndarray | list[int], test_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Split a labelled image list into train and test, ``round(test_fraction * n)`` per class.

    Halves round up (``0.25 * 10 -> 3``).

    Used where a dataset ships without an official split (Flowers-17 without
    ``datasplits.mat``, a flat image folder). Unlike :func:`split_train_val` there is
    no minimum: a class too small to give one image stays wholly in train.

    Args:
        labels: (N,) class index of each image.
        test_fraction: share of each class for the test split, in ``(0, 1)``.
        seed: random seed.

    Returns:
        ``(train_idx, test_idx)``: sorted int64 indices, a partition of ``range(N)``.

    Raises:
        ConfigError: ``test_fraction`` outside ``(0, 1)``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    arr = _check_labels(labels)
    classes, sizes = np.unique(arr, return_counts=True)
    counts = {
        c: _round_half_up(test_fraction * n)
        for c, n in zip(classes.tolist(), sizes.tolist(), strict=True)
    }
    return _class_holdout(arr, counts, seed)
