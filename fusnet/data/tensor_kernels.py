"""The fast tensor kernels of the tensor input path (:mod:`fusnet.data.tensor_io`).

torchvision's v2 rotation and hue jitter are slower than PIL's on a CPU; these do the same
work faster on uint8 / float (3, H, W) tensors: random crop, rotation and flip as one index
gather, colour jitter in place with hue by a direct formula, and the float conversion with
normalisation in one pass. Each draws its random parameters as its v2 counterpart does.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from torchvision.transforms import v2

from fusnet.errors import ConfigError

_GREY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as torchvision's rgb_to_grayscale


@functools.cache
def _grid(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, W) and (H, 1) output-pixel centres relative to the image centre."""
    xs = torch.arange(width, dtype=torch.float32) - (width * 0.5 - 0.5)  # (W,)
    ys = torch.arange(height, dtype=torch.float32) - (height * 0.5 - 0.5)  # (H,)
    return xs.view(1, width), ys.view(height, 1)


def rotate_nearest(image: torch.Tensor, angle: float, hflip: bool = False) -> torch.Tensor:
    """Rotate about the centre, nearest neighbour, same size, zero fill, as one gather.

    What ``v2.functional.rotate(image, angle)`` gives (its ``grid_sample`` nearest on a
    float copy): the same source coordinates, in pixel units, rounded half to even and
    gathered from the image padded with one zero pixel. A coordinate within float error
    of a half pixel can round the other way (66 of 10 million pixels over 200 angles in
    [-30, 30] at 224 px; quarter turns of an image with odd W - H differ much more).

    ``image``: (C, H, W), any dtype and strides; ``angle``: counter-clockwise, degrees;
    ``hflip``: also flip left-right in the same gather. Returns a contiguous (C, H, W).
    """
    channels, height, width = image.shape
    xs, ys = _grid(height, width)  # (1, W), (H, 1)
    if hflip:  # output column j shows rotated column W - 1 - j: mirror the centred grid
        xs = -xs
    rad = np.deg2rad(angle)
    cos, sin = float(np.cos(rad)), float(np.sin(rad))
    # inverse rotation of each output pixel centre, in input pixel coordinates, clamped
    # onto the one-pixel zero border: anything outside the image lands on it (the order
    # of the float operations decides near-ties; this one matches torchvision best)
    src_x = (xs * cos - ys * sin).add_(width * 0.5 - 0.5).round_().clamp_(-1, width)  # (H, W)
    src_y = (xs * sin + ys * cos).add_(height * 0.5 - 0.5).round_().clamp_(-1, height)  # (H, W)
    # flat index into the padded image: (y + 1) * (W + 2) + (x + 1)
    index = src_y.mul_(width + 2).add_(src_x).add_(width + 3).view(-1).to(torch.int64)  # (H*W,)
    padded = image.new_zeros((channels, height + 2, width + 2))  # (C, H+2, W+2) contiguous
    padded[:, 1:-1, 1:-1] = image  # one copy, whatever the input's strides (channels-last)
    padded = padded.view(channels, -1)  # (C, (H+2)*(W+2))
    out = image.new_empty((channels, height * width))  # (C, H*W)
    for c in range(channels):  # one 1-D gather per channel: far faster than a 2-D index_select
        torch.index_select(padded[c], 0, index, out=out[c])
    return out.view(channels, height, width)  # (C, H, W)


def _grey(image: torch.Tensor) -> torch.Tensor:
    """(1, H, W) luma of a (3, H, W) float image."""
    r, g, b = image.unbind(0)  # (H, W) each
    grey = (r * _GREY_WEIGHTS[0]).add_(g, alpha=_GREY_WEIGHTS[1])  # (H, W)
    return grey.add_(b, alpha=_GREY_WEIGHTS[2])[None]  # (1, H, W)


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

    ``v2.functional.adjust_hue`` (to float rounding), computed directly: a hue rotation
    keeps max and chroma (max - min), and output channel n (0, 4, 2 for R, G, B) is
    ``min + chroma * clamp(|((h + n) mod 6) - 3| - 1, 0, 1)``, h the new hue in sixths.

    ``factor`` in [-0.5, 0.5]; returns a new (3, H, W) float tensor.
    """
    # Written to allocate few buffers: each fresh one can cost page faults when glibc has
    # returned freed memory to the system (measured: 14% of the whole paper recipe).
    r, g, b = image.unbind(0)  # (H, W) each
    maxc = torch.maximum(r, g)  # (H, W)
    torch.maximum(maxc, b, out=maxc)
    minc = torch.minimum(r, g)  # (H, W)
    torch.minimum(minc, b, out=minc)
    chroma = maxc - minc  # (H, W)
    # which channel is the max, as float masks (R before G before B on ties, as torchvision);
    # sign() keeps this in float arithmetic, much faster here than bool masks and where()
    is_r = torch.sub(r, maxc).sign_().add_(1.0)  # (H, W) 1 where R is the max, else 0
    is_g = torch.sub(g, maxc).sign_().add_(1.0)  # (H, W) 1 where G is the max
    is_b = torch.sub(1.0, is_r)  # (H, W) not R, for now
    is_g.mul_(is_b)  # G and not R
    is_b.sub_(is_g)  # neither
    # hue in sixths of a turn: (G-B)/C, 2 + (B-R)/C or 4 + (R-G)/C by the max channel
    hue = torch.sub(g, b).mul_(is_r)  # (H, W) hue * chroma
    part = torch.sub(b, r).add_(chroma, alpha=2.0).mul_(is_g)  # (H, W)
    hue.add_(part)
    torch.sub(r, g, out=part).add_(chroma, alpha=4.0).mul_(is_b)
    hue.add_(part)
    hue.div_(torch.clamp(chroma, min=1e-12, out=part)).add_(6.0 * factor)  # [-4, 8); grey: 0
    # channel n of the HSV -> RGB map is min + chroma * clamp(tri(hue + n) - 1, 0, 1) with
    # n = 0, 4, 2 for R, G, B and tri(t) = |(t mod 6) - 3|, which for t in [-12, 12] is
    # ||t| - 6| - 3| (the triangle wave is even with period 6): no wrap-around needed
    tri = (hue[None] + _HUE_OFFSETS).abs_().sub_(6.0).abs_().sub_(3.0).abs_()  # (3, H, W)
    ramp = tri.sub_(1.0).clamp_(0.0, 1.0)  # (3, H, W)
    return ramp.mul_(chroma).add_(minc)  # (3, H, W) min + chroma * ramp


_HUE_OFFSETS = torch.tensor([0.0, 4.0, 2.0]).view(3, 1, 1)  # (3, 1, 1) n of R, G, B


class FastCropRotateFlip(v2.Transform):
    """v2's ``RandomCrop``, ``RandomRotation`` (nearest, zero fill) and
    ``RandomHorizontalFlip`` as one crop view and one gather (:func:`rotate_nearest`).

    Draws what the three draw in a ``Compose``, in order, with their ``make_params``.
    Plain (C, H, W) tensors only.

    ``size``: the square crop's side; ``degrees``: rotation range ``[-degrees, degrees]``;
    ``flip_p``: probability of the flip.
    """

    def __init__(self, size: int, degrees: float, flip_p: float) -> None:
        super().__init__()
        self.crop = v2.RandomCrop(size)
        self.rotation = v2.RandomRotation(degrees)
        self.flip_p = flip_p

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        """Crop box, angle and flip, drawn as the three v2 transforms draw them."""
        params = dict(self.crop.make_params(flat_inputs))
        params.update(self.rotation.make_params(flat_inputs))
        params["hflip"] = bool(torch.rand(1) < self.flip_p)  # v2 skips the flip if rand >= p
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Crop, rotate and flip ``inpt`` as ``params`` say."""
        if params["needs_pad"]:
            raise ConfigError(
                f"crop {self.crop.size} is larger than the image {tuple(inpt.shape[-2:])}"
            )
        top, left = params["top"], params["left"]
        crop = inpt[..., top : top + params["height"], left : left + params["width"]]  # view
        return rotate_nearest(crop, params["angle"], hflip=params["hflip"])  # (C, S, S)


class FastColorJitter(v2.ColorJitter):
    """``v2.ColorJitter`` on float32 with cheaper kernels, optionally normalising.

    Same random draw as the parent; v2's float formulas in place, hue by
    :func:`adjust_hue`. A uint8 input becomes float in [0, 1] first, so v2's rounding to
    uint8 after each step does not happen; ``mean``/``std`` also normalise (one pass less).
    """

    def __init__(
        self,
        brightness: float | None = None,
        contrast: float | None = None,
        saturation: float | None = None,
        hue: float | None = None,
        *,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__(brightness, contrast, saturation, hue)
        if (mean is None) != (std is None):
            raise ConfigError("FastColorJitter needs both mean and std, or neither")
        self.norm = None
        if mean is not None and std is not None:
            # (mean, 1 / std), each (3, 1, 1): a multiply is cheaper than v2's divide
            self.norm = (torch.tensor(mean).view(-1, 1, 1), 1.0 / torch.tensor(std).view(-1, 1, 1))

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        """Apply the four jitter steps of ``params`` in their drawn order (then normalise)."""
        # one contiguous float copy: decode_jpeg and the uint8 resize give channels-last
        # strides, and the per-channel kernels below are several times slower on those
        out = torch.empty(inpt.shape, dtype=torch.float32).copy_(inpt)  # (3, H, W)
        if not inpt.is_floating_point():
            out = out.mul_(1.0 / 255.0)  # within 1 ulp of v2's division by 255, cheaper
        for fn_id in params["fn_idx"].tolist():
            if fn_id == 0 and params["brightness_factor"] is not None:
                out = adjust_brightness_(out, params["brightness_factor"])
            elif fn_id == 1 and params["contrast_factor"] is not None:
                out = adjust_contrast_(out, params["contrast_factor"])
            elif fn_id == 2 and params["saturation_factor"] is not None:
                out = adjust_saturation_(out, params["saturation_factor"])
            elif fn_id == 3 and params["hue_factor"] is not None and params["hue_factor"] != 0:
                out = adjust_hue(out, params["hue_factor"])
        if self.norm is not None:
            out = out.sub_(self.norm[0]).mul_(self.norm[1])  # (3, H, W)
        return out


class ToNormalizedFloat(torch.nn.Module):
    """uint8 (3, H, W) -> float32 ``(x / 255 - mean) / std`` in one multiply-subtract."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        std_t = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)  # (3, 1, 1)
        self.register_buffer("scale", 1.0 / (255.0 * std_t))  # (3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)  # (3, 1, 1)
        self.register_buffer("shift", mean_t / std_t)  # (3, 1, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8 -> (3, H, W) normalised float32."""
        if image.dtype != torch.uint8:
            raise TypeError(f"ToNormalizedFloat needs a uint8 image, got {image.dtype}")
        out = torch.empty(image.shape, dtype=torch.float32)  # (3, H, W) contiguous, whatever
        return out.copy_(image).mul_(self.scale).sub_(self.shift)  # the input's strides


