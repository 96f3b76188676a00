"""The training preflight: everything that stops a run, found at once, before any weights,
data or cache work.

:func:`fusnet.config.config_problems` checks what a config says on its own (types,
ranges, choices); this adds what it refers to: names against their registries (datasets,
backbones, attention modules, methods), the method's own options, and paths that must
exist. It sits above configuration and the registries, so neither needs the other.
"""

from __future__ import annotations

from pathlib import Path

from fusnet.checks import flag, raise_problems, unknown
from fusnet.config import RunConfig, config_problems
from fusnet.data import DATASETS
from fusnet.methods import MULTIFUSNET, build_method, method_names
from fusnet.methods.options import option_problems
from fusnet.models.attention import ATTENTION
from fusnet.models.backbones import BACKBONES, DEPTHWISE_BACKBONES

__all__ = ["run_problems", "validate_run"]


def run_problems(config: RunConfig) -> list[str]:
    """What :func:`~fusnet.config.config_problems` finds plus unknown names, the method's
    options and missing paths: one readable line per problem; empty when the run can start."""
    problems = config_problems(config)
    problems += _registry_problems(config)
    if config.method in method_names():
        problems += option_problems(config.method, config.options)
    problems += _path_problems(config)
    return problems


def validate_run(config: RunConfig) -> None:
    """Raise one :class:`~fusnet.errors.ConfigError` listing everything that stops ``config``
    from running. Call it before any weights, data or cache work."""
    raise_problems(run_problems(config))


def _registry_problems(config: RunConfig) -> list[str]:
    problems = []
    if config.data.dataset not in DATASETS:
        problems.append(unknown("data.dataset (--dataset)", config.data.dataset, list(DATASETS)))
    if config.model.backbone not in BACKBONES:
        problems.append(unknown("model.backbone (--backbone)", config.model.backbone, list(BACKBONES)))
    if config.model.attention not in ATTENTION:
        problems.append(
            unknown("model.attention (--attention)", config.model.attention, list(ATTENTION))
        )
    if (config.freeze_depthwise and config.model.backbone in BACKBONES
            and config.model.backbone not in DEPTHWISE_BACKBONES):
        problems.append(f"freeze_depthwise (--freeze-depthwise): backbone "
                        f"{config.model.backbone!r} has no depthwise convolutions; drop the "
                        "option or use an EfficientNet-Lite backbone")
    methods = list(method_names())  # MULTIFUSNET and the baselines
    if config.method not in methods:
        problems.append(unknown("method (--method)", config.method, methods))
    elif (config.method != MULTIFUSNET and config.mode != "full"
          and not build_method(config.method).supports_frozen):
        problems.append(f"method {config.method!r} does not support mode={config.mode!r} (the "
                        "backbone or part of it frozen); use --mode full")
    return problems


def _path_problems(config: RunConfig) -> list[str]:
    problems = []
    root = config.data.root
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
            problems.append(f"{name} ({flag(name)}) = {folder!r}: exists and is not a folder")
    return problems
