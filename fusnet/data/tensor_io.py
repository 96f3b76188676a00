"""Tensor input pipeline (off by default): JPEG decoding to uint8 tensors and the paper's
transforms on them, a faster alternative to PIL and :mod:`fusnet.data.transforms`.

:func:`read_image_tensor` decodes JPEGs (recognised by their first bytes) with
``torchvision.io.decode_jpeg`` into (3, H, W) uint8 RGB, other formats through PIL.
:func:`build_tensor_transform` builds the recipes of
:func:`~fusnet.data.transforms.build_transform` with the same parameters as
``torchvision.transforms.v2`` transforms, ending in a normalised (3, S, S) float32 tensor.
:func:`set_image_backend` switches a dataset to it::

    set_image_backend(dataset, "tensor", build_image_transform(224, image_backend="tensor"))

Kernels: ``"v2"`` is torchvision's own, on uint8 until the final ``ToDtype`` +
``Normalize``. ``"fast"`` (default, :mod:`fusnet.data.tensor_kernels`) draws the same
random parameters in the same order (reusing v2's ``make_params``) with cheaper kernels:
crop, nearest rotation and flip as one gather (pixel for pixel v2's ``grid_sample``,
but for rare half-pixel ties) and the colour jitter on float32 with a direct hue
rotation (v2 rounds to uint8 after each jitter step: 1-2 grey levels apart on average).
benchmarks/bench_input.py: the fast kernels load and transform 2.0-2.4x as many CUB
images a second as the PIL path at 224 px; v2's own are slower than PIL (0.63x).

Against the PIL path: the test transform differs by isolated one-level pixels (both use
libjpeg-turbo; torch's uint8 resize ports Pillow's; tests/test_tensor_io.py measures it);
training augmentations draw by different code, so a seed differs between the paths.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg, read_file
from torchvision.transforms import v2

from fusnet.data.base import ImageListDataset, load_rgb, missing_image, undecodable_image
from fusnet.data.tensor_kernels import FastColorJitter, FastCropRotateFlip, ToNormalizedFloat
from fusnet.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PAPER_IMAGE_SIZE,
    build_transform,
    resize_size,
)
from fusnet.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
"""First bytes of every JPEG file (SOI marker and the next marker's 0xFF)."""

IMAGE_BACKENDS: tuple[str, ...] = ("pil", "tensor")
"""Values of ``image_backend``: PIL images (the default) or decoded uint8 tensors."""

KERNELS: tuple[str, ...] = ("fast", "v2")
"""Kernel sets of :func:`build_tensor_transform` (module docstring)."""


def read_image_tensor(path: str | Path) -> torch.Tensor:
    """Read an image file as a (3, H, W) uint8 RGB tensor.

    JPEGs are decoded by ``decode_jpeg`` (grey and CMYK converted to RGB); other formats
    (PNG, BMP, ...) go through :func:`fusnet.data.base.load_rgb` (16-bit grey scaled).

    Raises:
        DataError: the file is missing, unreadable or does not decode; the message names it.
    """
    path = Path(path)
    try:
        data = read_file(str(path))  # (num_bytes,) uint8
    except Exception as exc:  # torchvision raises RuntimeError for missing or empty files
        if not path.exists():
            raise missing_image(path) from None
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    if data[: len(JPEG_MAGIC)].numpy().tobytes() != JPEG_MAGIC:
        logger.debug("%s is not a JPEG file; decoding it with PIL", path)
        array = np.asarray(load_rgb(path))  # (H, W, 3) uint8
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)
    try:
        return decode_jpeg(data, mode=ImageReadMode.RGB)  # (3, H, W) uint8, channels-last strides
    except Exception as exc:  # torchvision raises RuntimeError on corrupt or truncated data
        raise undecodable_image(path, exc) from exc


def set_image_backend(
    dataset: ImageListDataset, image_backend: str, transform: Callable[[Any], Any] | None
) -> ImageListDataset:
    """Choose how ``dataset`` (returned, for chaining) loads its images, in place: "pil"
    (PIL RGB images, the default) or "tensor" ((3, H, W) uint8 from :func:`read_image_tensor`),
    with a ``transform`` that takes them (:func:`build_image_transform`; None: as loaded).
    ConfigError for an unknown backend, or "tensor" for a dataset that makes its images
    itself (the synthetic one).
    """
    if image_backend not in IMAGE_BACKENDS:
        raise ConfigError(f"image_backend must be one of {IMAGE_BACKENDS}, got {image_backend!r}")
    if image_backend == "tensor" and type(dataset).load_image is not ImageListDataset.load_image:
        raise ConfigError(
            f"{type(dataset).__name__} makes its images itself (its own load_image) instead "
            f"of reading image files; the tensor backend applies only to datasets of files"
        )
    dataset.image_backend = image_backend
    dataset.read_image = read_image_tensor if image_backend == "tensor" else load_rgb
    dataset.transform = transform
    return dataset


def build_image_transform(
    image_size: int = PAPER_IMAGE_SIZE,
    train: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    augment: str = "paper",
    image_backend: str = "pil",
) -> Callable[[Any], torch.Tensor]:
    """:func:`~fusnet.data.transforms.build_transform` ("pil") or :func:`build_tensor_transform`
    ("tensor", fast kernels), by one flag; ConfigError for an unknown one."""
    if image_backend not in IMAGE_BACKENDS:
        raise ConfigError(f"image_backend must be one of {IMAGE_BACKENDS}, got {image_backend!r}")
    if image_backend == "tensor":
        return build_tensor_transform(image_size, train, mean, std, augment)
    return build_transform(image_size, train, mean, std, augment)


def build_tensor_transform(
    image_size: int = PAPER_IMAGE_SIZE,
    train: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    augment: str = "paper",
    kernels: str = "fast",
) -> v2.Compose:
    """The recipes of :func:`fusnet.data.transforms.build_transform` on uint8 tensors.

    Same steps and parameters as the PIL transforms (resizes antialiased, rotation
    nearest with zero fill), then float conversion and normalisation.

    Args:
        image_size, train, mean, std, augment: as for
            :func:`~fusnet.data.transforms.build_transform`.
        kernels: "fast" (default) or "v2" (torchvision's kernels throughout).

    Returns:
        (3, H, W) uint8 RGB -> normalised (3, image_size, image_size) float32; ConfigError
        for a bad ``image_size``, ``augment`` or ``kernels``.
    """
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    if kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if train and augment not in ("paper", "mild"):
        raise ConfigError(f"augment must be 'paper' or 'mild', got {augment!r}")
    fast = kernels == "fast"
    if fast and not hasattr(v2.Transform, "make_params"):  # public from torchvision 0.21
        raise ConfigError(
            "kernels='fast' needs torchvision >= 0.21 (v2 Transform.make_params and "
            "transform); use kernels='v2' or upgrade torchvision"
        )
    bilinear = v2.InterpolationMode.BILINEAR
    resize = v2.Resize(resize_size(image_size), interpolation=bilinear, antialias=True)
    to_float = v2.ToDtype(torch.float32, scale=True)
    normalize = v2.Normalize(list(mean), list(std))
    if not train:
        tail = [ToNormalizedFloat(mean, std)] if fast else [to_float, normalize]
        return v2.Compose([resize, v2.CenterCrop(image_size), *tail])
    if augment == "mild":
        crop = v2.RandomResizedCrop(image_size, (0.35, 1.0), interpolation=bilinear, antialias=True)
        head = [crop, v2.RandomHorizontalFlip(p=0.5)]
        jitter = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2}
    else:
        if fast:
            head = [resize, FastCropRotateFlip(image_size, 30, 0.7)]
        else:
            head = [resize, v2.RandomCrop(image_size), v2.RandomRotation(30),
                    v2.RandomHorizontalFlip(p=0.7)]
        jitter = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.5}
    if fast:
        return v2.Compose([*head, FastColorJitter(**jitter, mean=mean, std=std)])
    return v2.Compose([*head, v2.ColorJitter(**jitter), to_float, normalize])
