"""Deterministic, seeded, per-class (stratified) splits.

Class ``c`` draws from its own stream, ``numpy.random.default_rng([seed, c])``, so its
split depends only on the seed, its index and its own images: other classes change nothing.
Counts round halves up (``0.25 * 10 -> 3``; Python's ``round`` would give 2).
"""

from __future__ import annotations

import numpy as np

from fusnet.errors import ConfigError


def _class_holdout(
    labels: np.ndarray, counts: dict[int, int], seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(keep_idx, holdout_idx)``, sorted int64 indices partitioning ``range(N)``: the
    holdout has ``counts[c]`` random samples of each class ``c`` of the (N,) ``labels``."""
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
    """Carve validation from the (N,) training ``labels``, per class: ``(fit_idx, val_idx)``,
    sorted int64 indices partitioning ``range(N)``.

    A class of ``n >= 2`` images gives ``max(1, round(val_fraction * n))`` to validation, at
    most ``n - 1`` (every class keeps a fitting image); a class of one image keeps it.
    ConfigError for ``val_fraction`` outside ``[0, 1)`` or labels not 1-D integers.
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
    """Split (N,) ``labels`` without an official split (Flowers-17 without
    ``datasplits.mat``, flat image folders) per class: ``(train_idx, test_idx)``, sorted
    int64 indices partitioning ``range(N)``.

    Each class gives ``round(test_fraction * n)`` images to test; unlike
    :func:`split_train_val` no minimum. ConfigError unless ``0 < test_fraction < 1``.
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
