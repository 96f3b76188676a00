"""Recipes: each profile's training recipe, written once, and the training regimes.

A profile is a purpose: a CI check, a CPU, the paper. ``RECIPES[profile]`` is how it
trains: data folders, backbone, epochs, image size, mode, device, seed, threads and
RunConfig overrides (head widths, batch size, learning rate); :func:`recipe` is a copy of
it with changes. Every notebook of the profile trains with it
(``ExperimentConfig.from_parameters``), and so do the scripts that train a profile's runs
outside the notebooks and ``fusnet train --profile`` (:func:`recipe_run_config`). What
each notebook runs under the profile (its grid and own settings) is
:mod:`fusnet.experiments.profiles`. :data:`REGIMES` are named changes to a recipe: how
much of the backbone trains, and how.

=========  =======================================================================
profile    what
=========  =======================================================================
``smoke``  the synthetic set (6 classes, 64 px), EfficientNet-Lite0 (bundled
           ImageNet weights), frozen backbone, tiny head widths, 3 epochs, 1 thread:
           every notebook in a couple of minutes on a CPU, the same numbers on every
           run (CI and ``pytest --nbval-lax``).
``cpu``    the real photos in ``../shared/data`` (the 100-class CUB subset through
           the ``cub200`` loader, and Oxford Flowers-17), EfficientNet-Lite0 at 224 px,
           frozen backbone, head widths 32/128/64 (the paper's 512/1024 level
           blocks are ~25 min an epoch on 2 CPU cores), the lower-level gate (ours),
           12 epochs; about 3 hours (notebook 11: about 14 more).
``paper``  the paper's recipe: ResNet50, 336 px, full training, 300 epochs, batch
           128, on a GPU; the paper's datasets under ``--data-root`` (one folder per
           dataset name, e.g. ``<root>/cub200``, ``<root>/flowers5``).
=========  =======================================================================
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fusnet.errors import ConfigError

if TYPE_CHECKING:
    from fusnet.config import RunConfig

SMOKE_OVERRIDES: dict[str, Any] = {
    "data.synthetic_classes": 6,
    "data.batch_size": 16,
    "data.eval_batch_size": 64,
    "optim.lr": 0.01,
    "model.block_mid": 16,
    "model.level_dim": 32,
    "model.hash_hidden": 16,
    "model.transformer_dim": 16,
    "model.transformer_heads": 2,
}
"""Tiny head widths (as ``tests/test_train.py``'s ``tiny_config``) and a frozen-mode lr."""

CPU_OVERRIDES: dict[str, Any] = {
    "data.batch_size": 32,
    "data.eval_batch_size": 64,
    "optim.lr": 0.05,
    "model.block_mid": 32,
    "model.level_dim": 128,
    "model.transformer_dim": 64,
    "model.lower_level_gate": True,
}
"""Narrow head widths for 2 CPU cores and a frozen-mode lr, first chosen for the standalone
CUB runs of ``results/cub100-cpu*/``; ``scripts/cub100_cpu.sh`` now trains the cpu
profile's own runs (:data:`RECIPES`). At the paper's 512/1024 level blocks an epoch over the
CUB subset took ~25 min on 2 cores; at 128/256 about 150 s; at these widths about 10 s.

The lower-level gate (``model.lower_level_gate``, ours; the paper's head has none) was
chosen on the CUB subset's validation split (notebooks 01 and 11): with the frozen backbone
the paper's head reached 37.2 / 55.0 / 59.2 / 62.5 validation mAP at 12 / 24 / 32 / 48 bits
(seed 0, the runs notebooks 01-10 used until 5 Dec 2026), the gated head 45.2 / 64.5 / 70.0 /
75.4 (mean of seeds 0-2). It acts on
the lower levels only, so the row-1 baseline and the other methods are the same runs with
or without it (``fusnet.experiments.config.without_idle_lower_level_switches``)."""

CPU_EPOCHS = 12
"""Epochs of the ``cpu`` profile. On the 2-core machine a full-model CUB-subset run
(3,000 training images, validation every epoch for Fig. 11) takes about 3 min once the
backbone features are cached (computed once, ~5 min for CUB). The profile trains about
14 CUB-sized full-head runs (the full model is shared by Tables 3 and 6 and Figs. 9-12)
plus small baseline and Flowers-17 runs. Measured on 27 Nov 2026: notebooks 01-08 took
90 min (feature caches included, other work running beside them), notebook 09 25 min
without SEMICON and ExchNet; their 12 runs took another hour, two at a time
(``scripts/baselines_parallel.py``), and would take longer one after another inside the
notebook."""

RECIPE_NAMES: tuple[str, ...] = ("data_root", "backbone", "pretrained", "epochs", "image_size",
                                 "mode", "device", "seed", "threads")
"""A recipe's named settings (``ExperimentConfig`` fields); its ``overrides`` hold the
other RunConfig fields it sets, dotted."""

RECIPES: dict[str, dict[str, Any]] = {
    "smoke": {
        "data_root": None,
        "backbone": "efficientnet_lite0",
        "pretrained": "default",
        "epochs": 3,
        "image_size": 64,
        "mode": "frozen",
        "device": "cpu",
        "seed": 0,
        "threads": 1,
        "overrides": SMOKE_OVERRIDES,
    },
    "cpu": {
        "data_root": {"cub200": "../shared/data/cub100", "flowers17": "../shared/data/flowers17"},
        "backbone": "efficientnet_lite0",
        "pretrained": "default",
        "epochs": CPU_EPOCHS,
        "image_size": 224,
        "mode": "frozen",
        "device": "cpu",
        "seed": 0,
        "threads": None,
        "overrides": CPU_OVERRIDES,
    },
    "paper": {
        "data_root": None,  # required: fusnet reproduce --profile paper --data-root DIR
        "backbone": "resnet50",
        "pretrained": "default",
        "epochs": 300,
        "image_size": 336,
        "mode": "full",
        "device": "auto",
        "seed": 0,
        "threads": None,
        "overrides": {"data.num_workers": 8},
    },
}
"""profile -> its training recipe (module docstring): ``ExperimentConfig``'s keyword
arguments besides the notebook, its grid and the output root. Every notebook of the
profile trains with it; a notebook's ``changes`` amend it (:func:`recipe`)."""

FINE_TUNE: dict[str, Any] = {"optim.backbone_lr_scale": 0.2, "optim.schedule": "cosine",
                             "optim.warmup_epochs": 1}
"""What every fine-tuning regime changes besides its mode: backbone stages at a fifth of the
head's rate, cosine schedule after one warm-up epoch (ours; ``results/regimes/``)."""
REGIMES: dict[str, dict[str, Any]] = {
    "frozen": {"mode": "frozen"},
    "top2": {"mode": "top", "top_stages": 2, **FINE_TUNE},
    "top2-views4": {"mode": "top", "top_stages": 2, **FINE_TUNE, "data.cached_views": 4,
                    "data.augment": "mild"},
    "top1-views4": {"mode": "top", "top_stages": 1, **FINE_TUNE, "data.cached_views": 4,
                    "data.augment": "mild"},
    "full-mild": {"mode": "full", **FINE_TUNE, "data.augment": "mild"},
    "full-paper": {"mode": "full", **FINE_TUNE, "data.augment": "paper"},
}
"""Training regimes by name (notebook 11, ``scripts/regime_runs.py``): RunConfig changes
on top of a recipe."""


def recipe(profile: str, changes: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A copy of a profile's recipe with ``changes`` applied: ``ExperimentConfig``'s keyword
    arguments besides the notebook, its grid and the output root.

    Args:
        profile: a key of :data:`RECIPES`.
        changes: a name in :data:`RECIPE_NAMES` (``data_root``, ``device``, ``epochs`` ...)
            replaces the recipe's value; any other key is a RunConfig field (dotted for a
            section's: ``"optim.lr"``) set over the recipe's ``overrides``. The values are
            checked where the experiment is built.

    Raises:
        ConfigError: unknown profile, or ``overrides`` among the changes.
    """
    if profile not in RECIPES:
        raise ConfigError(f"unknown profile {profile!r}; choose one of {sorted(RECIPES)}")
    result = copy.deepcopy(RECIPES[profile])
    for key, value in (changes or {}).items():
        if key == "overrides":
            raise ConfigError("changes: give RunConfig fields by name ({'optim.lr': 0.01}), "
                              "not under 'overrides'")
        if key in RECIPE_NAMES:
            result[key] = copy.deepcopy(value)
        else:
            result["overrides"][key] = copy.deepcopy(value)
    return result


def recipe_run_config(profile: str, dataset: str | None = None) -> RunConfig:
    """The RunConfig a profile's runs start from, for ``fusnet train --profile``.

    The recipe's backbone, weights, image size, epochs, mode, device, seed and overrides,
    validated every epoch (``ExperimentConfig.base_run_config``); with ``dataset`` (a
    loader name) that loader and, where the recipe has a folder for it, the folder
    (``data.root``, absolute). A notebook's run adds its code length, variant and the
    shared feature cache (``ExperimentConfig.run_config``). The recipe's ``threads`` are
    not a RunConfig field: the caller sets them.

    Raises:
        ConfigError: unknown profile or dataset loader.
    """
    from fusnet.experiments.config import ExperimentConfig

    exp = ExperimentConfig(notebook="train", profile=profile, datasets=[dataset] if dataset else (),
                           **recipe(profile))
    config = exp.base_run_config()
    if dataset is None:
        return config
    spec = exp.spec(dataset)
    roots = exp.data_root
    has_folder = spec.loader != "synthetic" and roots is not None and (
        not isinstance(roots, Mapping) or spec.name in roots)
    return config.replace(**{"data.dataset": spec.loader,
                             "data.root": exp.dataset_root(dataset) if has_folder else None})
