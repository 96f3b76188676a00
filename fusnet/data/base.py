"""Labelled image datasets with one common API, and their checks before training.

Every dataset in :data:`fusnet.data.DATASETS` is an :class:`ImageListDataset` of
``(image, label)`` items: a PIL RGB image (or what the transform makes of it) and an
``int`` in ``[0, num_classes)``. Bad input is caught before training (``verify`` opens
every file, ``check_classes`` rejects empty classes, the constructor out-of-range
labels); a bad image met later raises :class:`~fusnet.errors.DataError` naming the file.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fusnet.errors import DataError

logger = logging.getLogger(__name__)

Sample = tuple[Path, int]
"""One image file and its class index."""



def listing(items: Sequence[str], sep: str = ", ", limit: int = 10) -> str:
    """The first ``limit`` items joined for a message, then "and N more" if there are more."""
    more = f"{sep}and {len(items) - limit} more" if len(items) > limit else ""
    return sep.join(items[:limit]) + more


def missing_image(path: Path | str) -> DataError:
    """The error for an image file that is not there (both image backends)."""
    return DataError(
        f"image {path} is missing; re-download the dataset, or build it with "
        f"skip_bad_images=True to drop missing and corrupt images"
    )


def undecodable_image(path: Path | str, exc: Exception) -> DataError:
    """The error for an image file that does not decode (both image backends)."""
    return DataError(
        f"cannot decode image {path} ({type(exc).__name__}: {exc}); replace the file "
        f"from the official download, or pass --skip-bad-images (skip_bad_images=True) "
        f"to drop files that fail to decode"
    )


def load_rgb(path: Path) -> Image.Image:
    """Open an image file fully decoded as RGB (file closed).

    Raises:
        DataError: the file is missing or cannot be decoded; the message names it.
    """
    try:
        with Image.open(path) as im:
            return to_rgb(im)
    except FileNotFoundError:
        raise missing_image(path) from None
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... on bad files
        raise undecodable_image(path, exc) from exc


HIGH_DEPTH_MODES: tuple[str, ...] = ("I;16", "I;16L", "I;16B", "I;16N", "I")
"""PIL modes of 16- and 32-bit integer (grey) images."""


def to_rgb(image: Image.Image) -> Image.Image:
    """An image as 8-bit RGB; 16-bit grey values are divided by 257 (PIL's
    ``convert("RGB")`` clips them at 255, turning a 16-bit PNG almost white)."""
    if image.mode in HIGH_DEPTH_MODES:
        values = np.asarray(image, dtype=np.float64)
        # 16-bit modes always scale (a dark 16-bit image too); a 32-bit "I" image scales
        # only when it holds values past 8 bits (PIL opens 8-bit grey PNGs as "I" at times).
        if image.mode != "I" or values.max(initial=0) > 255:
            values = values / 257.0
        grey = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def check_image(path: Path, decode: bool = False) -> str | None:
    """What is wrong with one image file: ``None`` when it is fine, else a short reason.

    Args:
        path: image file.
        decode: fully decode the pixels (slow, catches truncated files) instead of
            PIL's cheap ``verify()`` of the file structure.
    """
    if not path.is_file():
        return "missing"
    stamp = _stamp(path) if decode else None
    if stamp is not None and stamp in _DECODED:
        return None
    try:
        with Image.open(path) as im:
            if decode:
                to_rgb(im)
            else:
                im.verify()
    except Exception as exc:  # any PIL failure means the file is unusable
        return f"unreadable ({type(exc).__name__}: {exc})"
    if stamp is not None:
        _DECODED.add(stamp)
    return None


# (path, size, mtime) of files fully decoded in this process: a run building a split
# several times decodes each image once
_DECODED: set[tuple[str, int, int]] = set()


def _stamp(path: Path) -> tuple[str, int, int] | None:
    try:
        info = path.stat()
    except OSError:
        return None
    return (str(path), info.st_size, info.st_mtime_ns)


class ImageListDataset(Dataset):
    """Base of every fusnet dataset: a list of labelled images of one split.

    Attributes:
        name, split: registry name (``"cub200"``, ...) and ``"train"``, ``"test"``, ``"val"``
            or ``"fit"``.
        root: the root folder as the user gave it; ``data_dir``: the one holding the files.
        class_names: ``class_names[label]`` names ``label``.
        samples: ``(path, label)`` per item; ``labels``: (N,) int64 label per item.
        source: the list file the samples came from, named in error messages.
        transform: applied to the loaded image in ``__getitem__`` (``None``: as is).
        image_backend, read_image: "pil" and :func:`load_rgb`, or "tensor" and a (3, H, W)
            uint8 reader (:func:`fusnet.data.tensor_io.set_image_backend` sets both).
    """

    image_backend = "pil"

    def __init__(
        self,
        name: str,
        split: str,
        samples: Sequence[Sample],
        class_names: Sequence[str],
        *,
        root: Path | None = None,
        data_dir: Path | None = None,
        source: Path | None = None,
        transform: Callable[[Image.Image], Any] | None = None,
    ) -> None:
        self.name = name
        self.split = split
        self.root = root
        self.data_dir = data_dir if data_dir is not None else root
        self.class_names = [str(c) for c in class_names]
        self.samples: list[Sample] = [(Path(p), int(y)) for p, y in samples]
        self.labels = np.asarray([y for _, y in self.samples], dtype=np.int64)  # (N,)
        self.source = source
        self.transform = transform
        self.read_image: Callable[[Path], Any] = load_rgb
        self.dropped: list[tuple[Path, str]] = []  # (path, reason) dropped by verify()
        self.skip_bad_images = False  # set by verify(skip_bad_images=True)
        self._check_label_range()

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(class_names)``), including any without images here."""
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = self.load_image(index)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, split={self.split!r}, "
            f"images={len(self)}, classes={self.num_classes}, data_dir={self.data_dir})"
        )

    def load_image(self, index: int) -> Any:
        """The untransformed RGB image of item ``index`` (as ``read_image`` gives it).

        Raises:
            DataError: the image file is missing or corrupt.
        """
        path = self.samples[index][0]
        try:
            return self.read_image(path)
        except DataError as exc:
            if not self.skip_bad_images:
                raise
            raise DataError(  # it decoded when the dataset was checked at the start
                f"image {path} changed after the dataset was checked and no longer decodes "
                f"({exc.__cause__ or 'missing'}); restore or delete the file and rerun "
                "(with --resume for a training run)"
            ) from exc

    def class_counts(self) -> np.ndarray:
        """(num_classes,) int64 number of items per class."""
        return np.bincount(self.labels, minlength=self.num_classes).astype(np.int64)

    def subset(
        self, indices: Sequence[int] | np.ndarray, split: str | None = None
    ) -> ImageListDataset:
        """A copy of the same type holding items ``indices`` in that order (class list
        unchanged), renamed ``split`` if given; this one is not modified."""
        out = copy.copy(self)
        out._take(np.asarray(indices, dtype=np.int64))
        if split is not None:
            out.split = split
        return out

    def _take(self, idx: np.ndarray) -> None:
        """Keep only items ``idx`` (in place). Subclasses with per-item arrays extend it."""
        self.samples = [self.samples[i] for i in idx.tolist()]
        self.labels = self.labels[idx]

    def _where(self) -> str:
        return str(self.source) if self.source is not None else f"dataset {self.name!r}"

    def _check_label_range(self) -> None:
        bad = np.flatnonzero((self.labels < 0) | (self.labels >= self.num_classes))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{self._where()}: label {int(self.labels[i])} of {self.samples[i][0]} is outside "
                f"0..{self.num_classes - 1} ({bad.size} such item(s)); the list file and the "
                f"class list disagree, re-download the dataset's list files"
            )

    def check_classes(self, strict: bool = True) -> None:
        """Check that every class has an item: raise DataError if ``strict``, else warn."""
        empty = np.flatnonzero(self.class_counts() == 0)
        if not empty.size:
            return
        names = listing([self.class_names[i] for i in empty.tolist()])
        msg = (
            f"{self._where()}: {empty.size} class(es) have no image in split {self.split!r}: "
            f"{names}; check the dataset's list files (or the class folders) and "
            f"re-download missing images"
        )
        if strict:
            raise DataError(msg)
        logger.warning(msg)

    def verify(
        self, *, skip_bad_images: bool = False, decode: bool = False
    ) -> list[tuple[Path, str]]:
        """Check that every listed image exists and opens (fully decoded with ``decode``);
        return ``(path, reason)`` of each bad item. A bad item raises a DataError naming the
        files, or with ``skip_bad_images`` is dropped with a warning."""
        self.skip_bad_images = skip_bad_images
        bad: list[tuple[int, Path, str]] = []
        for i, (path, _) in enumerate(
            tqdm(self.samples, desc=f"verify {self.name}/{self.split}", disable=None, leave=False)
        ):
            reason = check_image(path, decode=decode)
            if reason is not None:
                bad.append((i, path, reason))
        if not bad:
            logger.debug("%s/%s: all %d images verified", self.name, self.split, len(self))
            return []
        files = listing([f"{p} ({r})" for _, p, r in bad], sep="; ")
        if not skip_bad_images:
            raise DataError(
                f"{len(bad)} bad image(s) in {self.name}/{self.split} (listed in {self._where()}): "
                f"{files}. Replace them from the official download, or pass "
                f"skip_bad_images=True to drop them"
            )
        logger.warning("dropping %d bad image(s) from %s/%s: %s", len(bad), self.name,
                       self.split, files)
        bad_idx = {i for i, _, _ in bad}
        keep = np.asarray([i for i in range(len(self)) if i not in bad_idx], dtype=np.int64)
        self._take(keep)
        self.dropped = self.dropped + [(p, r) for _, p, r in bad]
        return [(p, r) for _, p, r in bad]
