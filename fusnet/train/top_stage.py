"""Top-stage fine-tuning (``mode="top"``): between the frozen backbone and full training.

The backbone splits into three stages, ``f1 = s1(x)``, ``f2 = s2(f1)``, ``f3 = s3(f2)``
(:meth:`fusnet.models.backbones.Backbone.stages`). With ``top_stages = t`` the lower
``3 - t`` stages stay frozen and their maps are computed once and cached, exactly as in
the frozen mode (the same cache files); the top ``t`` stages and the head train on them.
With t = 2 on EfficientNet-Lite0 only the 40-channel stride-8 map is cached and levels 2
and 3 adapt to the task, as they do in the paper's end-to-end training.

Augmentation comes from ``data.cached_views`` views of every training image drawn with the
training transform, whose lower maps (and zoomed view's) are cached once per dataset;
each epoch draws one view per image. The zoomed view's crop is decided at caching time by
the pretrained backbone's top level (as in the frozen mode), not by the stage being
trained: a deviation from the paper, stated in every result of this mode.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fusnet.errors import ConfigError
from fusnet.train.features import CachedLevels

VIEW_SEED = 20_241_130
"""Seed of the cached augmented views (the same views for every run seed, so that runs
share one cache; the run seed still picks which view each image gets per epoch)."""


class TopStageNet(nn.Module):
    """The trainable part of a ``mode="top"`` model: the backbone's top stages and the head.

    Args:
        model: Multi-FusNet or a baseline's ``HashingNet`` (``.backbone`` with ``stages()``
            and ``.head`` over the level list); its modules are shared, not copied.
        top_stages: stages to run on the cached maps (1 or 2).
    """

    def __init__(self, model: nn.Module, top_stages: int) -> None:
        super().__init__()
        self.frozen_levels = 3 - top_stages
        self.stages = nn.ModuleList(model.backbone.stages()[self.frozen_levels :])
        # channels_last: 1.5x faster training steps of EfficientNet-Lite0's top stages on
        # 2 CPU cores (depthwise convolutions), the same values up to rounding.
        self.stages.to(memory_format=torch.channels_last)
        self.head = model.head

    def forward(self, frozen: list[Tensor], **kwargs: object) -> object:
        """Head outputs from the cached lower maps ``frozen`` (each (B, C_i, H_i, W_i))."""
        levels = list(frozen)
        x = frozen[-1].contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
        for stage in self.stages:
            x = stage(x)  # (B, C_next, H / 2, W / 2)
            levels.append(x)
        return self.head(levels, **kwargs)


def is_depthwise(module: nn.Module) -> bool:
    """A convolution with one filter per input channel (``groups`` = channels > 1)."""
    return (isinstance(module, nn.Conv2d) and module.groups > 1
            and module.groups == module.in_channels == module.out_channels)


def freeze_depthwise(stages: nn.Module) -> int:
    """Stop training the depthwise convolutions' weights in ``stages`` (``freeze_depthwise``):
    their BatchNorm and every other layer still train. Returns how many were frozen;
    ConfigError where there are none (a backbone without depthwise convolutions)."""
    frozen = [m for m in stages.modules() if is_depthwise(m)]
    if not frozen:
        raise ConfigError("freeze_depthwise (--freeze-depthwise): the trained stages hold no "
                          "depthwise convolution (a backbone without them, e.g. resnet50); "
                          "drop the option")
    for conv in frozen:
        conv.requires_grad_(False)
    return len(frozen)


def lower_levels(cached: CachedLevels, count: int) -> CachedLevels:
    """The first ``count`` levels of a cache (the frozen ones), sharing its tensors."""
    return CachedLevels(
        levels=cached.levels[:count],
        zoom_levels=None if cached.zoom_levels is None else cached.zoom_levels[:count],
        labels=cached.labels,
    )


def stack_views(views: list[CachedLevels]) -> CachedLevels:
    """K caches of the same N images as one of K * N rows (row ``v * N + i``)."""
    def cat(per_view: list[list[Tensor]]) -> list[Tensor]:
        return [torch.cat(level) for level in zip(*per_view, strict=True)]

    zoom = None if views[0].zoom_levels is None else cat([v.zoom_levels for v in views])
    return CachedLevels(
        levels=cat([v.levels for v in views]),
        zoom_levels=zoom,
        labels=torch.cat([v.labels for v in views]),
    )


def epoch_view_rows(rows: Tensor, num_images: int, views: int, seed: int, epoch: int) -> Tensor:
    """Rows of a :func:`stack_views` cache for training-split rows ``rows`` in one epoch:
    one view per image, drawn from (seed, epoch) alone so that a resumed run sees the same."""
    generator = torch.Generator().manual_seed(seed * 1_000_033 + epoch)
    view = torch.randint(views, (num_images,), generator=generator)  # (N,) a view per image
    return view[rows] * num_images + rows  # (R,)
