"""Checkpoints: the one file layout of a run's ``last.pt``, ``best.pt`` and ``model.pt``,
loading it safely, and rebuilding a trained model from it.

A checkpoint is a dict with ``format`` (:data:`CHECKPOINT_FORMAT`), the run's ``config``,
``num_classes`` and the ``model`` state, written by :func:`save_checkpoint`; ``best.pt`` adds
the method's state (``criterion``), ``model.pt`` the ``class_names``, and a training
checkpoint (``last.pt``) the optimiser, scheduler and scaler states and the run's
:class:`Progress`, all it needs to resume exactly. A checkpoint only resumes the config it
was written for: fields in :data:`RESUMABLE_DIFFERENCES` may change between an interrupted
run and its resumption, no others.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusnet import runtime
from fusnet.config import RunConfig, run_fields
from fusnet.errors import CheckpointError
from fusnet.methods import method_class
from fusnet.models.multifusnet import build_model_backbone

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 1
# Config fields that may differ between an interrupted run and its resumption (their
# metadata in fusnet.config).
RESUMABLE_DIFFERENCES = run_fields(resumable=True)


def _config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    diffs = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs.extend(_config_differences(a, b, f"{name}."))
        elif a != b and name not in RESUMABLE_DIFFERENCES:
            diffs.append(f"{name}: checkpoint {a!r} vs now {b!r}")
    return diffs


def _with_defaults(saved: dict[str, Any]) -> dict[str, Any]:
    """A saved config with the fields added since it was written set to their defaults."""
    try:
        return RunConfig.from_dict(saved).to_dict()
    except Exception:  # not a valid config now: compare it as it is
        return saved


def load_checkpoint(path: Path, config: RunConfig | None = None) -> dict[str, Any]:
    """Load a training checkpoint safely; with ``config``, insist it was made for it."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        size = path.stat().st_size
        raise CheckpointError(
            f"checkpoint {path} cannot be read ({'an empty file' if size == 0 else type(exc).__name__ if 'weights_only' in str(exc) else exc}): it is "
            "damaged or cut short; restore it, or delete it and train again (a run folder's "
            "checkpoints/last.pt: delete it and rerun without --resume)"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fusnet checkpoint (format {CHECKPOINT_FORMAT})")
    if config is not None:
        diffs = _config_differences(_with_defaults(payload["config"]), config.to_dict())
        if diffs:
            raise CheckpointError(
                f"checkpoint {path} was written for another config:\n  "
                + "\n  ".join(diffs)
                + "\nuse the same config, or a fresh --output-dir"
            )
    return payload


def save_checkpoint(
    path: Path, config: RunConfig, num_classes: int, model: nn.Module, **extra: Any
) -> None:
    """Write the checkpoint layout (module docstring) atomically, on the main process only.

    Args:
        extra: the entries beyond the format, config, class count and model state.
    """
    if runtime.is_main_process():
        runtime.atomic_torch_save(
            {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), "num_classes": num_classes,
             "model": model.state_dict(), **extra},
            path,
        )


@dataclass
class Progress:
    """How far a run is: what ``last.pt`` keeps beside the states, and the manifest reports.

    Attributes:
        epoch: epochs done.
        history: one record per epoch done.
        best: the selected epoch so far and its validation mAP.
        images_seen: training images seen over all epochs (all processes).
        train_seconds: time in training epochs, summed over resumes.
        wall_seconds: wall time of the processes before this one (up to their last
            checkpoint); absent from checkpoints written before issue 14.
        caching_seconds: of that wall time, the seconds those processes spent making
            backbone-feature caches; absent from checkpoints written before 5 Dec 2026.
        validation_seconds: time spent computing validation mAP, summed over resumes
            (absent from checkpoints written before 7 Dec 2026).
        resumes: how many times the run was resumed.
    """

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": None, "val_map": -1.0})
    images_seen: int = 0
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    caching_seconds: float = 0.0
    validation_seconds: float = 0.0
    resumes: int = 0

    def checkpoint_entries(self, wall_seconds: float, caching_seconds: float) -> dict[str, Any]:
        """The entries of a training checkpoint, with the wall and caching time up to now."""
        return {
            "epoch": self.epoch,
            "history": self.history,
            "best": {"epoch": self.best["epoch"], "val_map": self.best["val_map"]},
            "images_seen": self.images_seen,
            "train_seconds": self.train_seconds,
            "wall_seconds": wall_seconds,
            "caching_seconds": caching_seconds,
            "validation_seconds": self.validation_seconds,
            "resumes": self.resumes,
        }

    @classmethod
    def resumed_from(cls, payload: dict[str, Any]) -> Progress:
        """The progress a training checkpoint records, counting this resumption."""
        return cls(
            epoch=int(payload["epoch"]),
            history=list(payload["history"]),
            best=dict(payload["best"]),
            images_seen=int(payload["images_seen"]),
            train_seconds=float(payload["train_seconds"]),
            wall_seconds=float(payload.get("wall_seconds", 0.0)),  # absent before issue 14
            caching_seconds=float(payload.get("caching_seconds", 0.0)),  # before 5 Dec 2026
            validation_seconds=float(payload.get("validation_seconds", 0.0)),  # before 7 Dec
            resumes=int(payload.get("resumes", 0)) + 1,
        )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild a trained model (Multi-FusNet or a baseline) from ``model.pt`` or a checkpoint."""
    path = Path(path)
    payload = load_checkpoint(path)
    config = RunConfig.from_dict(payload["config"])
    bare = dataclasses.replace(  # the weights come from the checkpoint
        config, model=dataclasses.replace(config.model, pretrained="none", weights_path=None))
    model = method_class(config.method).build_model(
        bare, payload["num_classes"], build_model_backbone(bare.model))
    state = payload["model"] if "model" in payload else payload["state"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit its config: {exc}") from exc
    # the bare backbone's build logged "weights: random": say where the weights came from
    logger.info("loaded the trained %s weights (%d bits) from %s", config.method,
                config.model.bits, path)
    model.config = config.model
    return model.to(device), config
