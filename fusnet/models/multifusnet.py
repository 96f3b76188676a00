"""Multi-FusNet (method.md section 2): fusion per level, level blocks, cascade,
transformer hash-feature enhancement, hash head and classifier.

One module with the three ablation switches of Table 6 (``cascade``, ``fusion``,
``transformer``); channel counts come from the backbone's ``feature_info``.
The network splits into the backbone and a head over its level maps, so the
frozen-backbone mode can train the head on cached features.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fusnet.models.attention import build_attention
from fusnet.models.backbones import build_backbone

LEVEL_POOLS: tuple[str, ...] = ("max", "avg", "avgmax")
"""How a level block pools its map into g_i (``ModelConfig.level_pool``)."""


@dataclass(frozen=True)
class ModelConfig:
    """Multi-FusNet architecture, with the three ablation switches of Table 6.

    Attributes:
        backbone: a name in ``fusnet.models.BACKBONES``.
        pretrained: ``"none"``, ``"default"`` (the backbone's ImageNet weights) or a
            named weights tag the backbone understands (e.g. ``"IMAGENET1K_V2"``).
        weights_path: local backbone state_dict, overriding ``pretrained``.
        bits: hash code length k.
        attention: channel attention of the fusion branch (eca, se, cbam, coord, psa).
        cascade: all three levels (True) or the top level only (Table 6 "Cascading").
        fusion: two-branch fusion f + A(f) (True) or f alone (Table 6 "Fusion").
        transformer: self-attention hash-feature enhancement (Table 6 "Attention").
        block_mid: width of the level block's 1x1 conv (method.md: 512).
        level_dim: width of each level vector g_i (method.md: 1024).
        hash_hidden: hidden width of the hash head (method.md: 512).
        transformer_dim: model width d of the enhancement encoder (ours: 256).
        transformer_depth: encoder layers (ours: 1).
        transformer_heads: attention heads (ours: 4).
        dropout: encoder dropout (ours: 0.1).
        level_dropout: ours (0 = the paper): while training, each lower level's vector g_i
            (all but the top level) is zeroed per image with this probability, the kept
            ones scaled by 1 / (1 - p), so the hash head cannot lean on the lower levels
            alone (they let it memorise the training images; README fidelity notes).
        level_pool: ours (``"max"`` = the paper's GlobalMaxPool): how each level block pools
            its map into g_i, ``"max"``, ``"avg"`` or ``"avgmax"`` (the sum of both), for
            every level alike (README fidelity notes).
        lower_level_gate: ours (False = the paper): the lower levels' slots of the hash
            head's input are multiplied, after its first BatchNorm, by one learned scalar
            per level initialised to 0, so training starts from the top-level model and
            the lower levels enter only as far as the loss pulls them in.
    """

    backbone: str = "resnet50"
    pretrained: str = "default"
    weights_path: str | None = None
    bits: int = 48
    attention: str = "eca"
    cascade: bool = True
    fusion: bool = True
    transformer: bool = True
    block_mid: int = 512
    level_dim: int = 1024
    hash_hidden: int = 512
    transformer_dim: int = 256
    transformer_depth: int = 1
    transformer_heads: int = 4
    dropout: float = 0.1
    level_dropout: float = 0.0
    level_pool: str = "max"
    lower_level_gate: bool = False



@dataclass
class MultiFusNetOutput:
    """Named outputs of one forward pass.

    Attributes:
        hash_logits: real-valued hash outputs u, (B, bits); codes are sign(u).
        class_logits: (B, num_classes).
        levels: backbone maps f_i used by the head, each (B, C_i, H_i, W_i).
        fused: fused maps f̂_i = f_i + A(f_i) (equal to ``levels`` with fusion off).
        level_vectors: pooled level vectors g_i, each (B, level_dim).
    """

    hash_logits: Tensor
    class_logits: Tensor
    levels: list[Tensor]
    fused: list[Tensor]
    level_vectors: list[Tensor]


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class LevelBlock(nn.Module):
    """g = GlobalMaxPool(ConvBNReLU3x3(ConvBNReLU1x1(f -> mid) -> out)); ``pool`` "avg" or
    "avgmax" (average + max) replaces the max pooling (ours, ``ModelConfig.level_pool``)."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int,
                 pool: str = "max") -> None:
        super().__init__()
        self.reduce = ConvBNReLU(in_channels, mid_channels, 1)
        self.expand = ConvBNReLU(mid_channels, out_channels, 3)
        self.pool = pool

    def forward(self, x: Tensor) -> Tensor:
        x = self.expand(self.reduce(x))  # (B, out, H, W)
        if self.pool == "max":
            return torch.amax(x, dim=(2, 3))  # (B, out)
        if self.pool == "avg":
            return x.mean(dim=(2, 3))  # (B, out)
        return torch.amax(x, dim=(2, 3)) + x.mean(dim=(2, 3))  # (B, out)


class TwoBranchFusion(nn.Module):
    """Eq. 8: f̂ = f + A(f), A a channel attention module (identity branch when off)."""

    def __init__(self, channels: int, attention: str) -> None:
        super().__init__()
        self.attention = build_attention(attention, channels)

    def forward(self, f: Tensor) -> Tensor:
        return f + self.attention(f)  # (B, C, H, W)


class HashFeatureEnhancer(nn.Module):
    """Eq. 10 trans(·): a pre-norm transformer encoder over the level vectors.

    Each g_i (B, level_dim) is projected to width d and given a learned level
    embedding; the encoder output is projected back, flattened and added to the
    cascade vector z as a residual.
    """

    def __init__(
        self, num_levels: int, level_dim: int, dim: int, depth: int, heads: int, dropout: float
    ) -> None:
        super().__init__()
        self.project_in = nn.Linear(level_dim, dim)
        self.level_embedding = nn.Parameter(torch.zeros(1, num_levels, dim))
        nn.init.trunc_normal_(self.level_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=heads,
            dim_feedforward=4 * dim,
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.project_out = nn.Linear(dim, level_dim)

    def forward(self, level_vectors: list[Tensor]) -> Tensor:
        tokens = torch.stack(level_vectors, dim=1)  # (B, L, level_dim)
        x = self.project_in(tokens) + self.level_embedding  # (B, L, d)
        x = self.norm(self.encoder(x))  # (B, L, d)
        x = self.project_out(x)  # (B, L, level_dim)
        return x.flatten(1)  # (B, L * level_dim)


class HashHead(nn.Module):
    """Eqs. 10-11: u = Linear(ELU(BN(Linear(BN(z'))))), widths in -> hidden -> bits.

    ``gated_levels`` > 0 (ours, ``ModelConfig.lower_level_gate``): z' is ``gated_levels``
    lower-level slots then the top level's, each ``level_dim`` wide; after the first
    BatchNorm each lower slot is multiplied by a learned scalar initialised to 0 (a gate
    before that BatchNorm would be normalised away), so the head starts as the top-level
    model's.
    """

    def __init__(self, in_dim: int, hidden: int, bits: int, gated_levels: int = 0,
                 level_dim: int = 0) -> None:
        super().__init__()
        self.gated_width = gated_levels * level_dim
        if gated_levels:
            self.lower_gate = nn.Parameter(torch.zeros(gated_levels))
        self.net = nn.Sequential(
            nn.BatchNorm1d(in_dim),
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ELU(inplace=True),
            nn.Linear(hidden, bits),
        )

    def forward(self, z: Tensor) -> Tensor:
        if not self.gated_width:
            return self.net(z)  # (B, bits)
        x = self.net[0](z)  # (B, in_dim), normalised
        lower, top = x[:, : self.gated_width], x[:, self.gated_width :]
        gate = self.lower_gate.repeat_interleave(self.gated_width // len(self.lower_gate))
        x = torch.cat([lower * gate, top], dim=1)  # (B, in_dim)
        return self.net[1:](x)  # (B, bits)


class MultiFusNetHead(nn.Module):
    """Everything above the backbone: works on level maps (live or cached)."""

    def __init__(self, config: ModelConfig, level_channels: tuple[int, ...], num_classes: int):
        super().__init__()
        self.config = config
        # The top level only, when the cascade is switched off (Table 6 row 1).
        self.level_indices = list(range(len(level_channels))) if config.cascade else [-1]
        channels = [level_channels[i] for i in self.level_indices]
        self.fusions = nn.ModuleList(
            [TwoBranchFusion(c, config.attention) if config.fusion else nn.Identity() for c in channels]
        )
        self.blocks = nn.ModuleList(
            [LevelBlock(c, config.block_mid, config.level_dim, config.level_pool) for c in channels]
        )
        num_levels = len(channels)
        self.enhancer = (
            HashFeatureEnhancer(
                num_levels,
                config.level_dim,
                config.transformer_dim,
                config.transformer_depth,
                config.transformer_heads,
                config.dropout,
            )
            if config.transformer
            else None
        )
        gated = num_levels - 1 if config.lower_level_gate else 0
        self.hash_head = HashHead(num_levels * config.level_dim, config.hash_hidden, config.bits,
                                  gated, config.level_dim)
        # The authors' classifier: Linear(level_dim -> bits) on the top level, then bits -> C.
        self.classifier = nn.Sequential(
            nn.Linear(config.level_dim, config.bits), nn.Linear(config.bits, num_classes)
        )

    def forward(self, all_levels: list[Tensor]) -> MultiFusNetOutput:
        levels = [all_levels[i] for i in self.level_indices]
        fused = [fusion(f) for fusion, f in zip(self.fusions, levels, strict=True)]
        vectors = [block(f) for block, f in zip(self.blocks, fused, strict=True)]  # L x (B, D)
        if self.training and self.config.level_dropout > 0:
            vectors = drop_lower_levels(vectors, self.config.level_dropout)
        z = torch.cat(vectors, dim=1)  # (B, L * D)
        if self.enhancer is not None:
            z = z + self.enhancer(vectors)  # (B, L * D)
        return MultiFusNetOutput(
            hash_logits=self.hash_head(z),  # (B, bits)
            class_logits=self.classifier(vectors[-1]),  # (B, C)
            levels=levels,
            fused=fused,
            level_vectors=vectors,
        )


def drop_lower_levels(vectors: list[Tensor], p: float) -> list[Tensor]:
    """Zero each lower level's vector per image with probability ``p`` (the top level is
    kept), scaling the kept ones by 1 / (1 - p) so the expected vector is unchanged."""
    dropped = []
    for v in vectors[:-1]:  # each (B, D)
        keep = (torch.rand(v.shape[0], 1, device=v.device) >= p).to(v.dtype)  # (B, 1)
        dropped.append(v * keep / (1.0 - p))
    return [*dropped, vectors[-1]]


class MultiFusNet(nn.Module):
    """Backbone + :class:`MultiFusNetHead`.

    Args:
        config: the architecture.
        num_classes: classes of the training set.
        backbone: a prebuilt backbone (else built from ``config``).
    """

    def __init__(
        self, config: ModelConfig, num_classes: int, backbone: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.backbone = backbone if backbone is not None else build_model_backbone(config)
        channels = tuple(info["num_chs"] for info in self.backbone.feature_info)
        self.head = MultiFusNetHead(config, channels, num_classes)

    def forward(self, images: Tensor) -> MultiFusNetOutput:
        return self.head(self.backbone(images))  # images (B, 3, H, W)

    @torch.no_grad()
    def encode(self, images: Tensor) -> Tensor:
        """Binary codes in {-1, +1}, (B, bits); sign(0) = +1."""
        u = self.forward(images).hash_logits  # (B, bits)
        return torch.where(u >= 0, 1.0, -1.0)


def build_model_backbone(config: ModelConfig) -> nn.Module:
    """The backbone a :class:`ModelConfig` names, with its weights request.

    A ``weights_path`` wins over ``pretrained`` (a local file is the explicit choice).
    """
    if config.weights_path is not None:
        return build_backbone(config.backbone, pretrained=False, weights_path=config.weights_path)
    pretrained: bool | str
    if config.pretrained in ("none", "false", "random"):
        pretrained = False
    elif config.pretrained in ("default", "true"):
        pretrained = True
    else:
        pretrained = config.pretrained
    return build_backbone(config.backbone, pretrained=pretrained)
