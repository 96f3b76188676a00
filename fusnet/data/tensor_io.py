"""Tensor input pipeline: JPEG decoding to uint8 tensors and the paper's transforms on them.

The default input path of fusnet opens images with PIL and applies the torchvision v1
transforms of :mod:`fusnet.data.transforms`. This module is the faster alternative, off
by default:

* :func:`read_image_tensor` reads a file and decodes it with
  :func:`torchvision.io.decode_jpeg` into a (3, H, W) uint8 RGB tensor. Files that are
  not JPEG (by their first bytes, not their name) fall back to PIL
  (:func:`fusnet.data.base.load_rgb`) and are converted to the same tensor layout.
* :func:`build_tensor_transform` builds the same three recipes as
  :func:`fusnet.data.transforms.build_transform` ("paper" and "mild" training
  augmentation, the test transform), with the same parameters, as
  ``torchvision.transforms.v2`` transforms on that uint8 tensor; the result is a
  normalised (3, S, S) float32 tensor, as from the PIL path.

Use it on a dataset with::

    dataset = build_dataset("cub200", root, "train")
    use_tensor_backend(dataset, build_tensor_transform(224, train=True))

or ``dataset.image_backend = "tensor"`` and
``build_transform(..., backend="tensor")``.

Two kernel sets (``kernels``):

* ``"v2"``: torchvision's own v2 transforms, all on uint8 until the final
  ``ToDtype`` + ``Normalize``.
* ``"fast"`` (default): the same random parameters, drawn from torch's generator in the
  same order as the v2 transforms draw them (the subclasses below reuse their
  ``make_params``), with cheaper kernels for the two slow steps of the paper's recipe:
  the nearest-neighbour rotation is one index gather on the uint8 image (pixel for
  pixel what v2's ``grid_sample`` gives, but for rare pixels within float error of a
  half-pixel position), and the colour jitter runs on float32 in [0, 1] (converted once, right
  before it) with a direct HSV hue rotation instead of v2's full RGB -> HSV -> RGB
  round trip. On uint8, v2's jitter rounds down to uint8 after each of its four steps;
  the float jitter does not, so the two differ by up to a few grey levels.

Differences from the PIL path, all small: libjpeg builds and the resize kernels are not
the same (PIL resizes in 8-bit fixed point), and the random parameters are drawn by
different code, so a seed does not give the same augmentation in both paths.
tests/test_tensor_io.py measures the test-transform difference on real photos.
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

from fusnet.data.base import ImageListDataset, load_rgb
from fusnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PAPER_IMAGE_SIZE, resize_size
from fusnet.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

JPEG_MAGIC = b"\xff\xd8\xff"
"""First bytes of every JPEG file (SOI marker and the next marker's 0xFF)."""

IMAGE_BACKENDS: tuple[str, ...] = ("pil", "tensor")
"""Values of ``image_backend``: PIL images (the default) or decoded uint8 tensors."""

KERNELS: tuple[str, ...] = ("fast", "v2")
"""Kernel sets of :func:`build_tensor_transform` (module docstring)."""

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


def read_image_tensor(path: str | Path) -> torch.Tensor:
    """Read an image file as a (3, H, W) uint8 RGB tensor.

    JPEG files (recognised by their first bytes) are decoded by
    :func:`torchvision.io.decode_jpeg` (grey and CMYK JPEGs converted to RGB). Any other
    format (PNG, BMP, ...) falls back to PIL through :func:`fusnet.data.base.load_rgb`
    (16-bit grey scaled as there), then becomes a tensor of the same layout.

    Args:
        path: image file.

    Returns:
        (3, H, W) uint8 RGB image.

    Raises:
        DataError: the file is missing, unreadable or does not decode; the message names it.
    """
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(len(JPEG_MAGIC))
    except FileNotFoundError:
        raise DataError(
            f"image {path} is missing; re-download the dataset, or build it with "
            f"skip_bad_images=True to drop missing and corrupt images"
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read image {path} ({type(exc).__name__}: {exc})") from exc
    if head != JPEG_MAGIC:
        logger.debug("%s is not a JPEG file; decoding it with PIL", path)
        array = np.asarray(load_rgb(path))  # (H, W, 3) uint8
        return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()  # (3, H, W)
    try:
        data = read_file(str(path))  # (num_bytes,) uint8
        return decode_jpeg(data, mode=ImageReadMode.RGB)  # (3, H, W) uint8
    except Exception as exc:  # torchvision raises RuntimeError on corrupt or truncated data
        raise DataError(
            f"cannot decode image {path} ({type(exc).__name__}: {exc}); replace the file "
            f"from the official download, or pass --skip-bad-images (skip_bad_images=True) "
            f"to drop files that fail to decode"
        ) from exc


def use_tensor_backend(
    dataset: ImageListDataset, transform: Callable[[torch.Tensor], Any] | None
) -> ImageListDataset:
    """Switch a dataset to decoded uint8 tensors and a tensor transform (in place).

    Args:
        dataset: any :class:`~fusnet.data.base.ImageListDataset`.
        transform: takes the (3, H, W) uint8 tensor of :func:`read_image_tensor`, e.g.
            from :func:`build_tensor_transform`; ``None`` returns that tensor.

    Returns:
        The same dataset, for chaining.

    Raises:
        ConfigError: the dataset does not read image files (e.g. the synthetic one).
    """
    if type(dataset).load_image is not ImageListDataset.load_image:
        raise ConfigError(
            f"{type(dataset).__name__} makes its images itself (its own load_image) instead "
            f"of reading image files; the tensor backend applies only to datasets of files"
        )
    dataset.image_backend = "tensor"
    dataset.transform = transform
    return dataset


# ---------------------------------------------------------------------------- kernels


class _RotationGrid:
    """Output-pixel centres relative to the image centre, cached per (H, W)."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        key = (height, width)
        if key not in self._cache:
            xs = torch.arange(width, dtype=torch.float32) - (width * 0.5 - 0.5)  # (W,)
            ys = torch.arange(height, dtype=torch.float32) - (height * 0.5 - 0.5)  # (H,)
            self._cache[key] = (xs.view(1, width), ys.view(height, 1))
        return self._cache[key]


_GRID = _RotationGrid()


def rotate_nearest(image: torch.Tensor, angle: float) -> torch.Tensor:
    """Rotate about the centre, nearest neighbour, same size, zero fill, as one gather.

    Gives what ``torchvision.transforms.v2.functional.rotate(image, angle)`` gives
    (``expand=False``, ``center=None``, ``fill=0``, nearest): that maps every output
    pixel centre through the inverse rotation and samples ``grid_sample(mode="nearest",
    align_corners=False)`` on a float copy; here the same source coordinates are computed
    in pixel units, rounded half to even as ``grid_sample`` does, and gathered from the
    image padded with one zero pixel (coordinates outside the image are clamped onto
    that border). The two round differently scaled coordinates, so a source coordinate
    within float error of a half pixel can go to the neighbouring pixel: 0-2 of the
    50,176 pixels of a 224 px image differ in tests; a quarter turn of an image whose
    W - H is odd puts every coordinate on a half pixel and differs much more.

    Args:
        image: (C, H, W) tensor of any dtype.
        angle: counter-clockwise angle in degrees.

    Returns:
        (C, H, W) rotated tensor, same dtype.
    """
    channels, height, width = image.shape
    xs, ys = _GRID(height, width)  # (1, W), (H, 1)
    rad = np.deg2rad(angle)
    cos, sin = float(np.cos(rad)), float(np.sin(rad))
    # inverse rotation of each output pixel centre, in input pixel coordinates, then
    # shifted by the one-pixel zero border: anything outside the image lands on it
    src_x = (xs * cos - ys * sin).add_(width * 0.5 - 0.5).round_().clamp_(-1, width).add_(1.0)
    src_y = (xs * sin + ys * cos).add_(height * 0.5 - 0.5).round_().clamp_(-1, height).add_(1.0)
    index = src_y.mul_(width + 2).add_(src_x).view(-1).to(torch.int64)  # (H*W,)
    padded = torch.nn.functional.pad(image, (1, 1, 1, 1)).view(channels, -1)  # (C, (H+2)*(W+2))
    out = image.new_empty((channels, height * width))  # (C, H*W)
    for c in range(channels):  # one 1-D gather per channel: far faster than a 2-D index_select
        torch.index_select(padded[c], 0, index, out=out[c])
    return out.view(channels, height, width)  # (C, H, W)


def _grey(image: torch.Tensor) -> torch.Tensor:
    """(1, H, W) luma of a (3, H, W) float image."""
    r, g, b = image.unbind(0)  # (H, W) each
    return (r * _GREY_WEIGHTS[0]).add_(g, alpha=_GREY_WEIGHTS[1]).add_(b, alpha=_GREY_WEIGHTS[2])[None]


def adjust_brightness_(image: torch.Tensor, factor: float) -> torch.Tensor:
    """In place on a (3, H, W) float image in [0, 1]: ``v2.functional.adjust_brightness``."""
    return image.mul_(factor).clamp_(0.0, 1.0)


def adjust_contrast_(image: torch.Tensor, factor: float) -> torch.Tensor:
    """In place on a (3, H, W) float image in [0, 1]: ``v2.functional.adjust_contrast``."""
    mean = float(_grey(image).mean())
    return image.mul_(factor).add_((1.0 - factor) * mean).clamp_(0.0, 1.0)


def adjust_saturation_(image: torch.Tensor, factor: float) -> torch.Tensor:
    """In place on a (3, H, W) float image in [0, 1]: ``v2.functional.adjust_saturation``."""
    grey = _grey(image)  # (1, H, W)
    return image.mul_(factor).add_(grey, alpha=1.0 - factor).clamp_(0.0, 1.0)


def adjust_hue(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Rotate the HSV hue of a (3, H, W) float image in [0, 1] by ``factor`` turns.

    Same result as ``v2.functional.adjust_hue`` (to float rounding), computed directly:
    value (max) and chroma (max - min) are unchanged by a hue rotation, and each output
    channel is ``max - chroma * clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (n + 6 * hue) mod 6`` and n = 5, 3, 1 for R, G, B.

    Args:
        image: (3, H, W) float tensor in [0, 1].
        factor: hue shift in [-0.5, 0.5] (fractions of a full turn).

    Returns:
        (3, H, W) new float tensor.
    """
    r, g, b = image.unbind(0)  # (H, W) each
    maxc = torch.maximum(torch.maximum(r, g), b)  # (H, W)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)  # (H, W)
    inv = torch.reciprocal(chroma.clamp(min=1e-12))  # (H, W); grey pixels: numerators are 0
    # which channel is the max, as float masks (R before G before B on ties, as torchvision);
    # sign() keeps this in float arithmetic, much faster here than bool masks and where()
    is_r = torch.sign(r - maxc).add_(1.0)  # (H, W) 1 where R is the max, else 0
    is_g = torch.sign(g - maxc).add_(1.0).mul_(1.0 - is_r)  # (H, W)
    is_b = (1.0 - is_r).sub_(is_g)  # (H, W)
    # hue in sixths of a turn: (G-B)/C, 2 + (B-R)/C or 4 + (R-G)/C by the max channel
    hue = (g - b).mul_(is_r)  # (H, W)
    hue = hue.addcmul_((b - r).add_(chroma, alpha=2.0), is_g)
    hue = hue.addcmul_((r - g).add_(chroma, alpha=4.0), is_b).mul_(inv)  # (H, W) in [-1, 5)
    hue = hue.add_(6.0 * factor + 6.0)
    hue = hue.sub_(torch.floor(hue * (1.0 / 6.0)).mul_(6.0))  # (H, W) in [0, 6)
    k = hue[None] + _HUE_OFFSETS  # (3, H, W) in [1, 11)
    k = k.sub_(torch.floor(k * (1.0 / 6.0)).mul_(6.0))  # (3, H, W) k mod 6
    ramp = k.sub_(2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)  # (3, H, W) min(k, 4-k) in [0, 1]
    return ramp.mul_(chroma).neg_().add_(maxc)  # (3, H, W) max - chroma * ramp


_HUE_OFFSETS = torch.tensor([5.0, 3.0, 1.0]).view(3, 1, 1)  # (3, 1, 1) n of R, G, B


class FastRandomRotation(v2.RandomRotation):
    """``v2.RandomRotation`` (nearest, zero fill) with the gather kernel :func:`rotate_nearest`.

    Same parameters and the same random draw as the parent; only plain (C, H, W) tensors.
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Rotate ``inpt`` by ``params["angle"]`` degrees."""
        return rotate_nearest(inpt, params["angle"])


class FastColorJitter(v2.ColorJitter):
    """``v2.ColorJitter`` on a (3, H, W) float image in [0, 1], with cheaper kernels.

    Same random draw (order of the four steps and the factors) as the parent; the
    brightness, contrast and saturation steps are v2's formulas done in place, the hue
    step is :func:`adjust_hue`. Float input only (convert with ``v2.ToDtype`` first).
    """

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Apply the four jitter steps of ``params`` in their drawn order."""
        if not inpt.is_floating_point():
            raise TypeError(f"FastColorJitter needs a float image in [0, 1], got {inpt.dtype}")
        out = inpt.clone()
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                out = adjust_brightness_(out, params["brightness_factor"])
            elif fn_id == 1 and params["contrast_factor"] is not None:
                out = adjust_contrast_(out, params["contrast_factor"])
            elif fn_id == 2 and params["saturation_factor"] is not None:
                out = adjust_saturation_(out, params["saturation_factor"])
            elif fn_id == 3 and params["hue_factor"] is not None and params["hue_factor"] != 0:
                out = adjust_hue(out, params["hue_factor"])
        return out


class ToNormalizedFloat(torch.nn.Module):
    """uint8 (3, H, W) -> float32 ``(x / 255 - mean) / std`` in one multiply-subtract."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)  # (3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))  # (3, 1, 1)
        self.register_buffer("shift", torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1) / std_t)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, H, W) normalised float32."""
        if image.dtype != torch.uint8:
            raise TypeError(f"ToNormalizedFloat needs a uint8 image, got {image.dtype}")
        return image.to(torch.float32).mul_(self.scale).sub_(self.shift)  # (3, H, W)


# ---------------------------------------------------------------------------- recipes


def build_tensor_transform(
    image_size: int = PAPER_IMAGE_SIZE,
    train: bool = True,
    mean: tuple[float, float, float] = IMAGENET_MEAN,
    std: tuple[float, float, float] = IMAGENET_STD,
    augment: str = "paper",
    kernels: str = "fast",
) -> v2.Compose:
    """The recipes of :func:`fusnet.data.transforms.build_transform` on uint8 tensors.

    Same steps and parameters as the PIL transforms: test = resize the shorter side to
    :func:`~fusnet.data.transforms.resize_size` (bilinear, antialiased), centre crop;
    "paper" = that resize, random crop, rotation within ±30° (nearest, zero fill),
    horizontal flip p = 0.7, colour jitter 0.5 (brightness, contrast, saturation, hue);
    "mild" = ``RandomResizedCrop`` of 35-100% of the area, flip p = 0.5, jitter 0.2
    without hue. Then float conversion and normalisation (module docstring for where
    the "fast" kernels convert to float).

    Args:
        image_size: side of the square network input.
        train: the random training augmentation (True) or the deterministic test one.
        mean: per-channel normalisation mean (``backbone.mean``).
        std: per-channel normalisation std (``backbone.std``).
        augment: "paper" or "mild" (training only).
        kernels: "fast" (default) or "v2" (torchvision's kernels throughout).

    Returns:
        A transform mapping a (3, H, W) uint8 RGB tensor (from :func:`read_image_tensor`)
        to a normalised (3, image_size, image_size) float32 tensor.

    Raises:
        ConfigError: bad ``image_size``, ``augment`` or ``kernels``.
    """
    if image_size < 1:
        raise ConfigError(f"image_size must be positive, got {image_size}")
    if kernels not in KERNELS:
        raise ConfigError(f"kernels must be one of {KERNELS}, got {kernels!r}")
    if train and augment not in ("paper", "mild"):
        raise ConfigError(f"augment must be 'paper' or 'mild', got {augment!r}")
    fast = kernels == "fast"
    bilinear = v2.InterpolationMode.BILINEAR
    resize = v2.Resize(resize_size(image_size), interpolation=bilinear, antialias=True)
    to_float = v2.ToDtype(torch.float32, scale=True)
    normalize = v2.Normalize(list(mean), list(std))
    if not train:
        tail = [ToNormalizedFloat(mean, std)] if fast else [to_float, normalize]
        return v2.Compose([resize, v2.CenterCrop(image_size), *tail])
    if augment == "mild":
        head = [
            v2.RandomResizedCrop(image_size, scale=(0.35, 1.0), interpolation=bilinear, antialias=True),
            v2.RandomHorizontalFlip(p=0.5),
        ]
        jitter = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.2}
    else:
        rotation = FastRandomRotation(30) if fast else v2.RandomRotation(30)
        head = [resize, v2.RandomCrop(image_size), rotation, v2.RandomHorizontalFlip(p=0.7)]
        jitter = {"brightness": 0.5, "contrast": 0.5, "saturation": 0.5, "hue": 0.5}
    if fast:
        return v2.Compose([*head, to_float, FastColorJitter(**jitter), normalize])
    return v2.Compose([*head, v2.ColorJitter(**jitter), to_float, normalize])
