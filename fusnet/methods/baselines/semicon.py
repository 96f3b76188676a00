"""SEMICON (Shen, Sun, Wei et al., ECCV 2022): suppression-enhancing masks and interactive
channel transformation for fine-grained hashing.

Architecture (the authors' ``aassxun/SEMICON``, ``models/SEMICON.py``), on the shared
backbone's stride-16 map E (ResNet ``layer3``; EfficientNet-Lite0 timm ``blocks.4``):

- **SEM** (suppression-enhancing mask based attention): a small residual trunk reduces E
  (C → C/4 → C/16 channels, stride 1); three 1×1-conv heads produce attention maps one
  after another, and after each the trunk's map is multiplied by 2 − mask, where the mask
  (no gradient) is the head's map, softmax-normalised over space, standardised as
  (a − mean)/std^0.15 + 1 and clipped to [0, 2]: what one head found is suppressed so the
  next looks elsewhere. Output: three maps A_1..A_3 (B, 3, h, w).
- **ICON** (interactive channel transformation): a channel self-attention block (grouped
  1×1 qkv, channel-to-channel attention with signed square-root scaling, a channel
  shuffle, BN + ReLU, then the same across groups), inserted after every residual block of
  the top stage but the first. Groups g = max(C // 64, 16) as in the code; where that does
  not divide C, the largest divisor of C not above it (:func:`icon_groups`).
- **Global branch**: a copy of the top stage (with ICON) on E, average-pooled.
- **Local branch**: one shared copy of the top stage (with ICON) applied to E ⊙ A_j for each
  j, average-pooled.
- **Hash layer**: bias-free linear maps, k − 3⌊k/6⌋ bits from the global feature and ⌊k/6⌋
  from each local feature (the code's 6+2+2+2 at 12 bits, 17+5+5+5 at 32), concatenated,
  tanh.

Loss and training (:mod:`fusnet.methods.baselines.asymmetric`): ADSH's loss with learned
database codes V, scaled by 12/k as in the code's ``ADSH_Loss``; V ~ N(0, 1) at the start
(the code's ``torch.randn``); 30 epochs per outer iteration (``run.py``: ``--max-epoch 30
--max-iter 40``). **The retrieval database is the learned V for the training images** (as in
the code's evaluation).

Simplifications (stated loudly):

- **Backbone.** The branches are deep copies of the backbone's blocks from its stride-16 to
  its stride-32 level: ResNet ``layer4`` (the code loads ImageNet ``layer4`` weights into
  both copies; a copy of the shared backbone's ``layer4`` is that), or on EfficientNet-Lite0
  (not in the paper) timm's ``blocks.5`` + ``blocks.6``, five inverted-residual blocks
  112 → 192 → 192 → 192 → 192 → 320, with ICON after the last four (192, 192, 192, 320
  channels). Other backbone types raise :class:`~fusnet.errors.ConfigError`. The shared
  backbone's own copy of those blocks is then unused and is frozen (its output still
  computed by the shared backbone; frozen mode caches it needlessly). ICON's second
  residual is ReLU(BN(x)): milder after a ResNet block, whose output is post-ReLU, but
  EfficientNet's inverted-residual blocks pass a signed, linear residual stream to the
  next block, so the copied pretrained blocks receive inputs unlike those they were
  trained on.
- **Attention trunk width.** The trunk's bottlenecks divide the width by 4 twice, so it
  needs C divisible by 64 (ResNet: 1024, 256). Otherwise (EfficientNet-Lite0: C = 112) a
  1×1 conv + BN first projects E up to the next multiple of 64 (112 → 128; not in the
  code), and the trunk then runs 128 → 32 → 8 channels.
- **Mask statistics** are per image (the code standardises with the mean and std of the
  whole batch, which makes an image's code depend on its batch-mates at test time).
- **Optimiser.** The shared protocol's (the code: SGD, momentum 0.9, Nesterov, lr 2.5e-4,
  weight decay 1e-4, batch 16, lr ÷10 at outer iteration 40).
- Frozen-backbone mode works (E comes from the cache) but still trains two top-stage
  copies, so it is slower than for the other baselines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import Bottleneck

from fusnet.checks import at_least
from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.methods.base import HashingNet, HashOutput, global_pool, register_method
from fusnet.methods.baselines.asymmetric import AsymmetricMethod
from fusnet.methods.baselines.layers import (
    block_out_channels,
    copy_top_stage,
    init_conv_bn,
    top_stage_blocks,
)

logger = logging.getLogger(__name__)

__all__ = [
    "SEMICON", "ChannelTransformer", "SEMICONHead", "SuppressionEnhancingMask",
    "attention_out_channels", "attention_trunk", "icon_groups", "refine_with_icon",
    "suppression_mask", "trunk_channels",
]

TRUNK_MULTIPLE = 64  # the trunk divides the width by 4 twice, and Bottleneck needs width % 4 == 0


def trunk_channels(channels: int) -> int:
    """The attention trunk's input width: ``channels`` rounded up to a multiple of 64."""
    if channels < 1:
        raise ConfigError(f"the attention trunk needs a positive channel count, got {channels}")
    return -(-channels // TRUNK_MULTIPLE) * TRUNK_MULTIPLE


def attention_out_channels(channels: int) -> int:
    """Channels of the attention trunk's output for a C-channel input: ``trunk_channels(C) // 16``."""
    return trunk_channels(channels) // 16


def attention_trunk(channels: int) -> nn.Sequential:
    """The residual trunk of SEMICON's SEM (and ExchNet's attention): C → C/4 → C/16, stride 1.

    Three bottleneck blocks, each preceded (but the first) by a 1×1 conv + BN that divides the
    width by 4, as the authors' ``_make_layer`` with ``att_expansion = 0.25``; first, where
    needed, the projection up to :func:`trunk_channels` (the module's "Attention trunk width").
    """
    padded = trunk_channels(channels)
    layers: list[nn.Module] = []
    if padded != channels:
        logger.info("attention trunk: projecting %d channels up to %d (1x1 conv + BN)", channels, padded)
        layers.append(nn.Sequential(nn.Conv2d(channels, padded, 1, bias=False), nn.BatchNorm2d(padded)))
        channels = padded
    layers.append(Bottleneck(channels, channels // 4))  # C -> C
    width = channels
    for _ in range(2):
        layers.append(nn.Sequential(nn.Conv2d(width, width // 4, 1, bias=False), nn.BatchNorm2d(width // 4)))
        width //= 4
        layers.append(Bottleneck(width, width // 4))  # width -> width
    trunk = nn.Sequential(*layers)
    init_conv_bn(trunk)
    return trunk


def suppression_mask(feature: Tensor) -> Tensor:
    """SEM's mask of a one-channel map (B, 1, h, w), per image, without gradient: softmax over
    space → (a − mean) / std^0.15 + 1 → clip to [0, 2], (B, 1, h, w)."""
    with torch.no_grad():
        b, _, h, w = feature.shape
        a = torch.softmax(feature.float().mean(1).reshape(b, h * w), dim=1)  # (B, hw)
        std, mean = torch.std_mean(a, dim=1, keepdim=True)  # (B, 1) each
        a = (a - mean) / std.clamp(min=1e-12).pow(0.15) + 1.0  # (B, hw)
        return a.reshape(b, 1, h, w).clamp(0.0, 2.0).to(feature.dtype)


class SuppressionEnhancingMask(nn.Module):
    """SEM: three attention maps found one after another, each suppressing the last's region."""

    def __init__(self, channels: int, num_maps: int = 3) -> None:
        super().__init__()
        self.trunk = attention_trunk(channels)
        width = attention_out_channels(channels)
        self.heads = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(width, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU())
             for _ in range(num_maps)]
        )
        init_conv_bn(self.heads)

    def forward(self, e: Tensor) -> Tensor:
        x = self.trunk(e)  # (B, C'/16, h, w), C' = C rounded up to a multiple of 64
        maps = []
        for i, head in enumerate(self.heads):
            a = head(x)  # (B, 1, h, w)
            maps.append(a)
            if i + 1 < len(self.heads):
                x = x * (2.0 - suppression_mask(a))  # (B, C'/16, h, w)
        return torch.cat(maps, dim=1)  # (B, M, h, w)


def icon_groups(channels: int) -> int:
    """ICON's default group count: the code's g = max(C // 64, 16) where it divides C (ResNet's
    and EfficientNet-Lite0's widths), else the largest divisor of C not above it (C = 40 → 10)."""
    wanted = max(channels // 64, 16)
    groups = next(g for g in range(min(wanted, channels), 0, -1) if channels % g == 0)
    if groups != wanted:
        logger.info("ICON: %d channels do not split into %d groups; using %d", channels, wanted, groups)
    return groups


class ChannelTransformer(nn.Module):
    """ICON: channel self-attention within groups, a channel shuffle, then across groups.

    Args:
        channels: C.
        heads: number of groups g; C must divide by it. Default :func:`icon_groups` (the
            code's max(C // 64, 16) where that divides C).
    """

    def __init__(self, channels: int, heads: int | None = None) -> None:
        super().__init__()
        heads = heads if heads is not None else icon_groups(channels)
        if channels % heads != 0:
            raise ConfigError(f"ICON: {channels} channels do not split into {heads} groups")
        self.heads, self.head_dim = heads, channels // heads
        self.qkv = nn.Conv2d(channels, 3 * channels, 1, groups=heads)
        self.qkv2 = nn.Conv2d(channels, 3 * channels, 1, groups=self.head_dim)
        self.norm = nn.BatchNorm2d(channels)

    @staticmethod
    def _attend(q: Tensor, k: Tensor, v: Tensor, scale: float) -> Tensor:
        attn = (q @ k.transpose(-2, -1)) * scale  # (B, g, d, d)
        attn = torch.sign(attn) * torch.sqrt(attn.abs() + 1e-5)  # signed square root
        return attn.softmax(dim=-1) @ v  # (B, g, d, HW)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        g, d = self.heads, self.head_dim
        q, k, v = self.qkv(x).reshape(b, 3, g, d, h * w).unbind(1)  # 3 x (B, g, d, HW)
        x = self._attend(q, k, v, d**-0.5).reshape(b, c, h, w) + x  # (B, C, H, W)
        x = x.reshape(b, g, d, h, w).transpose(1, 2).reshape(b, c, h, w)  # channel shuffle
        # The code's in-place ReLU also rectifies y, the second residual: kept.
        y = F.relu(self.norm(x))  # (B, C, H, W)
        q, k, v = self.qkv2(y).reshape(b, 3, d, g, h * w).unbind(1)  # 3 x (B, d, g, HW)
        x = self._attend(q, k, v, g**-0.5).reshape(b, d, g, h, w)  # (B, d, g, H, W)
        return x.transpose(1, 2).reshape(b, c, h, w) + y  # (B, C, H, W)


def refine_with_icon(blocks: list[nn.Module]) -> nn.Sequential:
    """Top-stage blocks (ResNet's or timm's) with an ICON block after every block but the
    first, each as wide as the block before it (:func:`block_out_channels`)."""
    layers: list[nn.Module] = [blocks[0]]
    for block in blocks[1:]:
        channels = block_out_channels(block)
        icon = ChannelTransformer(channels)
        init_conv_bn(icon)  # as the code's ResNet_Refine initialises its modules
        layers += [block, icon]
    return nn.Sequential(*layers)


class SEMICONHead(nn.Module):
    """SEM + ICON refinement + the split hash layer, over the level maps."""

    def __init__(self, backbone: nn.Module, bits: int) -> None:
        super().__init__()
        if bits < 6:
            raise ConfigError(f"SEMICON splits the code 1/2 global + 3 x 1/6 local: bits >= 6, got {bits}")
        channels = backbone.feature_info[1]["num_chs"]  # E: the stride-16 level
        out_channels = backbone.feature_info[2]["num_chs"]
        self.attention = SuppressionEnhancingMask(channels, num_maps=3)
        self.refine_global = refine_with_icon(copy_top_stage(backbone, "semicon"))
        self.refine_local = refine_with_icon(copy_top_stage(backbone, "semicon"))
        local_bits = bits // 6
        self.hash_global = nn.Linear(out_channels, bits - 3 * local_bits, bias=False)
        self.hash_local = nn.ModuleList([nn.Linear(out_channels, local_bits, bias=False) for _ in range(3)])

    def forward(self, levels: list[Tensor]) -> HashOutput:
        e = levels[1]  # (B, C, h, w)
        g = global_pool(self.refine_global(e))  # (B, C')
        maps = self.attention(e)  # (B, 3, h, w)
        parts = [self.hash_global(g)]
        for j, hash_layer in enumerate(self.hash_local):
            local = global_pool(self.refine_local(e * maps[:, j : j + 1]))  # (B, C')
            parts.append(hash_layer(local))
        u = torch.tanh(torch.cat(parts, dim=1))  # (B, k)
        return HashOutput(hash_logits=u, levels=levels, extras={"attention": maps})


@dataclass(frozen=True)
class SEMICONOptions:
    """SEMICON's options (``RunConfig.options`` of a ``method="semicon"`` run).

    Attributes:
        gamma: quantisation weight gamma (authors' code: 200).
        num_samples: |Omega| per outer iteration (authors' code: 2000).
        inner_epochs: epochs per outer iteration (authors' code: 30).
    """

    gamma: float = 200.0
    num_samples: int = field(default=2000, metadata=at_least(1))
    inner_epochs: int = field(default=30, metadata=at_least(1))


@register_method("semicon")
class SEMICON(AsymmetricMethod):
    """SEMICON: SEM + ICON network, ADSH loss ×12/k, V ~ N(0, 1) at the start."""

    paper = ("Shen, Sun, Wei, Xu, Zhao, Chen & Yang. SEMICON: A Learning-to-hash Solution for "
             "Large-scale Fine-grained Image Retrieval. ECCV 2022")
    v_init = "normal"
    scaled = True
    Options = SEMICONOptions
    options: SEMICONOptions

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = SEMICONHead(backbone, config.model.bits)
        for block in top_stage_blocks(backbone, "semicon"):
            block.requires_grad_(False)  # replaced by the head's own copies
        return HashingNet(backbone, head, "semicon")
