"""The zoom as the authors wrote it: one image and one peak at a time (a test reference).

``tests/test_zoom.py`` checks that the vectorised :class:`~fusnet.models.zoom.SaliencyZoom`
matches it, and ``benchmarks/training_step.py`` times the two; the library never calls it.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from fusnet.models.zoom_kernels import (
    check_inputs,
    gaussian_1d,
    local_peaks,
    output_hw,
    padded_coords,
)

__all__ = ["ZoomLike", "zoom_per_image_reference"]


class ZoomLike(Protocol):
    """What the reference reads of a :class:`~fusnet.models.zoom.SaliencyZoom`."""

    config: Any  # its ZoomConfig


def zoom_per_image_reference(
    zoom: ZoomLike,
    images: Tensor,
    saliency: Tensor,
    modes: Tensor,
    coins: Tensor,
) -> Tensor:
    """Per-image, per-peak Python loop, structured like the authors' code.

    Follows their ``batch_augment`` / ``attention_zoom`` / ``create_grid`` (one image at
    a time, one Gaussian per peak, a full 2-D ``(2P+1)²`` convolution) with
    :mod:`fusnet.models.zoom`'s documented choices; matches ``SaliencyZoom.forward``
    given the same ``modes`` and ``coins``.

    Args:
        zoom: the SaliencyZoom whose config to follow.
        images: (B, 3, H, W).
        saliency: (B, h, w).
        modes: (B,) int64 mode per image (0 all, 1 sampled, 2 max).
        coins: (B, G, G) uniform draws.

    Returns:
        (B, 3, H', W') zoomed images in images' dtype.
    """
    check_inputs(images, saliency)
    cfg = zoom.config
    dev = images.device
    g, p = cfg.grid_size, cfg.padding
    n = g + 2 * p
    out_hw = output_hw(cfg.output_size, images)
    k1 = gaussian_1d(2 * p + 1, cfg.fwhm, dev)  # (K,)
    kernel = (k1[:, None] * k1[None, :])[None, None]  # (1, 1, K, K)
    coords = padded_coords(g, p, dev)  # (n,)
    basis_x = coords.view(1, n).expand(n, n)[None, None]  # (1, 1, n, n)
    basis_y = coords.view(n, 1).expand(n, n)[None, None]  # (1, 1, n, n)
    yy, xx = torch.meshgrid(
        torch.arange(g, dtype=torch.float32, device=dev),
        torch.arange(g, dtype=torch.float32, device=dev),
        indexing="ij",
    )  # (G, G), (G, G)
    outs = []
    for b in range(images.shape[0]):
        s = saliency[b : b + 1].to(dev).detach().float().clamp(min=0.0)[:, None]  # (1, 1, h, w)
        if cfg.intermediate_size is not None:
            size = (cfg.intermediate_size, cfg.intermediate_size)
            s = F.interpolate(s, size=size, mode="bilinear", align_corners=True)  # (1, 1, I, I)
        s = F.interpolate(s, size=(g, g), mode="bilinear", align_corners=True)  # (1, 1, G, G)
        decide = (s / s.max().clamp(min=torch.finfo(torch.float32).tiny))[0, 0]  # (G, G)
        if cfg.peak_mode == "none":
            density = cfg.base_ratio + decide  # (G, G)
        else:
            is_peak = local_peaks(decide[None, None])[0, 0] & (decide > decide.mean())  # (G, G)
            peaks = [(int(i), int(j)) for i, j in torch.nonzero(is_peak).tolist()]
            scores = [decide[i, j] for i, j in peaks]
            mode = int(modes[b])
            density = torch.full((g, g), cfg.base_ratio, device=dev)  # (G, G)
            chosen: list[tuple[int, int, Tensor, Tensor]] = []  # (i, j, score, sigma)
            if mode == 0:
                chosen = [(i, j, sc, sc.sqrt()) for (i, j), sc in zip(peaks, scores, strict=True)]
            elif mode == 1:
                chosen = [
                    (i, j, sc, sc.sqrt())
                    for (i, j), sc in zip(peaks, scores, strict=True)
                    if bool(sc > coins[b, i, j])
                ]
            elif peaks:
                best = max(range(len(scores)), key=lambda q: float(scores[q]))
                i, j = peaks[best]
                chosen = [(i, j, scores[best], scores[best])]
            for i, j, sc, spread in chosen:
                sigma = cfg.peak_radius * g * spread  # ()
                d2 = (xx - j) ** 2 + (yy - i) ** 2  # (G, G)
                density = density + sc * torch.exp(-d2 / (2.0 * sigma**2))  # (G, G)
        padded = F.pad(density[None, None], (p, p, p, p), mode="replicate")  # (1, 1, n, n)
        weight = F.conv2d(padded, kernel)  # (1, 1, G, G)
        x = F.conv2d(padded * basis_x, kernel) / weight  # (1, 1, G, G)
        y = F.conv2d(padded * basis_y, kernel) / weight  # (1, 1, G, G)
        grid = (torch.cat([x, y], dim=1) * 2.0 - 1.0).clamp(-1.0, 1.0)  # (1, 2, G, G)
        grid = F.interpolate(grid, size=out_hw, mode="bilinear", align_corners=True)  # (1, 2, H, W)
        out = F.grid_sample(
            images[b : b + 1].float(),
            grid.permute(0, 2, 3, 1),
            mode="bilinear",
            padding_mode="zeros",
            align_corners=cfg.align_corners,
        )  # (1, 3, H', W')
        outs.append(out.to(images.dtype))
    return torch.cat(outs, dim=0)  # (B, 3, H', W')
