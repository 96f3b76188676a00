"""HashNet: Deep Learning to Hash by Continuation (Cao, Long, Wang & Yu, ICCV 2017).

The hash layer's output z goes through h = tanh(βz); β grows during training
(continuation), so h approaches sign(z). The loss is a weighted maximum likelihood over
pairs, weighting similar and dissimilar pairs so that each group carries the same total
weight (paper Eqs. 4–6)::

    θ_ij = α ⟨h_i, h_j⟩,   s_ij = 1 if y_i = y_j else 0
    w_ij = |S| / |S₁| if s_ij = 1,   |S| / |S₀| if s_ij = 0
    L = (1/|S|) Σ_{s_ij ∈ S} w_ij (log(1 + e^{θ_ij}) − s_ij θ_ij)

Defaults follow the authors' PyTorch code (``thuml/HashNet``, ``pytorch/src``):

- α = 10 / bits (``sigmoid_param``);
- β = (1 + γ·t)^p with γ = 0.005, p = 0.5, t the training step, refreshed every 200
  steps (``network.py``: ``step_size``, ``gamma``, ``power``); the step count is a buffer
  of the method, so it is checkpointed and a resumed run continues the same schedule;
- the weighting and the 1/|S| normalisation are those of ``loss.py``'s
  ``pairwise_loss_updated`` (its |S|/|S₁| and |S|/|S₀| weights are the paper's);
- codes are sign(z) (= sign(tanh(βz))), the database the network's codes of the training
  images.

Simplifications (stated loudly):

- **Pairs.** The code draws two independent batches and uses their cross pairs; here the
  pairs are those within one batch, i ≠ j (self-pairs are trivially similar).
- **Backbone and optimiser.** The hash layer (initialised N(0, 0.01), as in the code) sits on
  the shared backbone's pooled top level; the shared protocol's optimiser is used (the code:
  SGD, momentum 0.9, Nesterov, weight decay 5e-4, lr 3e-4 halved every 2000 steps, hash
  layer lr ×10 — ``optim.backbone_lr_scale = 0.1`` mimics the last).
- **β in the loss.** tanh(βz) is applied in the loss (where β's step lives), not in the
  network; the codes are unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.checks import at_least
from fusnet.config import RunConfig
from fusnet.methods.base import HashingMethod, HashingNet, HashOutput, register_method, same_label
from fusnet.methods.baselines.layers import PooledLinearHead

__all__ = ["HashNet", "HashNetOptions", "continuation_beta", "hashnet_loss"]


@dataclass(frozen=True)
class HashNetOptions:
    """HashNet's options (``RunConfig.options`` of a ``method="hashnet"`` run).

    Attributes:
        alpha_scale: sigmoid scale alpha = this / bits (authors' code: 10/bits).
        beta_step: continuation: beta grows every this many steps (code: 200).
        beta_gamma: continuation beta = (1 + gamma * step) ** power (code: 0.005).
        beta_power: continuation power (code: 0.5).
    """

    alpha_scale: float = 10.0
    beta_step: int = field(default=200, metadata=at_least(1))
    beta_gamma: float = 0.005
    beta_power: float = 0.5


def continuation_beta(step: int, step_size: int, gamma: float, power: float) -> float:
    """β at the ``step``-th training step (0-based), refreshed every ``step_size`` steps.

    The authors' network counts forward passes from 1 and recomputes
    β = (1 + γ·t)^power whenever t is a multiple of ``step_size``; β is 1 before that.
    """
    t = step + 1
    refreshed = (t // step_size) * step_size
    return math.pow(1.0 + gamma * refreshed, power)


def hashnet_loss(h: Tensor, labels: Tensor, alpha: float) -> tuple[Tensor, dict[str, Tensor]]:
    """Weighted pairwise cross-entropy over the pairs (i, j), i ≠ j, of one batch.

    Args:
        h: (B, k) relaxed codes tanh(βz).
        labels: (B,) classes.
        alpha: the sigmoid scale α.

    Returns:
        The scalar loss and detached logging scalars (pair counts included).
    """
    b = h.shape[0]
    theta = alpha * h.float() @ h.float().t()  # (B, B)
    s = same_label(labels, labels)  # (B, B)
    off_diagonal = ~torch.eye(b, dtype=torch.bool, device=h.device)  # (B, B)
    n_pos = (s.bool() & off_diagonal).sum()  # ()
    n_all = off_diagonal.sum()  # ()
    n_neg = n_all - n_pos  # ()
    w_pos = n_all / n_pos.clamp(min=1)  # ()
    w_neg = n_all / n_neg.clamp(min=1)  # ()
    weights = torch.where(s.bool(), w_pos, w_neg) * off_diagonal  # (B, B)
    pair_loss = F.softplus(theta) - s * theta  # (B, B)
    loss = (weights * pair_loss).sum() / n_all  # ()
    return loss, {
        "loss": loss.detach(),
        "similar_pairs": n_pos.detach().float(),
        "dissimilar_pairs": n_neg.detach().float(),
    }


@register_method("hashnet")
class HashNet(HashingMethod):
    """HashNet with its continuation step counter as a buffer."""

    paper = "Cao, Long, Wang & Yu. HashNet: Deep Learning to Hash by Continuation. ICCV 2017"
    Options = HashNetOptions
    options: HashNetOptions

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        self.alpha = self.options.alpha_scale / self.bits
        self.register_buffer("step", torch.zeros((), dtype=torch.int64))  # optimiser steps so far

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = PooledLinearHead(
            backbone.feature_info[-1]["num_chs"], config.model.bits, "none", init_std=0.01
        )
        return HashingNet(backbone, head, "hashnet")

    def derived(self) -> dict[str, Any]:
        o = self.options
        return {
            "alpha": self.alpha,
            "beta": f"(1 + {o.beta_gamma} t)^{o.beta_power}, refreshed every {o.beta_step} steps",
            "beta_now": self.beta(),
            "pairs": "within the batch, i != j",
        }

    def beta(self) -> float:
        o = self.options
        return continuation_beta(int(self.step), o.beta_step, o.beta_gamma, o.beta_power)

    def loss(
        self, out: HashOutput, labels: Tensor, index: Tensor
    ) -> tuple[Tensor, dict[str, Tensor]]:
        beta = self.beta()
        h = torch.tanh(beta * out.hash_logits.float())  # (B, k)
        loss, parts = hashnet_loss(h, labels, self.alpha)
        parts["beta"] = torch.tensor(beta)
        return loss, parts

    def after_step(self) -> None:
        self.step += 1
