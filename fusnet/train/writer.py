"""Writing a finished run: ``codes.npz``, ``model.pt``, ``manifest.json``, ``metrics.json``.

``metrics.json`` is written last: its presence is what marks a run finished
(``fusnet.experiments.runs.is_finished``). Only the main process writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusnet import runtime
from fusnet.config import RunConfig
from fusnet.eval.encoding import save_codes
from fusnet.methods import HashingMethod
from fusnet.train.batches import RunData
from fusnet.train.checkpoints import Progress, save_checkpoint
from fusnet.train.evaluation import TestCodes

__all__ = ["mode_note", "run_manifest", "run_metrics", "write_run"]


def mode_note(config: RunConfig) -> str:
    """What a mode trains and gives up, for ``metrics.json``."""
    if config.mode == "full":
        return "full training"
    if config.mode == "frozen":
        return ("frozen backbone: cached test-transform features, no augmentation, "
                "no backbone fine-tuning")
    views = config.data.cached_views
    return (f"top-stage fine-tuning: the backbone's last {config.top_stages} stage(s) and the "
            f"head trained on cached maps of the frozen stages below; "
            + (f"{views} cached '{config.data.augment}' augmented views per image, one drawn "
               "per epoch" if views else "test-transform maps, no augmentation")
            + ("; their depthwise convolutions kept at the pretrained weights"
               if config.freeze_depthwise else "")
            + "; zoom crops decided by the pretrained backbone at caching time")


def run_metrics(config: RunConfig, method: HashingMethod, data: RunData, selected: dict[str, Any],
                test: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
    """The content of ``metrics.json``: test mAP, the selection rule, the history."""
    metrics = {
        "method": config.method,
        "database": method.database_definition(len(data.val_index)),
        "bits": config.model.bits,
        "mode": config.mode,
        "mode_note": mode_note(config),
        "selection": selected,
        "test": test,
        "map_index_ties": test["map"],
        "map_tie_aware": test["map_tie_aware"],
        "proxy_codes": method.proxy_diagnostics,
        "history": history,
    }
    details = method.metrics_details()
    if details is not None:
        metrics["method_details"] = details
    return metrics


def run_manifest(config: RunConfig, data: RunData, weights_tag: Any, device: Any, world: int,
                 amp: bool, precision: dict[str, str], code: Any, progress: Progress,
                 wall_seconds: float,
                 wall_this_process: float, caching_seconds: float,
                 test_seconds: float) -> dict[str, Any]:
    """The content of ``manifest.json``: what produced the run (STYLE.md) and what it cost.

    ``wall_seconds`` is the whole run over its processes (caching, training, validation and
    the test evaluation); of it, ``caching_seconds`` made feature caches, ``train_seconds``
    trained, and ``eval_seconds`` (``validation_seconds`` + ``test_seconds``) evaluated.
    """
    return {
        "code": code,
        "method": config.method,
        "config": config.to_dict(),
        "data": data.description,
        "weights": weights_tag,
        "seed": config.seed,
        "device": runtime.device_description(device),
        "world_size": world,
        "amp": amp,
        "precision": precision,  # of the training steps; {"requested", "used"[, "note"]}
        "mode": config.mode,
        "wall_seconds": round(wall_seconds, 2),  # summed over resumes
        "wall_seconds_this_process": round(wall_this_process, 2),
        "resumes": progress.resumes,
        "train_seconds": round(progress.train_seconds, 2),
        "validation_seconds": round(progress.validation_seconds, 2),  # summed over resumes
        "test_seconds": round(test_seconds, 2),
        "eval_seconds": round(progress.validation_seconds + test_seconds, 2),
        "threads": torch.get_num_threads(),
        "train_images_per_second": round(
            progress.images_seen / max(progress.train_seconds, 1e-9), 2),
        # The backbone feature caches (frozen and top modes) this process read or made; the
        # seconds of the ones it made are part of wall_seconds, so a run that found its
        # caches made by another shows the one-off cost only in that run's manifest.
        "feature_caches": data.feature_caches,
        **({"cache_precision": data.cache_precision} if data.cache_precision else {}),
        "caching_seconds": round(caching_seconds, 2),  # summed over resumes
        "caching_seconds_this_process": round(data.caching_seconds_made, 2),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def write_run(output_dir: Path, config: RunConfig, data: RunData, model: nn.Module,
              codes: TestCodes, metrics: dict[str, Any], manifest: dict[str, Any]) -> None:
    """Write the run's files (module docstring), ``metrics.json`` last."""
    if not runtime.is_main_process():
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    save_codes(output_dir / "codes.npz", *codes)
    save_checkpoint(output_dir / "model.pt", config, data.num_classes, model,
                    class_names=data.class_names)
    runtime.write_json(output_dir / "manifest.json", manifest)
    runtime.write_json(output_dir / "metrics.json", metrics)
