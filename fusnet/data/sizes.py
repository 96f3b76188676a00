"""Official split sizes of each dataset, and the sizes the paper reports.

``OFFICIAL_SPLIT_SIZES`` is what the loaders must produce from an unmodified official
download (``train`` = the retrieval database, ``test`` = the queries); the tests check
it. ``PAPER_SPLIT_SIZES`` copies Tables 1 and 2, which differ for NABirds (the paper
swaps the split) and VegFru (290 classes; the dataset has 292); data/README.md tells
these and Table 2's sets without an official split.
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
