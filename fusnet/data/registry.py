"""The dataset registry and :func:`build_dataset`, the one way to get a split.

A loader is a function ``loader(root, split, **options) -> ImageListDataset`` that reads
one *official* split (``"train"`` or ``"test"``) of one dataset. ``build_dataset``
adds the two derived splits and the checks before training.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from fusnet.data.base import ImageListDataset
from fusnet.data.splits import split_train_val
from fusnet.errors import ConfigError
from fusnet.registry import Registry

logger = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "test", "val", "fit")
"""``train``: official training split (the retrieval database). ``test``: official test
split (the queries). ``val``: a seeded per-class share of ``train`` for model selection.
``fit``: ``train`` minus ``val`` (what the network is trained on when ``val`` is used)."""


class DatasetLoader(Protocol):
    """Reads one official split (``"train"`` or ``"test"``) of a dataset."""

    def __call__(self, root: Path | None, split: str, **options: Any) -> ImageListDataset: ...


DATASETS: Registry[DatasetLoader] = Registry("dataset")
"""Dataset name -> loader. Fill it with :func:`register_dataset`."""


def register_dataset(name: str) -> Callable[[DatasetLoader], DatasetLoader]:
    """Decorator adding a loader to :data:`DATASETS` under ``name``.

    Raises:
        ConfigError: ``name`` is already registered.
    """
    return DATASETS.register(name)


def _check_options(name: str, loader: DatasetLoader, options: dict[str, Any]) -> None:
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [p for p, v in params.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"dataset {name!r} has no option(s) {unknown}; its options are {allowed or 'none'}"
        )


def build_dataset(
    name: str,
    root: str | Path | None,
    split: str,
    transform: Callable[[Image.Image], Any] | None = None,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    skip_bad_images: bool = False,
    verify: bool = True,
    decode: bool = False,
    **kwargs: Any,
) -> ImageListDataset:
    """Build one split of a registered dataset, checked before training starts.

    Carves ``"val"``/``"fit"`` from the full official ``"train"`` (so not depending on which
    images turn out bad); then, with ``verify``, opens every image and checks that no class
    is empty (an error for ``train``/``fit``, a warning for ``test``, not checked for ``val``).

    Args:
        name, root, split: a key of :data:`DATASETS`, the folder holding its official
            layout (``None`` for ``"synthetic"``), one of :data:`SPLITS`.
        transform: applied to each PIL RGB image; ``None`` returns PIL images.
        val_fraction: share of each class held out of ``train`` for ``val``.
        seed: seed of the ``val``/``fit`` carving.
        skip_bad_images: drop missing or corrupt images with a warning instead of raising;
            with ``verify`` every image is then fully decoded once, so that files that
            would fail later (caching, training, encoding) are dropped here.
        verify: run the checks (a structural check of each file, ~0.15 ms an image);
            ``False`` defers bad files to ``__getitem__``.
        decode: with ``verify``, fully decode every image (slow; catches truncation).
        **kwargs: the dataset's own options (e.g. ``num_classes`` for ``"synthetic"``).

    Raises:
        ConfigError: unknown dataset, split or option.
        DataError: a missing list file, bad image, out-of-range label or empty class.
    """
    loader = DATASETS.lookup(name)
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r} for dataset {name!r}; use one of {SPLITS}")
    _check_options(name, loader, kwargs)
    official = "test" if split == "test" else "train"
    root_path = Path(root).expanduser() if root is not None else None
    dataset = loader(root_path, official, **kwargs)
    if split in ("val", "fit"):
        fit_idx, val_idx = split_train_val(dataset.labels, val_fraction, seed)
        dataset = dataset.subset(fit_idx if split == "fit" else val_idx, split=split)
    if verify:  # skipping bad images means finding all now: a truncated file passes verify()
        dataset.verify(skip_bad_images=skip_bad_images, decode=decode or skip_bad_images)
        if split != "val":
            dataset.check_classes(strict=split != "test")
    dataset.transform = transform
    logger.info("dataset %s/%s: %d images, %d classes, from %s", name, split, len(dataset),
                dataset.num_classes, dataset.data_dir)
    return dataset
