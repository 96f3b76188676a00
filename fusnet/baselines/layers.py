"""Building blocks the baselines share: the pooled linear hash head and top-stage copies."""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

from fusnet.baselines.base import HashOutput, global_pool
from fusnet.errors import ConfigError
from fusnet.models.backbones import ResNetBackbone

logger = logging.getLogger(__name__)

__all__ = ["PooledLinearHead", "copy_top_stage", "init_conv_bn"]


class PooledLinearHead(nn.Module):
    """u = act(W · GAP(f3) + c): the deep-hashing head of DPSH, HashNet and ADSH.

    The papers put one linear hash layer on the CNN's last feature vector (AlexNet/VGG
    fc7, or ResNet-50's pooled ``layer4`` in the ADSH and HashNet code); here the feature is
    the shared backbone's top level, globally average-pooled.

    Args:
        in_channels: channels of the top level (from ``feature_info``).
        bits: code length k.
        activation: "none" (DPSH: linear outputs), "tanh" (ADSH). HashNet's scaled tanh
            depends on the training step and is applied in its loss.
        init_std: if given, weights ~ N(0, init_std) and zero bias (HashNet's code: 0.01);
            else PyTorch's default initialisation (as in the DPSH and ADSH code).
    """

    def __init__(
        self, in_channels: int, bits: int, activation: str = "none", init_std: float | None = None
    ) -> None:
        super().__init__()
        if activation not in ("none", "tanh"):
            raise ConfigError(f"activation must be 'none' or 'tanh', got {activation!r}")
        self.activation = activation
        self.hash_layer = nn.Linear(in_channels, bits)
        if init_std is not None:
            nn.init.normal_(self.hash_layer.weight, 0.0, init_std)
            nn.init.zeros_(self.hash_layer.bias)

    def forward(self, levels: list[Tensor]) -> HashOutput:
        z = self.hash_layer(global_pool(levels[-1]))  # (B, bits)
        u = torch.tanh(z) if self.activation == "tanh" else z  # (B, bits)
        return HashOutput(hash_logits=u, levels=levels)


def copy_top_stage(backbone: nn.Module, method: str) -> list[nn.Module]:
    """Independent copies of the blocks of the backbone's top stage (ResNet ``layer4``).

    SEMICON and ExchNet refine the stride-16 map with their own copies of ResNet-50's
    ``layer4`` (both initialised from the ImageNet weights in the authors' code); a deep copy
    of the shared backbone's ``layer4`` is the same thing, carrying whatever weights the
    backbone was built with.

    Args:
        backbone: the shared backbone.
        method: the method's name, for the error message.

    Returns:
        The copied residual blocks, in order.

    Raises:
        ConfigError: the backbone is not a ResNet (the methods are defined on ResNet stages).
    """
    if not isinstance(backbone, ResNetBackbone):
        raise ConfigError(
            f"method {method!r} refines the backbone's stride-16 map with copies of its top "
            f"ResNet stage; use a ResNet backbone (resnet50, resnet18), not "
            f"{type(backbone).__name__}"
        )
    return [copy.deepcopy(block) for block in backbone.layer4]


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convolutions and unit/zero BatchNorm, as torchvision ResNets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
