"""A run's optimiser and learning-rate schedule (``method.md`` section 5).

SGD over three parameter groups: the head at ``optim.lr``; the trained backbone part (the
whole backbone in mode "full", the top stages in mode "top") at ``optim.lr *
optim.backbone_lr_scale``; the method's own learned parameters (Multi-FusNet's task
weights α) at ``optim.lr`` without weight decay.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from fusnet.config import RunConfig

__all__ = ["build_optimizer", "build_scheduler"]


def build_optimizer(
    model: nn.Module, method: nn.Module, config: RunConfig, trainable: nn.Module
) -> torch.optim.SGD:
    """SGD over the groups of the module docstring.

    Args:
        model: the whole network (``.head`` and ``.backbone``).
        method: the method (its parameters, if any).
        trainable: what trains (``model``, its head, or the top stages with the head).
    """
    optim = config.optim
    groups = [{"params": list(model.head.parameters()), "lr": optim.lr}]
    backbone = {"full": model.backbone, "top": getattr(trainable, "stages", None)}.get(config.mode)
    if backbone is not None:
        groups.append(
            {"params": [p for p in backbone.parameters() if p.requires_grad],  # freeze_depthwise
             "lr": optim.lr * optim.backbone_lr_scale}
        )
    groups.append({"params": list(method.parameters()), "lr": optim.lr, "weight_decay": 0.0})
    return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum,
                           weight_decay=optim.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, config: RunConfig) -> Any:
    """StepLR (the authors' code) or linear warm-up then half-cosine to 0, stepped per epoch."""
    optim = config.optim
    if optim.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=optim.lr_step,
                                               gamma=optim.lr_gamma)
    warmup, epochs = optim.warmup_epochs, optim.epochs

    def factor(epoch: int) -> float:  # the rate of epoch ``epoch`` (0-based)
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
