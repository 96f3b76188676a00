"""Where a run's batches come from: its datasets, splits, and cached backbone maps.

:func:`build_run_data` reads the dataset's training and test splits, carves the validation
split out of the training split, and, by mode, either keeps the datasets (``full``: live
images through the training transform) or computes and caches the frozen backbone's maps
(``frozen``; ``top``: the maps below the trained stages, plus ``data.cached_views``
augmented views of every training image). :class:`EpochShuffleSampler` orders each epoch's
images from (seed, epoch) alone, so a resumed run sees the same batches, and
:func:`epoch_batches` yields them as :class:`Batch` es from whichever source the mode uses.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from fusnet import runtime
from fusnet.config import RunConfig
from fusnet.data import build_dataset
from fusnet.data.tensor_io import build_image_transform, set_image_backend
from fusnet.methods.base import Batch
from fusnet.models.zoom import SaliencyZoom
from fusnet.train.features import CachedLevels, cache_key, compute_levels, load_or_compute_levels
from fusnet.train.top_stage import VIEW_SEED, epoch_view_rows, lower_levels, stack_views

CACHE_SEED = 0
"""Seed of the random draws (the zoom's peak modes) made while caching a split's maps."""
VIEW_LOADER = (64, 0)
"""(batch, workers) that cache the augmented views: fixed, whatever the run's settings."""


class EpochShuffleSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded over processes (one code path for 1..N ranks).

    The order depends only on (seed, epoch), so a resumed run sees the same batches.
    ``subset`` (positions, e.g. ADSH's sampled set) restricts the epoch to those items.
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch = 0
        self.subset: Tensor | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        size = self._pool_size()
        order = torch.randperm(size, generator=generator)  # (N,)
        if self.subset is not None:
            order = self.subset[order]  # (N,) positions of the subset
        per_rank = math.ceil(size / self.world)
        order = torch.cat([order, order[: per_rank * self.world - size]])  # pad evenly
        return order[self.rank :: self.world]

    def _pool_size(self) -> int:
        return self.size if self.subset is None else len(self.subset)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return math.ceil(self._pool_size() / self.world)


@dataclass
class RunData:
    """Datasets (full mode) or cached levels (frozen mode) for one run."""

    num_classes: int
    class_names: list[str]
    fit_index: Tensor  # indices into the training split used for fitting
    val_index: Tensor  # indices into the training split held out for selection
    train_labels: Tensor
    fit_set: Dataset | None = None  # full mode, train transform, fit subset
    database_set: Dataset | None = None  # full mode, test transform, training split
    query_set: Dataset | None = None  # full mode, test transform, test split
    database_cache: CachedLevels | None = None  # frozen and top modes
    query_cache: CachedLevels | None = None
    view_cache: CachedLevels | None = None  # top mode: K augmented views, row v * N + i
    views: int = 0
    description: dict[str, Any] = field(default_factory=dict)
    # frozen and top modes: each feature cache this process read or made, with its seconds
    # here and what making it cost (``made``: recorded in the cache file, so a run that
    # reads a cache another run made still shows that cost)
    feature_caches: list[dict[str, Any]] = field(default_factory=list)
    # frozen and top modes: the arithmetic of the caching forward, {"requested", "used"[, "note"]}
    cache_precision: dict[str, str] | None = None

    @property
    def caching_seconds_made(self) -> float:
        """Seconds this process spent making the feature caches it did not find."""
        return sum(c["seconds"] for c in self.feature_caches if c["computed"])


def dataset_kwargs(config: RunConfig) -> dict[str, Any]:
    """Keyword arguments of ``build_dataset`` that a run config implies (split, seed, ...)."""
    data = config.data
    kwargs: dict[str, Any] = {
        "val_fraction": data.val_fraction,
        "seed": config.seed,
        "skip_bad_images": data.skip_bad_images,
    }
    if data.dataset == "synthetic":
        kwargs.update(num_classes=data.synthetic_classes, image_size=max(64, data.image_size))
    return kwargs


def build_run_data(
    config: RunConfig, backbone: nn.Module, device: torch.device, zoom: SaliencyZoom | None
) -> RunData:
    """The datasets or caches of one run (module docstring); caches are computed on ``device``."""
    data = config.data
    mean, std = backbone.mean, backbone.std
    backend = data.image_backend
    test_tf = build_image_transform(data.test_image_size, train=False, mean=mean, std=std,
                                    image_backend=backend)
    train_tf = build_image_transform(data.image_size, train=True, mean=mean, std=std,
                                     augment=data.augment, image_backend=backend)
    kwargs = dataset_kwargs(config)

    def dataset(split: str, transform: Any) -> Dataset:
        return set_image_backend(
            build_dataset(data.dataset, data.root, split, transform=transform, **kwargs),
            backend, transform)

    database = dataset("train", test_tf)
    queries = dataset("test", test_tf)
    if config.select == "val":
        from fusnet.data import split_train_val

        fit_np, val_np = split_train_val(database.labels, data.val_fraction, config.seed)
        fit_index, val_index = torch.as_tensor(fit_np), torch.as_tensor(val_np)
    else:
        fit_index, val_index = torch.arange(len(database)), torch.empty(0, dtype=torch.int64)
    result = RunData(
        num_classes=database.num_classes,
        class_names=list(database.class_names),
        fit_index=fit_index,
        val_index=val_index,
        train_labels=torch.as_tensor(database.labels),
        description={
            "dataset": data.dataset,
            "root": str(data.root),
            "num_classes": database.num_classes,
            "train_images": len(database),
            "test_images": len(queries),
            "fit_images": len(fit_index),
            "val_images": len(val_index),
            "train_fingerprint": runtime.fingerprint(
                [(Path(p).name, int(y)) for p, y in getattr(database, "samples", [])]
            ),
            "test_fingerprint": runtime.fingerprint(
                [(Path(p).name, int(y)) for p, y in getattr(queries, "samples", [])]
            ),
        },
    )
    dropped = {split: [str(p) for p, _ in getattr(d, "dropped", [])]
               for split, d in (("train", database), ("test", queries))}
    if any(dropped.values()):  # skip_bad_images: counted in the manifest (issue 14)
        result.description["dropped_images"] = {
            split: {"count": len(paths), "paths": paths[:20]} for split, paths in dropped.items()
        }
    if config.mode == "full":
        fit_source = dataset("train", train_tf)
        result.fit_set = torch.utils.data.Subset(fit_source, fit_index.tolist())
        result.database_set, result.query_set = database, queries
        return result
    # Frozen and top modes: backbone maps of both splits, computed once and cached.
    cache_dir = Path(config.cache_dir or Path(config.output_dir) / "cache")
    layout_name = data.cache_layout
    backbone.to(device)  # the maps are computed on the run's device
    result.cache_precision = runtime.resolved_precision(device, data.cache_precision,
                                                        "data.cache_precision")
    precision = result.cache_precision["used"]
    identity = {
        "backbone": config.model.backbone,
        "weights": backbone.weights_tag,
        "image_size": data.test_image_size,  # the views' own: data.image_size (below)
        # The resolved folder, so "../data" and "/abs/data" share one cache.
        "dataset": {  # what the maps depend on: not the fit / validation split
            **{k: v for k, v in result.description.items()
               if k not in ("fit_images", "val_images")},
            "root": _resolved_folder(getattr(database, "data_dir", None) or data.root),
        },
        "zoom": dataclasses.asdict(zoom.config) if zoom is not None else None,
        "rng": CACHE_SEED,
        **({"image_backend": backend} if backend != "pil" else {}),
        # A new layout's maps agree to rounding only; the default's keys stay as they were.
        **({"layout": layout_name} if layout_name != "contiguous" else {}),
        **({"precision": precision} if precision != "float32" else {}),
    }

    def cached(split: str, dataset: Dataset, named: dict | None = None,
               loader: tuple[int, int] | None = None, seed: int = CACHE_SEED,
               **options: Any) -> CachedLevels:
        # ``named``: what else the maps depend on (in the key); ``loader``: (batch, workers)
        key = cache_key({**identity, "split": split, **(named or {})})
        name = f"{data.dataset}-{config.model.backbone}-{split}-{key}.pt"
        batch, workers = loader or (data.eval_batch_size, data.num_workers)
        made, start = [], time.perf_counter()

        def compute() -> CachedLevels:
            made.append(name)
            # The zoom's and the transforms' random draws from a generator of their own:
            # the maps depend on their key alone, not on which run made them, and the
            # run's own random stream is the same whether the cache existed or not.
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(seed)
                return compute_levels(backbone, dataset, device, batch, workers, zoom,
                                      description=f"backbone features ({split})",
                                      memory_format=runtime.torch_memory_format(layout_name),
                                      precision=precision, **options)

        levels = load_or_compute_levels(cache_dir / name, key, compute)
        result.feature_caches.append({"file": name, "computed": bool(made),
                                      "seconds": round(time.perf_counter() - start, 2),
                                      "made": levels.made})  # the cache's own cost
        return levels

    result.database_cache = cached("train", database)
    result.query_cache = cached("test", queries)
    if config.mode == "top":
        frozen = 3 - config.top_stages
        result.database_cache = lower_levels(result.database_cache, frozen)
        result.query_cache = lower_levels(result.query_cache, frozen)
        result.views = data.cached_views
        if data.cached_views:
            augmented = dataset("train", train_tf)
            views = []
            for view in range(data.cached_views):
                # The transforms' and the zoom's random draws follow the global generator
                # batch by batch: one process, a fixed batch, so that the views depend on
                # nothing a resumed run may change (workers, encoding batch), only on the
                # device type (its generator draws the zoom's modes).
                views.append(cached(
                    f"train-view{view}", augmented,
                    {"augment": data.augment, "view_seed": VIEW_SEED, "levels": frozen,
                     "loader": VIEW_LOADER, "device": device.type,
                     "image_size": data.image_size},
                    loader=VIEW_LOADER, seed=VIEW_SEED + view, keep_levels=frozen,
                ))
            result.view_cache = stack_views(views)
    return result


def _resolved_folder(folder: str | Path | None) -> str | None:
    return None if folder is None else str(Path(folder).resolve())


def epoch_batches(
    config: RunConfig, data: RunData, sampler: EpochShuffleSampler, epoch: int,
    device: torch.device, zoom: bool,
) -> Iterator[Batch]:
    """The batches of epoch ``epoch`` (0-based), in the sampler's order.

    Modes "frozen" and "top" read the cached maps (in "top" with cached views, one view per
    image drawn from seed and epoch); mode "full" loads the fit images through the training
    transform.

    Args:
        zoom: whether to read the zoomed view's cached maps (the method zooms).
    """
    sampler.set_epoch(epoch)
    batch_size = config.data.batch_size
    positions = sampler.indices()  # (N_rank,) positions in the fit set, in batch order
    if config.mode != "full":
        cache = data.database_cache
        order = data.fit_index[positions]  # (N_rank,) training-split rows
        if data.views:  # top mode: one cached augmented view per image this epoch
            cache = data.view_cache
            order = epoch_view_rows(order, len(data.train_labels), data.views, config.seed, epoch)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if len(index) < 2:  # BatchNorm needs two samples
                continue
            zoom_inputs = cache.batch(index, device, zoom=True) if zoom else None
            yield Batch(cache.batch(index, device), zoom_inputs, cache.labels[index].to(device),
                        positions[start : start + batch_size].to(device))
        return
    loader = DataLoader(
        data.fit_set,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        generator=torch.Generator().manual_seed(config.seed * 7919 + epoch),
        drop_last=len(sampler) > batch_size,
    )
    for start, (images, labels) in zip(
        range(0, len(positions), batch_size), loader, strict=False
    ):  # the loader walks the sampler's order, so batch i holds positions[i*B : (i+1)*B]
        yield Batch(images.to(device), None, labels.to(device),
                    positions[start : start + batch_size].to(device))
