"""Official split sizes of each dataset, and the sizes the paper reports.

``OFFICIAL_SPLIT_SIZES`` is what the loaders must produce from an unmodified official
download (``train`` = the retrieval database, ``test`` = the queries). The tests check
it on the real data we have and on fixture trees for the rest.

``PAPER_SPLIT_SIZES`` copies Tables 1 and 2 of the paper. Where they disagree:

- NABirds: the paper gives 24,633 training / 23,929 test images; the official
  ``train_test_split.txt`` marks 23,929 images for training and 24,633 for test. The
  paper swapped the two; we follow the official file.
- VegFru: the paper counts 290 classes; the dataset has 292 (200 vegetables + 92
  fruits). Its 29,200 training images are ``vegfru_train.txt`` alone (100 a class),
  not train + val (43,800).
- Table 2's "Flowers" (5 classes, 4,322 images) cites Nilsback & Zisserman but is
  neither Oxford Flowers-17 nor -102; "Buildings" (Oxford 5k) is given 17 classes,
  though the Oxford Buildings set has 11 landmarks (5,062 images). These, Animals-90
  and BJFU100 have no official split; load them with ``"imagefolder"`` or ``"csv"``.
"""

from __future__ import annotations

from typing import NamedTuple


class SplitSizes(NamedTuple):
    """Number of images in each official split, and of classes."""

    train: int
    test: int
    num_classes: int


OFFICIAL_SPLIT_SIZES: dict[str, SplitSizes] = {
    "cub200": SplitSizes(5994, 5794, 200),
    "aircraft": SplitSizes(6667, 3333, 100),
    "nabirds": SplitSizes(23929, 24633, 555),
    "food101": SplitSizes(75750, 25250, 101),
    "vegfru": SplitSizes(29200, 116931, 292),
    "stanford_dogs": SplitSizes(12000, 8580, 120),
    "flowers102": SplitSizes(2040, 6149, 102),
    # official datasplits.mat: 40 train + 20 val (our train) / 20 test per class; the
    # seeded split used without that file has the same sizes (60 / 20 per class).
    "flowers17": SplitSizes(1020, 340, 17),
}
"""Official ``(train, test, classes)`` per registered dataset with an official split."""

PAPER_SPLIT_SIZES: dict[str, SplitSizes] = {
    # Table 1
    "cub200": SplitSizes(5994, 5794, 200),
    "aircraft": SplitSizes(6667, 3333, 100),
    "food101": SplitSizes(75750, 25250, 101),
    "nabirds": SplitSizes(24633, 23929, 555),  # swapped w.r.t. the official split
    "vegfru": SplitSizes(29200, 116931, 290),  # the dataset has 292 classes
    # Table 2
    "stanford_dogs": SplitSizes(12000, 8580, 120),
    "flowers5": SplitSizes(3459, 863, 5),
    "animals90": SplitSizes(4320, 1080, 90),
    "oxford5k": SplitSizes(4057, 1006, 17),
    "bjfu100": SplitSizes(8000, 2000, 100),
}
"""``(train, test, classes)`` as printed in the paper's Tables 1 and 2."""
