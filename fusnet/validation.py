"""Up-front checks of a run configuration: every problem at once, before any work.

Two levels:

- :func:`config_problems` checks what a config says on its own (types, numeric
  ranges, choices, consistency). :class:`~fusnet.config.RunConfig` calls it on
  construction, so a bad value never makes a config object.
- :func:`run_problems` also checks what the config refers to: names against their
  registries (datasets, backbones, attention modules, methods) and paths that must
  exist. :func:`validate_run` calls both and is what training calls first, before
  any weights, data or cache work.

Each problem names the field, its command-line flag, the value and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fusnet.errors import ConfigError

if TYPE_CHECKING:
    from fusnet.config import RunConfig

Check = Callable[[Any], str | None]
"""A range check: ``None`` when the value is allowed, else what is allowed."""


def _at_least(low: float) -> Check:
    return lambda v: None if v >= low else f"must be >= {low}"


def _above(low: float) -> Check:
    return lambda v: None if v > low else f"must be > {low}"


def _in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        ok_low = v > low if low_open else v >= low
        ok_high = v < high if high_open else v <= high
        if ok_low and ok_high:
            return None
        return f"must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"

    return check


def at_least(low: float) -> dict[str, Check]:
    """Field metadata of a method option (``fusnet.baselines``): the value must be >= ``low``."""
    return {"check": _at_least(low)}


def within(low: float, high: float) -> dict[str, Check]:
    """Field metadata of a method option: the value must be in [``low``, ``high``]."""
    return {"check": _in(low, high)}


# Numeric ranges by "section.field" ("run" for RunConfig's own fields). Fields without
# an entry (e.g. ones added later) still get the type check against their default. A
# method's options carry their ranges as field metadata (at_least, within).
RANGES: dict[str, Check] = {
    "data.image_size": _at_least(32),
    "data.val_fraction": _in(0.0, 1.0, high_open=True),
    "data.batch_size": _at_least(2),  # BatchNorm needs two samples a batch
    "data.eval_batch_size": _at_least(1),
    "data.num_workers": _at_least(0),
    "data.synthetic_classes": _at_least(2),
    "model.bits": _at_least(1),
    "model.block_mid": _at_least(1),
    "model.level_dim": _at_least(1),
    "model.hash_hidden": _at_least(1),
    "model.transformer_dim": _at_least(1),
    "model.transformer_depth": _at_least(1),
    "model.transformer_heads": _at_least(1),
    "model.dropout": _in(0.0, 1.0, high_open=True),
    "model.level_dropout": _in(0.0, 1.0, high_open=True),
    "loss.true_prob": _in(0.0, 1.0, low_open=True),
    "loss.proxy_iterations": _at_least(0),
    "loss.alpha_min": _at_least(0),
    "optim.epochs": _at_least(1),
    "optim.lr": _above(0),
    "optim.momentum": _in(0.0, 1.0, high_open=True),
    "optim.weight_decay": _at_least(0),
    "optim.lr_step": _at_least(1),
    "optim.lr_gamma": _above(0),
    "optim.backbone_lr_scale": _at_least(0),
    "run.eval_every": _at_least(1),
}
NON_NEGATIVE_SECTIONS = ("options",)  # every other number of a method's options: >= 0
SELECT_RULES: tuple[str, ...] = ("val", "last")
# Fields whose value must be in a tuple constant of fusnet.config (checked when it exists).
CHOICES: dict[str, str] = {"data.augment": "AUGMENTATIONS", "optim.schedule": "SCHEDULES",
                           "data.image_backend": "IMAGE_BACKENDS", "model.level_pool": "LEVEL_POOLS"}


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _label(section: str, name: str, flag_prefix: str = "") -> str:
    where = name if section == "run" else f"{section}.{name}"
    return f"{where} ({_flag(flag_prefix + name)})"


def _type_problem(value: Any, default: Any) -> str | None:
    """What is wrong with the type of ``value`` given its field's default, if anything."""
    if isinstance(default, bool):
        return None if isinstance(value, bool) else "must be true or false"
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            return "must be an integer"
        return None
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "must be a number"
        return None if math.isfinite(value) else "must be a finite number"
    if isinstance(default, str):
        return None if isinstance(value, str | os.PathLike) and str(value) else "must be a non-empty string"
    return None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return None


def _section_problems(section: str, obj: Any, flag_prefix: str = "") -> list[str]:
    problems = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            continue
        default = _field_default(f)
        if default is None:  # an optional path or name: null or a non-empty string
            if value is not None and not (isinstance(value, str | os.PathLike) and str(value)):
                label = _label(section, f.name, flag_prefix)
                problems.append(f"{label} = {value!r}: must be a string or null")
            continue
        if value is None:
            problems.append(f"{_label(section, f.name, flag_prefix)} = None: must be set")
            continue
        wrong = _type_problem(value, default)
        if wrong is None:
            check = RANGES.get(f"{section}.{f.name}", f.metadata.get("check"))
            if check is None and section in NON_NEGATIVE_SECTIONS and not isinstance(value, bool):
                check = _at_least(0) if isinstance(value, int | float) else None
            wrong = check(value) if check is not None and not isinstance(value, bool) else None
        if wrong is not None:
            problems.append(f"{_label(section, f.name, flag_prefix)} = {value!r}: {wrong}")
    return problems


def config_problems(config: RunConfig) -> list[str]:
    """Everything wrong with a config on its own (no registries, no files).

    Args:
        config: the run configuration.

    Returns:
        One readable line per problem; empty when the config is fine.
    """
    import fusnet.config as config_module
    from fusnet.config import MODES

    problems = _section_problems("run", config)
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):  # a method's options: flags --<method>-<option>
            prefix = f"{config.method}_" if f.name == "options" else ""
            problems += _section_problems(f.name, value, prefix)
    if config.mode not in MODES:
        problems.append(f"mode (--mode) = {config.mode!r}: must be one of {', '.join(MODES)}")
    for where, constant in CHOICES.items():
        section, name = where.split(".")
        allowed = getattr(config_module, constant, None)
        holder = config if section == "run" else getattr(config, section)
        value = getattr(holder, name, None)
        if allowed is not None and value is not None and value not in allowed:
            problems.append(
                f"{_label(section, name)} = {value!r}: must be one of {', '.join(map(str, allowed))}"
            )
    if config.select not in SELECT_RULES:
        problems.append(f"select (--select) = {config.select!r}: must be 'val' or 'last'")
    val_fraction = config.data.val_fraction
    if config.select == "val" and isinstance(val_fraction, int | float) and val_fraction <= 0:
        problems.append(
            "select='val' needs data.val_fraction (--val-fraction) > 0; set it (e.g. 0.1) "
            "or use --select last"
        )
    problems += _device_problems(config.device)
    model = config.model
    dim, heads = model.transformer_dim, model.transformer_heads
    if (model.transformer and isinstance(dim, int) and isinstance(heads, int) and heads > 0
            and dim % heads):
        problems.append(
            f"model.transformer_dim (--transformer-dim) = {dim} must be a multiple of "
            f"model.transformer_heads (--transformer-heads) = {heads}"
        )
    return problems


def _device_problems(device: object) -> list[str]:
    """A device string torch cannot parse ("gpu", "cuda:x"); availability is checked later."""
    if not isinstance(device, str) or device == "auto":
        return []
    import torch

    try:
        torch.device(device)
    except (RuntimeError, ValueError):
        return [f"device (--device) = {device!r}: not a device; use auto, cpu, cuda, cuda:N or mps"]
    return []


def run_problems(config: RunConfig) -> list[str]:
    """What :func:`config_problems` finds plus unknown names and missing paths.

    Args:
        config: the run configuration.

    Returns:
        One readable line per problem; empty when the run can start.
    """
    problems = config_problems(config)
    problems += _registry_problems(config)
    problems += _path_problems(config)
    return problems


def _unknown(label: str, value: Any, known: list[str]) -> str:
    return f"{label} = {value!r}: unknown; choose one of {', '.join(sorted(known))}"


def _registry_problems(config: RunConfig) -> list[str]:
    from fusnet.baselines import METHODS, MULTIFUSNET, build_method
    from fusnet.data import DATASETS
    from fusnet.models.attention import ATTENTION
    from fusnet.models.backbones import BACKBONES

    problems = []
    if config.data.dataset not in DATASETS:
        problems.append(_unknown("data.dataset (--dataset)", config.data.dataset, list(DATASETS)))
    if config.model.backbone not in BACKBONES:
        problems.append(_unknown("model.backbone (--backbone)", config.model.backbone, list(BACKBONES)))
    if config.model.attention not in ATTENTION:
        problems.append(
            _unknown("model.attention (--attention)", config.model.attention, list(ATTENTION))
        )
    methods = list(METHODS.choices())  # MULTIFUSNET and the baselines
    if config.method not in methods:
        problems.append(_unknown("method (--method)", config.method, methods))
    elif (config.method != MULTIFUSNET and config.mode != "full"
          and not build_method(config.method).supports_frozen):
        problems.append(f"method {config.method!r} does not support mode={config.mode!r} (the "
                        "backbone or part of it frozen); use --mode full")
    return problems


def _path_problems(config: RunConfig) -> list[str]:
    problems = []
    root = config.data.root
    from fusnet.data import DATASETS

    if config.data.dataset != "synthetic" and config.data.dataset in DATASETS:
        if root is None:
            problems.append(
                f"data.root (--root) is not set: dataset {config.data.dataset!r} needs the folder "
                "holding its files"
            )
        elif not Path(root).expanduser().is_dir():
            problems.append(f"data.root (--root) = {root!r}: no such folder")
    weights = config.model.weights_path
    if weights is not None and not Path(weights).expanduser().is_file():
        problems.append(f"model.weights_path (--weights-path) = {weights!r}: no such file")
    for name in ("output_dir", "cache_dir"):
        folder = getattr(config, name)
        if folder is not None and Path(folder).exists() and not Path(folder).is_dir():
            problems.append(f"{name} ({_flag(name)}) = {folder!r}: exists and is not a folder")
    return problems


def raise_problems(problems: list[str], what: str = "invalid configuration") -> None:
    """Raise one :class:`ConfigError` listing every problem (nothing when empty)."""
    if not problems:
        return
    if len(problems) == 1:
        raise ConfigError(f"{what}: {problems[0]}")
    listing = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
    raise ConfigError(f"{what}, {len(problems)} problems: {listing}")


def validate_run(config: RunConfig) -> None:
    """Raise one :class:`ConfigError` listing everything that stops ``config`` from running.

    Call it before any weights, data or cache work.
    """
    raise_problems(run_problems(config))
