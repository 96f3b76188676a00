"""ADSH: Asymmetric Deep Supervised Hashing (Jiang & Li, AAAI 2018).

The query network is the shared backbone with one linear hash layer and tanh on its pooled
top level; the database codes V are learned directly and updated by discrete cyclic
coordinate descent (see :mod:`fusnet.baselines.asymmetric` for the loss, the V-step and the
mapping onto the training loop).

**The retrieval database is the learned V for the training images**, not the network's
codes of them (``metrics.json``: ``database = "learned codes V"``); only the queries (the
test split) are encoded by the network.

Defaults (paper and the authors' ``ADSH_pytorch`` code): γ = 200, |Ω| = 2000, 3 epochs per
outer iteration, V initialised to 0, soft similarity (the code's ``calc_sim``), loss divided
by N·|batch|.

Simplifications (stated loudly):

- **Backbone and optimiser.** The code's ResNet-50 variant (``cnn_model.py``: pooled
  ``layer4`` → Linear → tanh) is what the head is; the shared protocol's optimiser is used
  (the code: plain SGD, lr 1e-3, weight decay 5e-4, lr ÷10 at outer iterations 10, 20, 30,
  40, 50 — with 3 inner epochs, ``optim.lr_step = 30``; batch 64).
- See :mod:`fusnet.baselines.asymmetric` for sign(0), dropped partial batches and the
  validation images.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from fusnet.baselines.asymmetric import AsymmetricMethod
from fusnet.baselines.base import HashingNet, register_method
from fusnet.baselines.layers import PooledLinearHead
from fusnet.config import RunConfig

logger = logging.getLogger(__name__)

__all__ = ["ADSH"]


@register_method("adsh")
class ADSH(AsymmetricMethod):
    """ADSH: tanh query network, learned database codes V (zeros at the start)."""

    paper = "Jiang & Li. Asymmetric Deep Supervised Hashing. AAAI 2018"
    v_init = "zeros"
    loss_scale = 1.0

    def __init__(self, config: RunConfig, fit_labels: Tensor, num_classes: int) -> None:
        super().__init__(config, fit_labels, num_classes)
        options = config.baseline
        self._init_state(options.adsh_gamma, options.adsh_num_samples, options.adsh_inner_epochs,
                         soft=options.adsh_soft_similarity)

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = PooledLinearHead(backbone.feature_info[-1]["num_chs"], config.model.bits, "tanh")
        return HashingNet(backbone, head, "adsh")
