"""ResNet backbones (torchvision): ``resnet50`` (the paper's) and ``resnet18``.

Tapped after ``layer2``, ``layer3`` and ``layer4`` (strides 8, 16, 32). ``pretrained=True``
means ImageNet ``IMAGENET1K_V1``, the torchvision weights of the paper's era (the ones
``resnet50(pretrained=True)`` gave the authors' code); other torchvision weight names and
local files are accepted. Importing this module registers both factories in
:data:`~fusnet.models.backbone_base.BACKBONES`; build them with
:func:`fusnet.models.backbones.build_backbone`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.models.backbone_base import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Backbone,
    Pretrained,
    block_out_channels,
    check_request,
    load_checked,
    register_backbone,
)
from fusnet.models.pretrained import download_state_dict, load_state_dict_file

logger = logging.getLogger(__name__)

__all__ = ["ResNetBackbone", "resnet18", "resnet50"]

# pretrained=True means IMAGENET1K_V1: the weights of the paper's era (torchvision's
# `pretrained=True` before 0.13), which the authors' code loaded.
_RESNET_DEFAULT_WEIGHTS = "IMAGENET1K_V1"


class ResNetBackbone(Backbone):
    """A torchvision ResNet tapped after ``layer2``, ``layer3`` and ``layer4``.

    Submodule names are torchvision's (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), so
    ``state_dict()`` keys are torchvision's without ``fc``. The outputs equal those of
    ``torchvision.models.feature_extraction.create_feature_extractor`` on the same model.

    Args:
        net: A torchvision ResNet; its ``avgpool`` and ``fc`` are dropped.
        weights_tag: Provenance of the weights in ``net``.
    """

    def __init__(self, net: tvm.ResNet, weights_tag: str) -> None:
        last_blocks = [net.layer2[-1], net.layer3[-1], net.layer4[-1]]
        channels = [block_out_channels(block) for block in last_blocks]
        feature_info = [
            {"num_chs": channels[0], "reduction": 8, "module": "layer2"},
            {"num_chs": channels[1], "reduction": 16, "module": "layer3"},
            {"num_chs": channels[2], "reduction": 32, "module": "layer4"},
        ]
        super().__init__(
            feature_info, weights_tag=weights_tag, mean=IMAGENET_MEAN, std=IMAGENET_STD
        )
        self.conv1 = net.conv1
        self.bn1 = net.bn1
        self.relu = net.relu
        self.maxpool = net.maxpool
        self.layer1 = net.layer1
        self.layer2 = net.layer2
        self.layer3 = net.layer3
        self.layer4 = net.layer4

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return ``[layer2, layer3, layer4]`` outputs for images ``x`` ``(B, 3, H, W)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4)
        x = self.layer1(x)  # (B, C0, H/4, W/4)
        f1 = self.layer2(x)  # (B, C1, H/8, W/8)
        f2 = self.layer3(f1)  # (B, C2, H/16, W/16)
        f3 = self.layer4(f2)  # (B, C3, H/32, W/32)
        return [f1, f2, f3]

    def stages(self) -> list[nn.Module]:
        stem = nn.Sequential(self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2)
        return [stem, self.layer3, self.layer4]


def _resolve_torchvision_weights(
    name: str, enum: type[tvm.WeightsEnum], pretrained: Pretrained
) -> tvm.WeightsEnum:
    key = _RESNET_DEFAULT_WEIGHTS if pretrained is True else str(pretrained)
    if key.startswith(f"{enum.__name__}."):
        key = key[len(enum.__name__) + 1 :]
    try:
        return enum[key]
    except KeyError:
        names = list(enum.__members__)
        raise ConfigError(
            f"backbone {name!r}: unknown torchvision weights {pretrained!r}; "
            f"use True ({_RESNET_DEFAULT_WEIGHTS}), one of {names}, or weights_path="
        ) from None


def _build_resnet(
    name: str,
    constructor: Callable[..., tvm.ResNet],
    enum: type[tvm.WeightsEnum],
    pretrained: Pretrained,
    weights_path: str | Path | None,
) -> ResNetBackbone:
    check_request(name, pretrained, weights_path)
    net = constructor(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        state_dict = load_state_dict_file(path)
        # The classifier is not used: files saved from a ResNetBackbone (no fc) load too.
        load_checked(net, state_dict, source=f"file {path}", ignore_missing=("fc.",))
        tag = f"file:{path}"
    elif pretrained:
        weights = _resolve_torchvision_weights(name, enum, pretrained)
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        hint = (
            f"Download {weights.url} where there is network and pass "
            f"weights_path=<that file> (or copy it to {cache})."
        )
        state_dict = download_state_dict(
            weights.url, what=f"torchvision {name} {weights.name}", offline_hint=hint
        )
        load_checked(net, state_dict, source=weights.url)
        tag = f"torchvision:{enum.__name__}.{weights.name}"
    else:
        tag = "random"
    logger.info("built backbone %s (weights: %s)", name, tag)
    return ResNetBackbone(net, weights_tag=tag)


@register_backbone("resnet50")
def resnet50(pretrained: Pretrained = False, weights_path: str | Path | None = None) -> Backbone:
    """ResNet-50 (the paper's backbone): levels of 512/1024/2048 channels at strides 8/16/32.

    Args:
        pretrained: False (random), True (``IMAGENET1K_V1``) or a ``ResNet50_Weights`` name
            (``"IMAGENET1K_V1"``, ``"IMAGENET1K_V2"``, ``"DEFAULT"``).
        weights_path: Local state_dict in torchvision key names (instead of ``pretrained``).
    """
    return _build_resnet("resnet50", tvm.resnet50, tvm.ResNet50_Weights, pretrained, weights_path)


@register_backbone("resnet18")
def resnet18(pretrained: Pretrained = False, weights_path: str | Path | None = None) -> Backbone:
    """ResNet-18: levels of 128/256/512 channels at strides 8/16/32.

    Args:
        pretrained: False (random), True (``IMAGENET1K_V1``) or a ``ResNet18_Weights`` name.
        weights_path: Local state_dict in torchvision key names (instead of ``pretrained``).
    """
    return _build_resnet("resnet18", tvm.resnet18, tvm.ResNet18_Weights, pretrained, weights_path)
