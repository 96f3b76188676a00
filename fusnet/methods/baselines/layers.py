"""Building blocks the baselines share: the pooled linear hash head and top-stage copies."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.methods.base import HashOutput, global_pool
from fusnet.models.backbones import ResNetBackbone, TimmBackbone, block_out_channels

__all__ = ["PooledLinearHead", "block_out_channels", "copy_top_stage", "init_conv_bn", "top_stage_blocks"]


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


def top_stage_blocks(backbone: nn.Module, method: str) -> list[nn.Module]:
    """The backbone's own blocks (not copies) that, applied in order, map its stride-16 level
    to its stride-32 level: its top stage (``stages()[2]``) split into blocks.

    - :class:`~fusnet.models.backbones.ResNetBackbone`: the blocks of ``layer4``.
    - :class:`~fusnet.models.backbones.TimmBackbone` (EfficientNet-Lite): the blocks after the
      stride-16 tap up to and including the stride-32 tap, each stage split into its
      blocks: for EfficientNet-Lite0 the four InvertedResiduals of ``blocks.5`` (112 → 192 →
      192 → 192 → 192 channels, the first with stride 2) and the one of ``blocks.6``
      (192 → 320).

    Args:
        backbone: the shared backbone.
        method: the method's name, for the error message.

    Raises:
        ConfigError: the backbone is of another type.
    """
    if not isinstance(backbone, ResNetBackbone | TimmBackbone):
        raise ConfigError(
            f"method {method!r} refines the backbone's stride-16 map with copies of the blocks "
            f"that lead to its stride-32 map; that is defined for ResNetBackbone (resnet50, "
            f"resnet18) and TimmBackbone (efficientnet_lite0), not {type(backbone).__name__}"
        )
    blocks: list[nn.Module] = []
    for stage in backbone.stages()[2]:
        blocks.extend(stage.children() if isinstance(stage, nn.Sequential) else [stage])
    return blocks


def copy_top_stage(backbone: nn.Module, method: str) -> list[nn.Module]:
    """Independent copies of the blocks of :func:`top_stage_blocks`, in order.

    SEMICON and ExchNet refine the stride-16 map with their own copies of ResNet-50's
    ``layer4``, initialised from the ImageNet weights in the authors' code: a deep copy of the
    shared backbone's, which carries whatever weights the backbone was built with."""
    return [copy.deepcopy(block) for block in top_stage_blocks(backbone, method)]


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convolutions and unit/zero BatchNorm, as torchvision ResNets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
