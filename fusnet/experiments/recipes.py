"""Each profile's training recipe, written once, and the training regimes: ``smoke`` runs
every notebook in minutes on the synthetic set (CI), ``cpu`` the photos in ``../shared/data``
on 2 cores, ``paper`` the paper's recipe on a GPU (why: the README's fidelity notes).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fusnet.errors import ConfigError

SMOKE_OVERRIDES: dict[str, Any] = {
    "data.synthetic_classes": 6, "data.batch_size": 16, "data.eval_batch_size": 64,
    "optim.lr": 0.01, "model.block_mid": 16, "model.level_dim": 32, "model.hash_hidden": 16,
    "model.transformer_dim": 16, "model.transformer_heads": 2,
}
CPU_OVERRIDES: dict[str, Any] = {
    "data.batch_size": 32, "data.eval_batch_size": 64, "optim.lr": 0.05, "model.block_mid": 32,
    "model.level_dim": 128, "model.transformer_dim": 64, "model.lower_level_gate": True,
}
CPU_EPOCHS = 12

RECIPE_NAMES: tuple[str, ...] = ("data_root", "backbone", "pretrained", "epochs", "image_size",
                                 "mode", "device", "seed", "threads")
"""A recipe's ``ExperimentConfig`` fields; its ``overrides`` are RunConfig fields, dotted."""

RECIPES: dict[str, dict[str, Any]] = {
    "smoke": {"data_root": None, "backbone": "efficientnet_lite0", "pretrained": "default",
              "epochs": 3, "image_size": 64, "mode": "frozen", "device": "cpu", "seed": 0,
              "threads": 1, "overrides": SMOKE_OVERRIDES},
    "cpu": {"data_root": {"cub200": "../shared/data/cub100",
                          "flowers17": "../shared/data/flowers17",
                          "nabirds": "../shared/data/nabirds33"},
            "backbone": "efficientnet_lite0", "pretrained": "default", "epochs": CPU_EPOCHS,
            "image_size": 224, "mode": "frozen", "device": "cpu", "seed": 0, "threads": None,
            "overrides": CPU_OVERRIDES},
    "paper": {"data_root": None,  # required: fusnet reproduce --profile paper --data-root DIR
              "backbone": "resnet50", "pretrained": "default", "epochs": 300, "image_size": 336,
              "mode": "full", "device": "auto", "seed": 0, "threads": None,
              "overrides": {"data.num_workers": 8}},
}
"""profile -> ``ExperimentConfig``'s keyword arguments but the notebook, grid, output root."""

FINE_TUNE: dict[str, Any] = {"optim.backbone_lr_scale": 0.2, "optim.schedule": "cosine",
                             "optim.warmup_epochs": 1}  # every fine-tuning regime's
REGIMES: dict[str, dict[str, Any]] = {
    "frozen": {"mode": "frozen"},
    "top2": {"mode": "top", "top_stages": 2, **FINE_TUNE},
    "top2-views4": {"mode": "top", "top_stages": 2, **FINE_TUNE, "data.cached_views": 4,
                    "data.augment": "mild"},
    "top1-views4": {"mode": "top", "top_stages": 1, **FINE_TUNE, "data.cached_views": 4,
                    "data.augment": "mild"},
    "full-mild": {"mode": "full", **FINE_TUNE, "data.augment": "mild"},
    "full-paper": {"mode": "full", **FINE_TUNE, "data.augment": "paper"},
}  # by name: how much of the backbone trains, as RunConfig changes


def recipe(profile: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of ``RECIPES[profile]`` with ``changes``: a :data:`RECIPE_NAMES` key replaces
    the recipe's value, any other is a dotted RunConfig field set over its ``overrides``."""
    if profile not in RECIPES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(RECIPES)}")
    result = copy.deepcopy(RECIPES[profile])
    for key, value in (changes or {}).items():
        if key == "overrides":
            raise ConfigError("changes: give RunConfig fields by name ({'optim.lr': 0.01}), "
                              "not under 'overrides'")
        target = result if key in RECIPE_NAMES else result["overrides"]
        target[key] = copy.deepcopy(value)
    return result
