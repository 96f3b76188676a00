"""Building blocks the baselines share: the pooled linear hash head and top-stage copies."""

from __future__ import annotations

import copy
import logging

import torch
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.methods.base import HashOutput, global_pool
from fusnet.models.backbones import ResNetBackbone, TimmBackbone, block_out_channels

logger = logging.getLogger(__name__)

__all__ = [
    "PooledLinearHead",
    "block_out_channels",
    "copy_top_stage",
    "init_conv_bn",
    "top_stage_blocks",
]


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
    """The backbone's own blocks that map its stride-16 level to its stride-32 level, in order.

    - :class:`~fusnet.models.backbones.ResNetBackbone`: the blocks of ``layer4``.
    - :class:`~fusnet.models.backbones.TimmBackbone`: the modules of the timm feature model
      after the stride-16 tap up to and including the stride-32 tap (named by
      ``feature_info[i]["module"]``, e.g. ``blocks.4`` and ``blocks.6`` for
      EfficientNet-Lite0, giving ``blocks.5`` and ``blocks.6``), each stage (a
      ``nn.Sequential``) split into its blocks: for EfficientNet-Lite0 the four
      InvertedResiduals of ``blocks.5`` (112 → 192 → 192 → 192 → 192 channels, the first
      with stride 2) and the one of ``blocks.6`` (192 → 320).

    Applied in order to the stride-16 map they give the stride-32 map.

    Args:
        backbone: the shared backbone.
        method: the method's name, for the error message.

    Returns:
        The backbone's blocks themselves (not copies).

    Raises:
        ConfigError: the backbone is of another type, or its taps cannot be located.
    """
    if isinstance(backbone, ResNetBackbone):
        return list(backbone.layer4)
    if isinstance(backbone, TimmBackbone):
        stages = _timm_modules_between(backbone, method)
        blocks: list[nn.Module] = []
        for stage in stages:
            blocks.extend(stage.children() if isinstance(stage, nn.Sequential) else [stage])
        return blocks
    raise ConfigError(
        f"method {method!r} refines the backbone's stride-16 map with copies of the blocks that "
        f"lead to its stride-32 map; that is defined for ResNetBackbone (resnet50, resnet18) "
        f"and TimmBackbone (efficientnet_lite0), not {type(backbone).__name__}"
    )


def _timm_modules_between(backbone: TimmBackbone, method: str) -> list[nn.Module]:
    """Children of the timm feature model after the stride-16 tap, up to the stride-32 tap.

    The taps are ``feature_info[1]`` and ``feature_info[2]``'s ``module`` names. They must be
    siblings (``blocks.4`` and ``blocks.6``: children of ``blocks``). timm's
    ``FeatureListNet`` flattens nested names to its top level (``stages.2`` -> ``stages_2``);
    that spelling is tried when the dotted path is not a submodule.
    """
    body = backbone.body
    low, high = (str(backbone.feature_info[i]["module"]) for i in (1, 2))

    def locate(name: str) -> tuple[nn.Module, str] | None:
        parent_name, _, child = name.rpartition(".")
        try:
            parent = body.get_submodule(parent_name) if parent_name else body
        except AttributeError:
            parent = None
        if parent is not None and child in dict(parent.named_children()):
            return parent, child
        flat = name.replace(".", "_")
        return (body, flat) if flat in dict(body.named_children()) else None

    found_low, found_high = locate(low), locate(high)
    if found_low is None or found_high is None or found_low[0] is not found_high[0]:
        raise ConfigError(
            f"method {method!r}: cannot find the blocks between the backbone's stride-16 tap "
            f"{low!r} and stride-32 tap {high!r} in its timm feature model "
            f"({type(body).__name__}); they must be sibling modules"
        )
    parent = found_low[0]
    names = [name for name, _ in parent.named_children()]
    first, last = names.index(found_low[1]), names.index(found_high[1])
    if last <= first:
        raise ConfigError(f"method {method!r}: the stride-32 tap {high!r} does not follow {low!r}")
    return [parent.get_submodule(name) for name in names[first + 1 : last + 1]]


def copy_top_stage(backbone: nn.Module, method: str) -> list[nn.Module]:
    """Independent copies of the blocks of the backbone's top stage (see :func:`top_stage_blocks`).

    SEMICON and ExchNet refine the stride-16 map with their own copies of ResNet-50's
    ``layer4`` (both initialised from the ImageNet weights in the authors' code); a deep copy
    of the shared backbone's ``layer4`` is the same thing, carrying whatever weights the
    backbone was built with. On a timm backbone (EfficientNet-Lite0) the analogue is a copy
    of the blocks from the stride-16 level to the stride-32 level (``blocks.5``, ``blocks.6``).

    Args:
        backbone: the shared backbone.
        method: the method's name, for the error message.

    Returns:
        The copied blocks, in order.

    Raises:
        ConfigError: the backbone is neither a ResNet nor a timm backbone.
    """
    return [copy.deepcopy(block) for block in top_stage_blocks(backbone, method)]


def init_conv_bn(module: nn.Module) -> None:
    """Kaiming-normal (fan_out) convolutions and unit/zero BatchNorm, as torchvision ResNets."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
