"""The tensor kernels of the zoom view (:mod:`fusnet.models.zoom`): peak finding and sampler pieces.

- :func:`local_peaks`: the 3x3 local maxima of a saliency map (the authors'
  ``PeakStimulation``), from which the Gaussian enhancement picks its peaks.
- :func:`gaussian_1d` and :func:`padded_coords`: the separable Gaussian kernel and the
  padded grid's coordinates of Recasens' sampler (``create_grid``).
- :func:`output_hw` and :func:`check_inputs`: the zoomed size and the input checks shared
  by :class:`~fusnet.models.zoom.SaliencyZoom` and the per-image reference in ``tests/zoom_reference.py``.

Pure functions of tensors, on the input's device; no settings of their own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_inputs", "gaussian_1d", "local_peaks", "output_hw", "padded_coords"]


def gaussian_1d(size: int, fwhm: float, device: torch.device) -> Tensor:
    """The authors' ``makeGaussian`` along one axis: exp(-4 ln2 (x - x0)² / fwhm²)."""
    x = torch.arange(size, dtype=torch.float32, device=device)  # (K,)
    return torch.exp(-4.0 * math.log(2.0) * (x - size // 2) ** 2 / fwhm**2)  # (K,)


def padded_coords(grid_size: int, padding: int, device: torch.device) -> Tensor:
    """Coordinates of the padded grid in [0, 1] units: (i - padding) / (G - 1)."""
    n = grid_size + 2 * padding
    i = torch.arange(n, dtype=torch.float32, device=device)  # (G + 2P,)
    return (i - padding) / (grid_size - 1)  # (G + 2P,)


def local_peaks(x: Tensor) -> Tensor:
    """3x3 local maxima, ties broken as the authors' ``PeakStimulation``.

    A cell is a peak when it is the arg-max of the 3x3 window centred on it
    (``-inf`` outside the map). ``max_pool2d`` returns the first maximum of the
    window in row-major order (CPU; the CUDA kernel scans with the same strict
    ``>``), so on a plateau only the first cell of each window counts. Exact
    ties are rare for real features; they matter for synthetic maps.

    Args:
        x: (B, 1, G, G) map.

    Returns:
        (B, 1, G, G) bool peak mask.
    """
    _, _, h, w = x.shape
    padded = F.pad(x, (1, 1, 1, 1), value=float("-inf"))  # (B, 1, h+2, w+2)
    _, idx = F.max_pool2d(padded, kernel_size=3, stride=1, return_indices=True)  # (B, 1, h, w)
    rows = torch.arange(1, h + 1, device=x.device)[:, None]  # (h, 1)
    cols = torch.arange(1, w + 1, device=x.device)[None, :]  # (1, w)
    own = rows * (w + 2) + cols  # (h, w) flat index of each cell in the padded map
    return idx == own  # (B, 1, h, w)


def output_hw(output_size: tuple[int, int] | None, images: Tensor) -> tuple[int, int]:
    """(H', W') of the zoomed images: ``output_size``, or else the images' (H, W)."""
    if output_size is not None:
        return int(output_size[0]), int(output_size[1])
    return int(images.shape[-2]), int(images.shape[-1])


def check_inputs(images: Tensor, saliency: Tensor) -> None:
    """Refuse images that are not (B, C, H, W) or a saliency that is not (B, h, w).

    Raises:
        ValueError: a wrong shape; the message gives the shape received.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got shape {tuple(images.shape)}")
    if saliency.dim() != 3 or saliency.shape[0] != images.shape[0]:
        raise ValueError(
            f"saliency must be (B, h, w) with B = {images.shape[0]}, got {tuple(saliency.shape)}"
        )
