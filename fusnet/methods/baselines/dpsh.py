"""DPSH: Deep Pairwise-Supervised Hashing (Li, Wang & Kang, IJCAI 2016).

Feature learning and hash-code learning in one network, trained with the negative
log-likelihood of the pairwise labels plus a quantisation term (paper Eq. 4)::

    Θ_ij = ½ u_iᵀ u_j,   s_ij = 1 if y_i = y_j else 0,   b_i = sign(u_i)
    L = − Σ_{s_ij ∈ S} (s_ij Θ_ij − log(1 + e^{Θ_ij})) + η Σ_i ‖b_i − u_i‖²

u_i is the linear output of the hash layer (no activation). Defaults and details follow
the authors' PyTorch code (``jiangqy/DPSH-pytorch``, ``DPSH_CIFAR_10.py``):

- η = 10 (``DPSH_CIFAR_10_demo.py``: ``lamda = 10``);
- pairs are (batch image, every training image): the code keeps a memory U of the latest
  output of every training image, writes the batch's outputs into it, and uses
  Θ_ij = ½ u_iᵀ U_j with U detached (the gradient flows through the batch side only);
- both terms are divided by (N_train · B);
- the database is the network's codes of the training images.

Simplifications (stated loudly):

- **Backbone.** The paper uses CNN-F (the authors' PyTorch code AlexNet/VGG-11) with fc7
  features; here the hash layer sits on the shared backbone's pooled top level, like every
  method in this comparison.
- **Optimiser.** The shared protocol's optimiser and schedule (``config.optim``) are used,
  not the code's (plain SGD without momentum, lr 0.05, weight decay 1e-5, lr ÷10 every 50 of
  150 epochs, batch 128; set them with the usual flags to reproduce that recipe).
  **DPSH is fragile under momentum SGD**: its outputs are unbounded and its pairs use an
  output memory one epoch stale: with the protocol's momentum 0.91 it diverged (README.md,
  "Baselines"), while plain SGD (``--momentum 0 --lr 1e-3``, as the authors' code) is
  steady. The trainer stops on a non-finite loss.
- **Sign.** b = sign(u) with sign(0) = +1 (torch.sign gives 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fusnet.config import RunConfig
from fusnet.methods.base import (
    HashingMethod,
    HashingNet,
    HashOutput,
    LossAndParts,
    gather_rows,
    register_method,
    same_label,
    sign_codes,
)
from fusnet.methods.baselines.layers import PooledLinearHead

__all__ = ["DPSH", "DPSHOptions", "dpsh_loss"]


@dataclass(frozen=True)
class DPSHOptions:
    """DPSH's options (``RunConfig.options`` of a ``method="dpsh"`` run).

    Attributes:
        eta: quantisation weight eta (authors' CIFAR-10 demo: 10).
    """

    eta: float = 10.0


def dpsh_loss(
    u: Tensor, memory: Tensor, similarity: Tensor, eta: float
) -> tuple[Tensor, Tensor, Tensor]:
    """DPSH's loss of a batch against the output memory of all N training images.

    Args:
        u: (B, k) batch outputs (with gradient).
        memory: (N, k) latest outputs of every training image (no gradient).
        similarity: (B, N) s_ij in {0, 1}.
        eta: quantisation weight η.

    Returns:
        ``(total, likelihood, quantisation)``, all divided by N·B, with
        total = likelihood + η · quantisation.
    """
    n, b = memory.shape[0], u.shape[0]
    theta = 0.5 * u.float() @ memory.float().t()  # (B, N)
    # -(s Θ - log(1 + e^Θ)) = softplus(Θ) - s Θ, computed stably.
    likelihood = (F.softplus(theta) - similarity * theta).sum() / (n * b)  # ()
    quantisation = (sign_codes(u.detach().float()) - u.float()).pow(2).sum() / (n * b)  # ()
    return likelihood + eta * quantisation, likelihood, quantisation


@register_method("dpsh")
class DPSH(HashingMethod):
    """DPSH with its output memory U (N_fit, bits) as a buffer."""

    paper = "Li, Wang & Kang. Feature Learning based Deep Supervised Hashing with Pairwise Labels. IJCAI 2016"
    Options = DPSHOptions
    options: DPSHOptions

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        self.register_buffer("memory", torch.zeros(self.num_fit, self.bits))  # (N_fit, k)

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = PooledLinearHead(backbone.feature_info[-1]["num_chs"], config.model.bits, "none")
        return HashingNet(backbone, head, "dpsh")

    def derived(self) -> dict[str, Any]:
        return {"output": "linear", "pairs": "batch x all fit images"}

    def loss(self, out: HashOutput, labels: Tensor, index: Tensor) -> LossAndParts:
        u = out.hash_logits.float()  # (B, k)
        values, rows = gather_rows(u.detach(), index)
        self.memory[rows] = values
        similarity = same_label(labels, self.fit_labels)  # (B, N_fit)
        total, likelihood, quantisation = dpsh_loss(u, self.memory, similarity, self.options.eta)
        return total, {
            "loss": total.detach(),
            "loss_likelihood": likelihood.detach(),
            "loss_quantisation": quantisation.detach(),
        }
