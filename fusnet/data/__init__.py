"""Datasets of the paper, read from their official downloads, plus a synthetic default.

Use :func:`build_dataset` (``DATASETS`` lists the names; data/README.md each layout)::

    db = build_dataset("cub200", "/data", "train", build_transform(336, train=False))
    fit = build_dataset("cub200", "/data", "fit", build_transform(336, train=True))
"""

from fusnet.data import flowers, generic, official, synthetic  # noqa: F401  (registers loaders)
from fusnet.data.base import ImageListDataset, Sample, check_image, load_rgb
from fusnet.data.registry import DATASETS, SPLITS, DatasetLoader, build_dataset, register_dataset
from fusnet.data.sizes import OFFICIAL_SPLIT_SIZES, PAPER_SPLIT_SIZES, SplitSizes
from fusnet.data.splits import split_train_val, stratified_split
from fusnet.data.synthetic import SyntheticDataset
from fusnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, build_transform, resize_size

__all__ = [
    "DATASETS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "OFFICIAL_SPLIT_SIZES",
    "PAPER_SPLIT_SIZES",
    "SPLITS",
    "DatasetLoader",
    "ImageListDataset",
    "Sample",
    "SplitSizes",
    "SyntheticDataset",
    "build_dataset",
    "build_transform",
    "check_image",
    "load_rgb",
    "register_dataset",
    "resize_size",
    "split_train_val",
    "stratified_split",
]
