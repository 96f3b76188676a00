"""Frozen-backbone fast mode: backbone level maps computed once and cached.

With the backbone fixed, its level maps for an image (test transform) never
change, and neither does the zoomed view, whose saliency comes from the same
frozen top level. Both are computed once per split, kept as float16, and saved
under a cache key that names everything they depend on. Training then runs
only the head, which makes the ablations feasible on a CPU.

What this mode gives up, stated in every result it produces: no image
augmentation (random crop, rotation, flip, jitter) and no backbone fine-tuning.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from fusnet.errors import CheckpointError
from fusnet.models.zoom import SaliencyZoom, saliency_from_features
from fusnet.runtime import atomic_torch_save, autocast_context

logger = logging.getLogger(__name__)


@dataclass
class CachedLevels:
    """Level maps of one split: ``levels[i]`` is (N, C_i, H_i, W_i) float16.

    ``zoom_levels`` holds the same for the zoomed view (None when zoom is off); ``made``
    is what making the cache cost, as its file records it (seconds, torch threads, when;
    None for caches written before it was recorded).
    """

    levels: list[Tensor]
    zoom_levels: list[Tensor] | None
    labels: Tensor  # (N,) int64
    made: dict | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(
        self, index: Tensor, device: torch.device, zoom: bool = False
    ) -> list[Tensor]:
        source = self.zoom_levels if zoom else self.levels
        if source is None:
            raise ValueError("zoom levels were not cached")
        return [level[index].to(device=device, dtype=torch.float32) for level in source]


def cache_key(parts: dict) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


@torch.no_grad()
def compute_levels(
    backbone: nn.Module,
    dataset: Dataset,
    device: torch.device,
    batch_size: int,
    num_workers: int,
    zoom: SaliencyZoom | None,
    description: str = "caching features",
    keep_levels: int | None = None,
    generator: torch.Generator | None = None,
    memory_format: torch.memory_format = torch.contiguous_format,
    precision: str = "float32",
) -> CachedLevels:
    """Run the frozen backbone over a dataset (and its zoomed view).

    ``keep_levels`` keeps only the first that many levels (the zoom's saliency still comes
    from the top one); ``generator`` seeds the loader's workers (random transforms);
    ``memory_format`` is the layout the backbone computes in (``torch.channels_last``: about
    twice as fast on a CPU); ``precision`` its arithmetic ("bfloat16": the backbone's
    forwards under bf16 autocast, the zoom in float32). The cached maps are stored float16
    and contiguous either way, and the backbone is given back contiguous.
    """
    backbone.eval()
    backbone.to(memory_format=memory_format)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        generator=generator)
    keep = slice(0, keep_levels)
    levels: list[list[Tensor]] = []
    zoom_levels: list[list[Tensor]] = []
    labels: list[Tensor] = []
    try:
        for images, targets in tqdm(loader, desc=description, leave=False, disable=None):
            images = images.to(device).contiguous(memory_format=memory_format)  # (B, 3, H, W)
            with autocast_context(device, False, precision):
                maps = backbone(images)  # L x (B, C_i, H_i, W_i)
            levels.append([_stored(m) for m in maps[keep]])
            if zoom is not None:
                saliency = saliency_from_features(maps[-1].float())
                zoomed = zoom(images, saliency)  # (B, 3, H, W)
                zoomed = zoomed.contiguous(memory_format=memory_format)
                with autocast_context(device, False, precision):
                    zoom_maps = backbone(zoomed) if keep_levels is None else _lower_maps(
                        backbone, zoomed, keep_levels)
                zoom_levels.append([_stored(m) for m in zoom_maps[keep]])
            labels.append(torch.as_tensor(targets, dtype=torch.int64))
    finally:
        backbone.to(memory_format=torch.contiguous_format)
    return CachedLevels(
        levels=[torch.cat(per_level) for per_level in zip(*levels, strict=True)],
        zoom_levels=(
            [torch.cat(per_level) for per_level in zip(*zoom_levels, strict=True)]
            if zoom is not None
            else None
        ),
        labels=torch.cat(labels),
    )


def _stored(level: Tensor) -> Tensor:
    """A level map as the cache keeps it: float16, on the CPU, contiguous."""
    return level.to("cpu", torch.float16).contiguous()


def _lower_maps(backbone: nn.Module, images: Tensor, count: int) -> list[Tensor]:
    """The first ``count`` level maps, running only the stages that produce them."""
    maps, x = [], images  # (B, 3, H, W)
    for stage in backbone.stages()[:count]:
        x = stage(x)  # (B, C_i, H_i, W_i)
        maps.append(x)
    return maps


def load_or_compute_levels(
    cache_file: Path,
    key: str,
    compute: Callable[[], CachedLevels],
) -> CachedLevels:
    """Load a cache written for ``key``; otherwise compute and save it."""
    if cache_file.is_file():
        try:
            payload = torch.load(cache_file, map_location="cpu", weights_only=True)
        except Exception as exc:  # a truncated or foreign file: recompute, never trust it
            raise CheckpointError(
                f"feature cache {cache_file} cannot be read ({exc}); delete it and rerun"
            ) from exc
        if payload.get("key") == key:
            logger.info("loaded cached backbone features from %s", cache_file)
            return CachedLevels(payload["levels"], payload["zoom_levels"], payload["labels"],
                                payload.get("made"))
        logger.warning("feature cache %s was made for another setup; recomputing", cache_file)
    start = time.perf_counter()
    cached = compute()
    cached.made = {"seconds": round(time.perf_counter() - start, 2),
                   "threads": torch.get_num_threads(),
                   "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    atomic_torch_save(
        {
            "key": key,
            "levels": cached.levels,
            "zoom_levels": cached.zoom_levels,
            "labels": cached.labels,
            "made": cached.made,
        },
        cache_file,
    )
    logger.info("saved backbone features to %s", cache_file)
    return cached
