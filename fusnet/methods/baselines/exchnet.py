"""ExchNet (Cui, Jiang, Wei, Li & Yoshie, ECCV 2020): part attention, local feature alignment
by feature exchange, and asymmetric hashing.

Architecture, on the shared backbone's stride-16 map E (ResNet ``layer3``; EfficientNet-Lite0
timm ``blocks.4``):

- **Attention**: a residual trunk (C → C/4 → C/16, stride 1; SEMICON's,
  :func:`~fusnet.methods.baselines.semicon.attention_trunk`) and a 1×1 conv + BN + ReLU give
  M part maps A_1..A_M (B, M, h, w).
- **Local features**: E ⊙ A_j through one shared copy of the top stage (ResNet ``layer4``;
  EfficientNet-Lite0 ``blocks.5`` + ``blocks.6``), average-pooled: part features f_j
  (B, M, C').
- **Global feature**: the backbone's own top level (stride 32), average-pooled (B, C').
- **Hash layer**: tanh(W [f_1 … f_M, f_global] + c).

Losses:

- **Attention constraints** (diversity of the parts): with P_j the softmax over space of
  the channel-mean of part j's refined map and Q_j the softmax over channels of f_j, and
  H(p, q) = ‖√p − √q‖₂ / √2 (the Hellinger distance, in [0, 1]) averaged over part pairs::

      L_sp = mean_b (1 − H̄(P))          L_ch = mean_b max(0, t − H̄(Q))

- **Local feature alignment** (the "exchange"): each class keeps anchor part features (the
  mean part features of its images); while training, each part feature of an image is
  swapped for its class's anchor with probability 0.5 before the hash layer, so the hash
  function must treat a part the same whoever it comes from.
- **Hash learning** (:mod:`fusnet.methods.baselines.asymmetric`): ADSH's loss with learned
  database codes V (the exchange feeds it), scaled by 12/k, V ~ N(0, 1) at the start. **The
  retrieval database is the learned V for the training images.**

Total: L = L_hash + λ_sp L_sp + λ_ch L_ch.

Sources and defaults, stated loudly: the authors released no code. Details follow the
reimplementation used by later fine-grained hashing papers for their ExchNet numbers
(``ludics/fghash`` ``models/exchnet.py`` / ``exchnet_loss.py``, also in
``aassxun/DSH_Analysis``, the SEMICON authors' comparison code): M = 4, t = 0.4,
λ_sp = λ_ch = 1, exchange probability 0.5, anchors used from outer iteration 25
(``BEGIN_ALIGN_ITER: 25`` of 60), 10 epochs per outer iteration (``END_EPOCH: 10``),
quantisation term on (``USE_QUAN_LOSS: true``), so the V-step is ADSH's with γ.

Simplifications (stated loudly):

- **Anchors** are the class means of the part features of the training batches of the
  preceding outer iteration, accumulated on the fly (train mode, augmented images); the
  reimplementation recomputes them in a separate eval-mode pass over the training set.
  Classes not seen in that iteration keep their previous anchor (zero before the first).
- **No extra alignment loss** between part features and anchors (the DSH_Analysis variant
  adds one; fghash leaves it off).
- **Global branch**: the backbone's own top stage (the reimplementation uses a second,
  identically initialised copy).
- **Backbone and attention trunk width.** As SEMICON's (on EfficientNet-Lite0, not in the
  papers: the local branch copies ``blocks.5`` + ``blocks.6``, and E is projected 112 → 128
  before the trunk; other backbone types raise :class:`~fusnet.errors.ConfigError`).
- **Optimiser.** The shared protocol's (fghash: Adam, lr 1e-4, weight decay 1e-5, batch 64,
  lr ÷10 at outer iterations 30 and 45).
- Frozen-backbone mode works (E from the cache), but the global branch is then frozen and
  the local top-stage copy still trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from fusnet.checks import at_least, within
from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.methods.base import HashingNet, HashOutput, gather_rows, global_pool, register_method
from fusnet.methods.baselines.asymmetric import AsymmetricMethod
from fusnet.methods.baselines.layers import copy_top_stage, init_conv_bn
from fusnet.methods.baselines.semicon import attention_out_channels, attention_trunk

__all__ = [
    "ExchNet", "ExchNetHead", "channel_diversity_loss", "mean_pairwise_hellinger",
    "spatial_diversity_loss",
]


def mean_pairwise_hellinger(p: Tensor) -> Tensor:
    """Mean over part pairs j < l of ‖√p_j − √p_l‖₂ / √2, per image: (B, M, D) distributions
    over D (rows sum to 1, M >= 2) -> (B,) values in [0, 1]."""
    m = p.shape[1]
    root = p.float().clamp(min=0).sqrt()  # (B, M, D)
    first, second = torch.triu_indices(m, m, offset=1, device=p.device)  # pairs j < l
    distances = (root[:, first] - root[:, second]).norm(dim=2) / math.sqrt(2.0)  # (B, pairs)
    return distances.mean(dim=1)  # (B,)


def spatial_diversity_loss(spatial: Tensor) -> Tensor:
    """L_sp = mean_b (1 − H̄(P_b)): parts should look at different places."""
    return (1.0 - mean_pairwise_hellinger(spatial)).mean()  # ()


def channel_diversity_loss(channel: Tensor, margin: float) -> Tensor:
    """L_ch = mean_b max(0, t − H̄(Q_b)): part features should differ, up to a margin t."""
    return torch.relu(margin - mean_pairwise_hellinger(channel)).mean()  # ()


class ExchNetHead(nn.Module):
    """Part attention, local refinement, global pooling and the hash layer."""

    def __init__(self, backbone: nn.Module, bits: int, parts: int) -> None:
        super().__init__()
        if parts < 2:
            raise ConfigError(f"ExchNet needs at least 2 parts, got {parts}")
        channels = backbone.feature_info[1]["num_chs"]  # E: the stride-16 level
        out_channels = backbone.feature_info[2]["num_chs"]
        self.parts = parts
        width = attention_out_channels(channels)  # C/16, C rounded up to a multiple of 64
        maps = nn.Sequential(nn.Conv2d(width, parts, 1, bias=False), nn.BatchNorm2d(parts), nn.ReLU())
        init_conv_bn(maps)
        self.attention = nn.Sequential(attention_trunk(channels), maps)
        self.refine_local = nn.Sequential(*copy_top_stage(backbone, "exchnet"))
        self.hash_layer = nn.Linear(out_channels * (parts + 1), bits)

    def forward(
        self, levels: list[Tensor], anchors: Tensor | None = None, keep: Tensor | None = None
    ) -> HashOutput:
        """Hash outputs; with ``anchors`` (B, M, C') and ``keep`` (B, M, 1) in {0, 1}, the
        part features where ``keep`` is 0 are replaced by the anchors (training only)."""
        e, top = levels[1], levels[2]  # (B, C, h, w), (B, C', h', w')
        b, c, h, w = e.shape
        g = global_pool(top)  # (B, C')
        a = self.attention(e)  # (B, M, h, w)
        local_in = (e[:, None] * a[:, :, None]).reshape(b * self.parts, c, h, w)  # (B·M, C, h, w)
        local = self.refine_local(local_in)  # (B·M, C', h', w')
        parts = global_pool(local).reshape(b, self.parts, -1)  # (B, M, C')
        spatial = torch.softmax(local.mean(dim=1).reshape(b, self.parts, -1), dim=2)  # (B, M, h'w')
        channel = torch.softmax(parts, dim=2)  # (B, M, C')
        mixed = parts
        if anchors is not None and keep is not None:
            mixed = keep * parts + (1.0 - keep) * anchors  # (B, M, C')
        u = torch.tanh(self.hash_layer(torch.cat([mixed.flatten(1), g], dim=1)))  # (B, k)
        extras = {"parts": parts, "spatial": spatial, "channel": channel, "attention": a}
        return HashOutput(hash_logits=u, levels=levels, extras=extras)


@dataclass(frozen=True)
class ExchNetOptions:
    """ExchNet's options (``RunConfig.options`` of a ``method="exchnet"`` run).

    Attributes:
        gamma: quantisation weight gamma (ADSH's 200).
        num_samples: |Omega| per outer iteration (2000).
        inner_epochs: epochs per outer iteration (reimplementation: 10).
        parts: number of part attention maps M (4).
        margin: channel-diversity margin t (0.4).
        lambda_spatial: weight of the spatial-diversity loss (1.0).
        lambda_channel: weight of the channel-diversity loss (1.0).
        exchange_prob: probability that a part feature is swapped for its class anchor
            (0.5).
        align_start: outer iteration (1-based) after which anchors are built and features
            exchanged (reimplementation: 25 of 60).
    """

    gamma: float = 200.0
    num_samples: int = field(default=2000, metadata=at_least(1))
    inner_epochs: int = field(default=10, metadata=at_least(1))
    parts: int = field(default=4, metadata=at_least(1))
    margin: float = 0.4
    lambda_spatial: float = 1.0
    lambda_channel: float = 1.0
    exchange_prob: float = field(default=0.5, metadata=within(0.0, 1.0))
    align_start: int = field(default=25, metadata=at_least(0))


@register_method("exchnet")
class ExchNet(AsymmetricMethod):
    """ExchNet: part features with anchor exchange, diversity constraints, ADSH loss ×12/k."""

    paper = ("Cui, Jiang, Wei, Li & Yoshie. ExchNet: A Unified Hashing Network for Large-Scale "
             "Fine-Grained Image Retrieval. ECCV 2020")
    v_init = "normal"
    scaled = True
    Options = ExchNetOptions
    options: ExchNetOptions

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        # Anchors (C, M, C'): sized by bind() once the network (and so C') is known.
        self.register_buffer("anchors", torch.zeros(num_classes, self.options.parts, 0))
        self.register_buffer("anchor_sums", torch.zeros(num_classes, self.options.parts, 0))
        self.register_buffer("anchor_counts", torch.zeros(num_classes))
        self.register_buffer("anchors_ready", torch.zeros((), dtype=torch.bool))

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = ExchNetHead(backbone, config.model.bits, cls.parse(config).parts)
        return HashingNet(backbone, head, "exchnet")

    def derived(self) -> dict[str, Any]:
        anchors = "class means of the previous outer iteration's part features"
        return {**super().derived(), "anchors": anchors}

    def bind(self, model: HashingNet) -> None:
        """Size the anchor buffers (C, M, C') from the network's part-feature width."""
        dim = model.head.hash_layer.in_features // (self.options.parts + 1)
        device = self.anchors.device
        self.anchors = torch.zeros(self.num_classes, self.options.parts, dim, device=device)
        self.anchor_sums = torch.zeros(self.num_classes, self.options.parts, dim, device=device)

    def on_epoch_start(self, epoch: int) -> None:
        if epoch % self.inner_epochs == 0:
            self.anchor_sums.zero_()
            self.anchor_counts.zero_()
        super().on_epoch_start(epoch)

    def forward_kwargs(self, labels: Tensor) -> dict[str, Any]:
        if not bool(self.anchors_ready):
            return {}
        keep = torch.bernoulli(
            torch.full((labels.shape[0], self.options.parts, 1), 1.0 - self.options.exchange_prob, device=labels.device)
        )  # (B, M, 1)
        return {"anchors": self.anchors[labels], "keep": keep}

    def loss(
        self, out: HashOutput, labels: Tensor, index: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        self._accumulate_anchors(out.extras["parts"].detach().float(), labels)
        hash_total, parts = self.hash_loss(out.hash_logits, labels, index)
        l_sp = spatial_diversity_loss(out.extras["spatial"])
        l_ch = channel_diversity_loss(out.extras["channel"], self.options.margin)
        total = hash_total + self.options.lambda_spatial * l_sp + self.options.lambda_channel * l_ch
        parts.update(loss=total.detach(), loss_spatial=l_sp.detach(), loss_channel=l_ch.detach())
        return total, parts

    def _accumulate_anchors(self, features: Tensor, labels: Tensor) -> None:
        b = features.shape[0]
        values, classes = gather_rows(features.reshape(b, -1), labels)
        self.anchor_sums.index_add_(0, classes, values.reshape(len(classes), self.options.parts, -1))
        self.anchor_counts.index_add_(0, classes, torch.ones_like(classes, dtype=self.anchor_counts.dtype))

    def on_epoch_end(self, epoch: int) -> None:
        super().on_epoch_end(epoch)
        outer = epoch // self.inner_epochs
        if (epoch + 1) % self.inner_epochs == 0 and outer + 1 >= self.options.align_start:
            seen = self.anchor_counts > 0  # (C,)
            self.anchors[seen] = self.anchor_sums[seen] / self.anchor_counts[seen, None, None]
            self.anchors_ready.fill_(True)
