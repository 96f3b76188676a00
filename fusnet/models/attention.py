"""Channel-attention modules for the two-branch fusion ``f + A(f)`` (paper Eq. 8, Fig. 9).

Every module is built as ``Module(channels)`` (keyword-only extras default to the papers')
and maps a ``(B, C, H, W)`` map to ``A(f)`` of the same shape, which the model adds to
``f``. :func:`build_attention` builds one of :data:`ATTENTION` by name:

==========  ===============================================================  ==============
name        module                                                           paper
==========  ===============================================================  ==============
``eca``     :class:`ECA` — GAP, 1-D conv across channels, sigmoid            Wang 2020
``se``      :class:`SE` — GAP, FC-ReLU-FC (reduction 16), sigmoid            Hu 2018
``cbam``    :class:`CBAM` — channel (avg+max MLP) then spatial (7x7) gates   Woo 2018
``coord``   :class:`CoordAttention` — pooled along H and W, two gates         Hou 2021
``psa``     :class:`PSA` — pyramid split attention (EPSANet's PSA module)    Zhang 2021
==========  ===============================================================  ==============

Where a paper divides ``C`` by a reduction ratio ``r``, we use ``min(C, max(C // r, 8))``
hidden units (:func:`reduced_channels`): EfficientNet-Lite0's 40 channels keep a usable
bottleneck (``40 // 16 = 2``); for the ResNet levels this is the papers' ``C // r``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.registry import Registry

__all__ = [
    "ATTENTION",
    "CBAM",
    "ECA",
    "PSA",
    "SE",
    "CoordAttention",
    "build_attention",
    "eca_kernel_size",
    "reduced_channels",
    "register_attention",
]

ATTENTION: Registry[type[nn.Module]] = Registry("attention module")
"""Attention name -> module class ``cls(channels)``. Fill it with :func:`register_attention`."""


def register_attention(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding an attention module ``cls(channels)`` to :data:`ATTENTION`
    under ``name`` (ConfigError if taken)."""
    return ATTENTION.register(name)


def eca_kernel_size(channels: int, gamma: float = 2.0, beta: float = 1.0) -> int:
    """ECA's adaptive kernel size ``k = odd(|log2(C) / gamma + beta / gamma|)``.

    ``odd(t)``: ``int(t)`` if odd, else ``int(t) + 1``, as the ECA-Net authors' code (gamma
    2, beta 1: C = 40, 112 -> 3; 320, 512, 1024 -> 5; 2048 -> 7). Unlike timm's
    ``EcaModule`` no clamp to at least 3 (which only changes C < 8).
    """
    if channels < 1:
        raise ConfigError(f"channels must be positive, got {channels}")
    t = int(abs((math.log2(channels) + beta) / gamma))
    return t if t % 2 else t + 1


def reduced_channels(channels: int, reduction: int, min_hidden: int = 8) -> int:
    """Hidden width of a squeeze bottleneck: ``min(C, max(C // reduction, min_hidden))``."""
    return min(channels, max(channels // reduction, min_hidden))


def _check_channels(name: str, channels: int, minimum: int = 1) -> None:
    if isinstance(channels, bool) or not isinstance(channels, int) or channels < minimum:
        raise ConfigError(f"{name} needs an integer channel count >= {minimum}, got {channels!r}")


@register_attention("eca")
class ECA(nn.Module):
    """Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020).

    ``A(f) = f * sigmoid(conv1d(GAP(f)))``: a 1-D convolution (no bias) across channels of
    kernel size :func:`eca_kernel_size` (``gamma``, ``beta``), or ``kernel_size`` if given
    (the authors' Multi-FusNet code uses 3 at every level).
    """

    def __init__(self, channels: int, *, gamma: float = 2.0, beta: float = 1.0,
                 kernel_size: int | None = None) -> None:
        super().__init__()
        _check_channels("ECA", channels)
        k = eca_kernel_size(channels, gamma, beta) if kernel_size is None else kernel_size
        if k < 1 or k % 2 == 0:
            raise ConfigError(f"ECA kernel_size must be a positive odd integer, got {k}")
        self.channels = channels
        self.kernel_size = k
        self.conv = nn.Conv1d(1, 1, kernel_size=k, padding=(k - 1) // 2, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` rescaled per channel; ``(B, C, H, W) -> (B, C, H, W)``."""
        b, c = x.shape[:2]
        y = x.mean(dim=(2, 3))  # (B, C)
        y = self.conv(y.unsqueeze(1))  # (B, 1, C)
        weights = torch.sigmoid(y).view(b, c, 1, 1)  # (B, C, 1, 1)
        return x * weights  # (B, C, H, W)


@register_attention("se")
class SE(nn.Module):
    """Squeeze-and-Excitation (Hu, Shen and Sun, CVPR 2018).

    ``A(f) = f * sigmoid(W2 relu(W1 GAP(f) + b1) + b2)``, W1: C -> C/r (``reduction`` 16,
    at least ``min_hidden``, :func:`reduced_channels`).
    """

    def __init__(self, channels: int, *, reduction: int = 16, min_hidden: int = 8) -> None:
        super().__init__()
        _check_channels("SE", channels)
        hidden = reduced_channels(channels, reduction, min_hidden)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` rescaled per channel; ``(B, C, H, W) -> (B, C, H, W)``."""
        b, c = x.shape[:2]
        s = x.mean(dim=(2, 3))  # (B, C)
        s = F.relu(self.fc1(s))  # (B, C/r)
        weights = torch.sigmoid(self.fc2(s)).view(b, c, 1, 1)  # (B, C, 1, 1)
        return x * weights  # (B, C, H, W)


@register_attention("cbam")
class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., ECCV 2018): channel, then spatial.

    Channel (Eq. 2): ``f' = f * sigmoid(MLP(AvgPool(f)) + MLP(MaxPool(f)))``, one shared
    MLP C -> C/r -> C (``reduction`` 16). Spatial (Eq. 3): ``A(f) = f' *
    sigmoid(conv7x7([AvgPool_c(f'); MaxPool_c(f')]))``, ``spatial_kernel`` 7. A plain
    convolution with bias, as the equations say (the authors' code adds a BatchNorm,
    which fails on a single 1x1 map in training).
    """

    def __init__(self, channels: int, *, reduction: int = 16, spatial_kernel: int = 7,
                 min_hidden: int = 8) -> None:
        super().__init__()
        _check_channels("CBAM", channels)
        if spatial_kernel < 1 or spatial_kernel % 2 == 0:
            raise ConfigError(f"CBAM spatial_kernel must be odd, got {spatial_kernel}")
        hidden = reduced_channels(channels, reduction, min_hidden)
        self.mlp = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels)
        )
        self.spatial = nn.Conv2d(2, 1, spatial_kernel, padding=spatial_kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` gated by channel then spatial attention; shape unchanged."""
        b, c = x.shape[:2]
        avg = self.mlp(x.mean(dim=(2, 3)))  # (B, C)
        mx = self.mlp(x.amax(dim=(2, 3)))  # (B, C)
        x = x * torch.sigmoid(avg + mx).view(b, c, 1, 1)  # (B, C, H, W)
        pooled = torch.cat(
            [x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1
        )  # (B, 2, H, W)
        return x * torch.sigmoid(self.spatial(pooled))  # (B, C, H, W)


@register_attention("coord")
class CoordAttention(nn.Module):
    """Coordinate attention (Hou, Zhou and Feng, CVPR 2021; "CANet" in the paper's Fig. 9).

    Average-pool along W and along H, a shared 1x1 conv (C -> mip) + BN + h-swish over
    both strips, then per direction a 1x1 conv (mip -> C) + sigmoid: ``A(f) = f * g_h *
    g_w``, g_h (B, C, H, 1), g_w (B, C, 1, W); ``mip = max(min_hidden, C // reduction)``
    (8, 32), as the authors' code.
    """

    def __init__(self, channels: int, *, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        _check_channels("CoordAttention", channels)
        mip = max(min_hidden, channels // reduction)
        self.conv1 = nn.Conv2d(channels, mip, kernel_size=1)
        self.bn1 = nn.BatchNorm2d(mip)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mip, channels, kernel_size=1)
        self.conv_w = nn.Conv2d(mip, channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        """Return ``x`` gated along height and width; shape unchanged."""
        h, w = x.shape[2:]
        x_h = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        x_w = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        y = torch.cat([x_h, x_w], dim=2)  # (B, C, H+W, 1)
        y = self.act(self.bn1(self.conv1(y)))  # (B, mip, H+W, 1)
        y_h, y_w = torch.split(y, [h, w], dim=2)  # (B, mip, H, 1), (B, mip, W, 1)
        g_h = torch.sigmoid(self.conv_h(y_h))  # (B, C, H, 1)
        g_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return x * g_h * g_w  # (B, C, H, W)


def _fit_groups(nominal: int, in_channels: int, out_channels: int) -> int:
    """Largest group count <= ``nominal`` dividing both channel counts."""
    common = math.gcd(in_channels, out_channels)
    return max(g for g in range(1, min(nominal, common) + 1) if common % g == 0)


@register_attention("psa")
class PSA(nn.Module):
    """Pyramid split attention, the PSA module of EPSANet (Zhang et al., arXiv:2105.14447).

    1. SPC: S = 4 branches, each a group convolution of the whole input (Eq. 1 and the
       authors' code: the "split" is of the output channels), ``kernels`` 3, 5, 7, 9 and
       ``groups`` 1, 4, 8, 16, to ``s = C / S`` channels: ``F_i`` (B, s, H, W).
    2. ``Z_i = sigmoid(FC(ReLU(FC(GAP(F_i)))))``, one SE shared by the branches (as the
       authors' code), ``reduction`` 16.
    3. ``att = softmax(Z)`` across the branches, per channel.
    4. ``A(f) = concat_i(F_i * att_i)``: a new (B, C, H, W) map, not ``f`` rescaled.

    Any ``C >= S`` works: ``s = ceil(C / S)``, the last ``S * s - C`` channels dropped, each
    group count the largest divisor of ``gcd(C, s)`` not above its nominal value (C = 40:
    1, 2, 5, 10). Branches are concatenated in kernel order (the authors' code reverses
    it, which only permutes channels).
    """

    def __init__(
        self,
        channels: int,
        *,
        kernels: Sequence[int] = (3, 5, 7, 9),
        groups: Sequence[int] = (1, 4, 8, 16),
        reduction: int = 16,
        min_hidden: int = 8,
    ) -> None:
        super().__init__()
        if len(kernels) != len(groups) or not kernels:
            raise ConfigError(f"PSA needs one group count per kernel, got {kernels} / {groups}")
        num_branches = len(kernels)
        _check_channels("PSA", channels, minimum=num_branches)
        self.channels = channels
        self.num_branches = num_branches
        self.split = math.ceil(channels / num_branches)
        self.branches = nn.ModuleList(
            nn.Conv2d(channels, self.split, kernel_size=k, padding=k // 2,
                      groups=_fit_groups(g, channels, self.split), bias=False)
            for k, g in zip(kernels, groups, strict=True)
        )
        hidden = reduced_channels(self.split, reduction, min_hidden)
        self.se_fc1 = nn.Linear(self.split, hidden)
        self.se_fc2 = nn.Linear(hidden, self.split)

    def forward(self, x: Tensor) -> Tensor:
        """Return the attention-weighted multi-scale map; ``(B, C, H, W) -> (B, C, H, W)``."""
        b, _, h, w = x.shape
        feats = torch.stack([conv(x) for conv in self.branches], dim=1)  # (B, S, s, H, W)
        z = feats.mean(dim=(3, 4))  # (B, S, s)
        z = torch.sigmoid(self.se_fc2(F.relu(self.se_fc1(z))))  # (B, S, s)
        att = torch.softmax(z, dim=1)  # (B, S, s)
        out = feats * att.view(b, self.num_branches, self.split, 1, 1)  # (B, S, s, H, W)
        out = out.reshape(b, self.num_branches * self.split, h, w)  # (B, S*s, H, W)
        return out[:, : self.channels]  # (B, C, H, W)


def build_attention(name: str, channels: int) -> nn.Module:
    """The attention module ``name`` (a key of :data:`ATTENTION`) for maps of ``channels``
    channels; ConfigError for an unknown name or invalid channel count."""
    return ATTENTION.lookup(name)(channels)
