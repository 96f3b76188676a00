"""Checkpoints: the one file layout of a run's ``last.pt``, ``best.pt`` and ``model.pt``,
loading it safely, and rebuilding a trained model from it.

A checkpoint is a dict with ``format`` (:data:`CHECKPOINT_FORMAT`), the run's ``config``,
``num_classes`` and the ``model`` state; a training checkpoint adds the optimiser, scheduler,
scaler, loss weights and history needed to resume exactly. A checkpoint only resumes the
config it was written for: fields in :data:`RESUMABLE_DIFFERENCES` may change between an
interrupted run and its resumption, no others.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fusnet.baselines import MULTIFUSNET, build_method
from fusnet.config import RunConfig, run_fields
from fusnet.errors import CheckpointError
from fusnet.models.multifusnet import MultiFusNet, build_model_backbone

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
            f"checkpoint {path} cannot be read ({'an empty file' if size == 0 else exc}): it is "
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


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, RunConfig]:
    """Rebuild a trained model (Multi-FusNet or a baseline) from ``model.pt`` or a checkpoint."""
    path = Path(path)
    payload = load_checkpoint(path)
    config = RunConfig.from_dict(payload["config"])
    model_config = dataclasses.replace(config.model, pretrained="none", weights_path=None)
    if config.method == MULTIFUSNET:
        model = MultiFusNet(model_config, payload["num_classes"])
    else:
        model = build_method(config.method).build_model(
            dataclasses.replace(config, model=model_config), payload["num_classes"],
            build_model_backbone(model_config),
        )
    state = payload["model"] if "model" in payload else payload["state"]
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise CheckpointError(f"weights in {path} do not fit its config: {exc}") from exc
    model.config = config.model
    return model.to(device), config
