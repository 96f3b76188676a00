"""Attention-guided zoom: the "Gaussian-enhanced" view (method.md section 3).

The saliency sampler of Recasens et al. ("Learning to Zoom", ECCV 2018) as S3N, FISH,
FG-CHN and the authors' code (``utils/attention_zoom.py``) use it. Per image:

1. Saliency ``S`` = channel sum of f3 (detached), resized (bilinear,
   ``align_corners=True``) to ``intermediate_size`` (224), then to the G x G grid
   (G = 31), divided by its maximum.
2. Gaussian enhancement (``attention_zoom``): each peak (3x3 local maximum above the
   map's mean) adds ``s · exp(-d²/(2σ²))``, ``σ = peak_radius · G · √s`` (s its
   score), to a floor ``base_ratio``. Per image the authors draw one of three modes:
   every peak (``all``), each peak with probability s (``sampled``), or the highest
   peak alone with ``σ = radius·G·s`` (``max``). ``peak_mode`` fixes one, ``random``
   draws as they do, ``none`` skips the enhancement (the plain Recasens sampler).
3. Sampler (``create_grid``): the map is replicate-padded by ``padding`` (30); each
   cell's source coordinate is the mean of the padded coordinates weighted by map x
   Gaussian (side ``2·padding+1``, FWHM 13 cells), so salient cells draw samples and
   are magnified. The G x G coordinates are resized to the output size for
   ``F.grid_sample``.

Parameters are the authors' / FG-CHN's (peak radius 0.08, base ratio 0.09). Deliberate
differences from their code:

- Vectorised over the batch (theirs loops over images and peaks: the reference in
  ``tests/zoom_reference.py``); modes and coins come from a
  ``torch.Generator`` when one is given.
- A peak must lie strictly above the mean (theirs ``>=``; ties in a 3x3 window broken
  as theirs): a constant or all-zero map has no peak and gives the identity warp
  (theirs: a corner peak, or NaN for an all-zero map).
- ``align_corners=True`` by default, so a uniform map is the exact identity; theirs
  (``False``) shrinks the image by half a pixel a side and blends the border with zeros.
- Grid and ``grid_sample`` in float32 (autocast off), cast back to the images' dtype.
- The output keeps the input's height and width (theirs: H x H).

The tensor kernels (peaks, the sampler's Gaussian and coordinates) are in
:mod:`fusnet.models.zoom_kernels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.models.zoom_kernels import (
    check_inputs,
    gaussian_1d,
    local_peaks,
    output_hw,
    padded_coords,
)

__all__ = [
    "PEAK_MODES",
    "SaliencyZoom",
    "ZoomConfig",
    "saliency_from_features",
]

#: Per-image enhancement modes of the authors' ``attention_zoom`` (their p = 0, 1, 2).
PEAK_MODES: tuple[str, ...] = ("all", "sampled", "max")
_ALL_MODES = (*PEAK_MODES, "random", "none")


@dataclass(frozen=True)
class ZoomConfig:
    """Settings of :class:`SaliencyZoom`; the defaults are the authors'.

    Attributes:
        grid_size: side G of the sampling grid (31).
        padding: replicate padding of the map and half-width of the Gaussian
            kernel (30; kernel side 2·padding+1 = 61).
        fwhm: full width at half maximum of the sampler's Gaussian, in grid cells
            (13, i.e. σ = 13 / (2·sqrt(2·ln 2)) ≈ 5.52).
        peak_mode: "random" (a mode per image, uniformly, as the authors), "all",
            "sampled", "max", or "none" (no Gaussian enhancement).
        peak_radius: σ of a peak's Gaussian as a fraction of G, scaled by √score
            (0.08).
        base_ratio: floor added to the enhanced map (0.09); must be > 0.
        intermediate_size: the saliency is first resized to this square size
            (224, hard-coded by the authors), then to G; None resizes directly.
        output_size: (height, width) of the zoomed images; None = the input's.
        align_corners: ``grid_sample``'s flag (ours True; the authors' False).
    """

    grid_size: int = 31
    padding: int = 30
    fwhm: float = 13.0
    peak_mode: str = "random"
    peak_radius: float = 0.08
    base_ratio: float = 0.09
    intermediate_size: int | None = 224
    output_size: tuple[int, int] | None = None
    align_corners: bool = True

    def __post_init__(self) -> None:
        if self.grid_size < 2:
            raise ConfigError(f"zoom grid_size must be >= 2, got {self.grid_size}")
        if self.padding < 0:
            raise ConfigError(f"zoom padding must be >= 0, got {self.padding}")
        if not self.fwhm > 0:
            raise ConfigError(f"zoom fwhm must be > 0, got {self.fwhm}")
        if self.peak_mode not in _ALL_MODES:
            raise ConfigError(f"zoom peak_mode must be one of {_ALL_MODES}, got {self.peak_mode!r}")
        if not self.peak_radius > 0:
            raise ConfigError(f"zoom peak_radius must be > 0, got {self.peak_radius}")
        if not self.base_ratio > 0:
            raise ConfigError(f"zoom base_ratio must be > 0, got {self.base_ratio}")
        if self.intermediate_size is not None and self.intermediate_size < 1:
            raise ConfigError(
                f"zoom intermediate_size must be >= 1 or None, got {self.intermediate_size}"
            )
        if self.output_size is not None and (
            len(self.output_size) != 2 or min(self.output_size) < 1
        ):
            raise ConfigError(f"zoom output_size must be (H, W) or None, got {self.output_size}")


def saliency_from_features(f3: Tensor) -> Tensor:
    """(B, h, w) float32 saliency of (B, C, h, w) features: their channel sum, detached
    (not normalised; :class:`SaliencyZoom` divides each map by its maximum)."""
    if f3.dim() != 4:
        raise ValueError(f"features must be (B, C, h, w), got shape {tuple(f3.shape)}")
    return f3.detach().float().sum(dim=1)  # (B, h, w)


class SaliencyZoom(nn.Module):
    """Batch-vectorised saliency-sampler zoom (see the module docstring).

    Args:
        config: the zoom settings; None takes the authors' defaults.
    """

    def __init__(self, config: ZoomConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else ZoomConfig()

    def extra_repr(self) -> str:
        return repr(self.config)

    def draw_random(
        self, batch: int, device: torch.device, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """Draw the per-image mode and the per-cell coins of the ``sampled`` mode.

        Args:
            batch: B.
            device: where the returned tensors live.
            generator: source of randomness (drawn on its device, then moved);
                None uses the global RNG of ``device``.

        Returns:
            ``modes`` (B,) int64 (0 all, 1 sampled, 2 max), ``coins`` (B, G, G) in [0, 1).
        """
        g = self.config.grid_size
        gen_device = generator.device if generator is not None else device
        if self.config.peak_mode == "random":
            modes = torch.randint(0, 3, (batch,), generator=generator, device=gen_device)  # (B,)
        else:
            mode = self.config.peak_mode
            index = PEAK_MODES.index(mode) if mode in PEAK_MODES else 0
            modes = torch.full((batch,), index, dtype=torch.int64, device=gen_device)  # (B,)
        coins = torch.rand((batch, g, g), generator=generator, device=gen_device,
                           dtype=torch.float32)  # (B, G, G)
        return modes.to(device), coins.to(device)

    def normalized_map(self, saliency: Tensor) -> Tensor:
        """(B, h, w) saliency (negative values count as 0) resized to the grid and divided
        by its maximum: (B, G, G) float32 in [0, 1]; an all-zero map stays zero."""
        cfg = self.config
        s = saliency.detach().float().clamp(min=0.0)[:, None]  # (B, 1, h, w)
        if cfg.intermediate_size is not None:
            size = (cfg.intermediate_size, cfg.intermediate_size)
            s = F.interpolate(s, size=size, mode="bilinear", align_corners=True)  # (B, 1, I, I)
        g = (cfg.grid_size, cfg.grid_size)
        s = F.interpolate(s, size=g, mode="bilinear", align_corners=True)[:, 0]  # (B, G, G)
        peak = s.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        return s / peak.clamp(min=torch.finfo(torch.float32).tiny)  # (B, G, G)

    def enhanced_map(self, decide: Tensor, modes: Tensor, coins: Tensor) -> Tensor:
        """Gaussian enhancement: (B, G, G) base_ratio plus a Gaussian per selected peak of
        ``decide`` (:meth:`normalized_map`), by ``modes`` and ``coins`` (:meth:`draw_random`)."""
        cfg = self.config
        if cfg.peak_mode == "none":
            return cfg.base_ratio + decide  # (B, G, G)
        b, g, _ = decide.shape
        mean = decide.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        peak = local_peaks(decide[:, None])[:, 0] & (decide > mean)  # (B, G, G)
        masked = torch.where(peak, decide, torch.full_like(decide, -1.0)).flatten(1)  # (B, G²)
        first_max = F.one_hot(masked.argmax(dim=1), g * g).view(b, g, g).bool()  # (B, G, G)
        m = modes.view(b, 1, 1)  # (B, 1, 1)
        keep = torch.where(
            m == 0, peak, torch.where(m == 1, peak & (decide > coins), peak & first_max)
        )  # (B, G, G)
        scale = torch.where(m == 2, decide, decide.sqrt())  # (B, G, G)
        sigma = cfg.peak_radius * g * scale  # (B, G, G)
        inv_two_var = 0.5 / sigma.square().clamp(min=1e-12)  # (B, G, G)
        weight = torch.where(keep, decide, torch.zeros_like(decide))  # (B, G, G)
        pos = torch.arange(g, dtype=torch.float32, device=decide.device)  # (G,)
        d2 = (pos[:, None] - pos[None, :]).square()  # (G peak, G target)
        gy = torch.exp(-d2[None, :, None, :] * inv_two_var[..., None])  # (B, Gi, Gj, G rows)
        gx = torch.exp(-d2[None, None, :, :] * inv_two_var[..., None])  # (B, Gi, Gj, G cols)
        wy = (weight[..., None] * gy).reshape(b, g * g, g)  # (B, G², G rows)
        bumps = wy.transpose(1, 2) @ gx.reshape(b, g * g, g)  # (B, G rows, G cols)
        return cfg.base_ratio + bumps  # (B, G, G)

    def sampler_grid(self, density: Tensor, out_hw: tuple[int, int]) -> Tensor:
        """Recasens' ``create_grid``: the (B, H, W, 2) ``grid_sample`` grid, (x, y) in
        [-1, 1], of density-weighted mean coordinates of a (B, G, G) positive map."""
        cfg = self.config
        b, g, _ = density.shape
        p = cfg.padding
        n = g + 2 * p
        padded = F.pad(density[:, None], (p, p, p, p), mode="replicate")  # (B, 1, n, n)
        coords = padded_coords(g, p, density.device)  # (n,)
        stack = torch.cat(
            [padded, padded * coords.view(1, 1, 1, n), padded * coords.view(1, 1, n, 1)], dim=1
        )  # (B, 3, n, n): weight, weight·x, weight·y
        k = gaussian_1d(2 * p + 1, cfg.fwhm, density.device)  # (K,)
        f = F.conv2d(stack.reshape(b * 3, 1, n, n), k.view(1, 1, -1, 1))  # (3B, 1, G, n)
        f = F.conv2d(f, k.view(1, 1, 1, -1)).view(b, 3, g, g)  # (B, 3, G, G)
        xy = f[:, 1:] / f[:, :1]  # (B, 2, G, G) in [0, 1]
        grid = (xy * 2.0 - 1.0).clamp(-1.0, 1.0)  # (B, 2, G, G)
        grid = F.interpolate(grid, size=out_hw, mode="bilinear", align_corners=True)  # (B, 2, H, W)
        return grid.permute(0, 2, 3, 1).contiguous()  # (B, H, W, 2)

    def make_grid(
        self, saliency: Tensor, out_hw: tuple[int, int], modes: Tensor, coins: Tensor
    ) -> Tensor:
        """Saliency -> sampling grid (B, H, W, 2), float32, autocast off."""
        with torch.autocast(device_type=saliency.device.type, enabled=False):
            decide = self.normalized_map(saliency)  # (B, G, G)
            density = self.enhanced_map(decide, modes, coins.float())  # (B, G, G)
            return self.sampler_grid(density, out_hw)  # (B, H, W, 2)

    def forward(
        self,
        images: Tensor,
        saliency: Tensor,
        generator: torch.Generator | None = None,
        modes: Tensor | None = None,
        coins: Tensor | None = None,
    ) -> Tensor:
        """Zoom each image towards its salient regions.

        Args:
            images: (B, 3, H, W) images, any float dtype.
            saliency: (B, h, w) saliency, e.g. from :func:`saliency_from_features`.
            generator: randomness for the modes and coins (None: global RNG).
            modes: (B,) modes to use instead of drawing them (with ``coins``).
            coins: (B, G, G) coins to use instead of drawing them.

        Returns:
            (B, 3, H', W') zoomed images in images' dtype, (H', W') = output_size or (H, W).
        """
        check_inputs(images, saliency)
        saliency = saliency.to(images.device)  # (B, h, w)
        if modes is None or coins is None:
            modes, coins = self.draw_random(images.shape[0], images.device, generator)
        grid = self.make_grid(saliency, output_hw(self.config.output_size, images), modes, coins)
        with torch.autocast(device_type=images.device.type, enabled=False):
            out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros",
                                align_corners=self.config.align_corners)  # (B, 3, H', W')
        return out.to(images.dtype)  # (B, 3, H', W')
