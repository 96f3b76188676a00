"""ADSH: Asymmetric Deep Supervised Hashing (Jiang & Li, AAAI 2018).

The query network is the shared backbone with one linear hash layer and tanh on its pooled
top level; the database codes V are learned directly and updated by discrete cyclic
coordinate descent (:mod:`fusnet.methods.baselines.asymmetric`: the loss, the V-step, the
mapping onto the training loop). **The retrieval database is the learned V for the training
images** (``metrics.json``: ``database = "learned codes V"``); only the queries (the test
split) are encoded by the network.

Defaults (paper and the authors' ``ADSH_pytorch`` code): :class:`ADSHOptions`, V initialised
to 0, loss divided by N·|batch|.

Simplifications (stated loudly):

- **Backbone and optimiser.** The code's ResNet-50 variant (``cnn_model.py``: pooled
  ``layer4`` → Linear → tanh) is what the head is; the shared protocol's optimiser is used
  (the code: plain SGD, lr 1e-3, weight decay 5e-4, lr ÷10 at outer iterations 10, 20, 30,
  40, 50 — with 3 inner epochs, ``optim.lr_step = 30``; batch 64).
- See :mod:`fusnet.methods.baselines.asymmetric` for sign(0), dropped partial batches and the
  validation images.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from fusnet.checks import at_least
from fusnet.config import RunConfig
from fusnet.methods.base import HashingNet, register_method
from fusnet.methods.baselines.asymmetric import AsymmetricMethod
from fusnet.methods.baselines.layers import PooledLinearHead

__all__ = ["ADSH", "ADSHOptions"]


@dataclass(frozen=True)
class ADSHOptions:
    """ADSH's options (``RunConfig.options`` of a ``method="adsh"`` run).

    Attributes:
        gamma: quantisation weight gamma (paper and code: 200).
        num_samples: sampled query set size |Omega| per outer iteration (2000).
        inner_epochs: epochs over Omega per outer iteration, between V updates (3).
        soft_similarity: the authors' code's soft similarity (dissimilar target
            -n_pos/n_neg instead of the paper's -1); SEMICON's and ExchNet's code always
            use it.
    """

    gamma: float = 200.0
    num_samples: int = field(default=2000, metadata=at_least(1))
    inner_epochs: int = field(default=3, metadata=at_least(1))
    soft_similarity: bool = True


@register_method("adsh")
class ADSH(AsymmetricMethod):
    """ADSH: tanh query network, learned database codes V (zeros at the start)."""

    paper = "Jiang & Li. Asymmetric Deep Supervised Hashing. AAAI 2018"
    v_init = "zeros"
    Options = ADSHOptions
    options: ADSHOptions

    @classmethod
    def build_model(cls, config: RunConfig, num_classes: int, backbone: nn.Module) -> HashingNet:
        head = PooledLinearHead(backbone.feature_info[-1]["num_chs"], config.model.bits, "tanh")
        return HashingNet(backbone, head, "adsh")
