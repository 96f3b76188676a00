"""The typed configuration of one notebook run, built from its papermill parameters, and its
folders: the notebook's outputs in ``<root>/<notebook>/<profile>/``, the runs a profile's
notebooks share in ``<root>/runs/<profile>/``, feature caches in ``<root>/cache/`` (or
``$FUSNET_CACHE_DIR``); the root is ``output_root``, else ``$FUSNET_OUTPUT_ROOT``, else
``results``, relative paths from the repository root (the same wherever a notebook runs).
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch

from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.experiments.recipes import recipe

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_ROOT_ENV = "FUSNET_OUTPUT_ROOT"
CACHE_DIR_ENV = "FUSNET_CACHE_DIR"
T = TypeVar("T")


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one is taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def relative_to_or_as_is(path: Path, root: Path | None) -> Path:
    """``path`` relative to ``root`` when it lies under it, else ``path`` unchanged."""
    try:
        return path if root is None else path.relative_to(root)
    except ValueError:
        return path


LOWER_LEVEL_SWITCHES = ("level_dropout", "lower_level_gate")  # act on the lower levels only


def without_idle_lower_level_switches(config: RunConfig) -> RunConfig:
    """:data:`LOWER_LEVEL_SWITCHES` at their defaults without lower levels (one run name)."""
    if config.method == "multifusnet" and config.model.cascade:
        return config
    defaults = RunConfig().model
    return config.replace(**{f"model.{name}": getattr(defaults, name)
                             for name in LOWER_LEVEL_SWITCHES})


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset's name in tables and its loader: ``"cub200"`` or ``"flowers5:imagefolder"``."""

    name: str
    loader: str

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """Parse ``"name"`` or ``"name:loader"``; ConfigError for an unregistered loader."""
        from fusnet.data import DATASETS

        name, _, loader = str(text).partition(":")
        loader = loader or name
        if not name or not loader:
            raise ConfigError(f"dataset {text!r}: write 'name' or 'name:loader'")
        if loader not in DATASETS:
            raise ConfigError(f"dataset {text!r}: unknown loader {loader!r}; "
                              f"choose one of {sorted(DATASETS)}")
        return cls(name, loader)

    def __str__(self) -> str:
        return self.name if self.name == self.loader else f"{self.name}:{self.loader}"


def check_choices(kind: str, values: Sequence[str] | str,
                  choices: Mapping[str, Any] | Sequence[str]) -> tuple[str, ...]:
    """A parameter listing names (a string is one), as a tuple of distinct ``choices``."""
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise ConfigError(f"no {kind} given")
    if len(set(values)) != len(values):
        raise ConfigError(f"{kind} repeated: {list(values)}")
    unknown = [v for v in values if v not in choices]
    if unknown:
        raise ConfigError(f"unknown {kind} {unknown}; choose from {sorted(choices)}")
    return values


def single(kind: str, values: Sequence[T]) -> T:
    """The one value of a list parameter (notebooks 05, 07, 10 show one model)."""
    if len(values) != 1:
        raise ConfigError(f"{kind}: this notebook takes exactly one, got {list(values)}")
    return values[0]


def _int_tuple(name: str, values: int | Sequence[int]) -> tuple[int, ...]:
    values = (values,) if isinstance(values, int) else tuple(values)
    if not values or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in values):
        raise ConfigError(f"{name} must be positive integers, got {list(values)}")
    return values


@dataclass(frozen=True)
class ExperimentConfig:
    """What one notebook runs, and where. ``data_root``: a folder holding ``<name>/``, a
    mapping name -> folder, or ``None`` (synthetic only); ``backbone`` ... ``seed`` as in
    RunConfig, ``overrides`` other RunConfig fields, dotted; ``threads``: torch's (None)."""

    notebook: str
    profile: str
    datasets: tuple[str, ...] = ()
    bits: tuple[int, ...] = (12, 24, 32, 48)
    data_root: str | Mapping[str, str] | None = None
    backbone: str = "resnet50"
    pretrained: str = "default"
    epochs: int = 300
    image_size: int = 336
    mode: str = "full"
    device: str = "auto"
    seed: int = 0
    output_root: str | None = None
    threads: int | None = None
    overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from fusnet.models import BACKBONES

        if not self.notebook or not self.profile:
            raise ConfigError("notebook and profile must be non-empty names")
        datasets = (self.datasets,) if isinstance(self.datasets, str) else tuple(self.datasets)
        specs = [DatasetSpec.parse(d) for d in datasets]
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ConfigError(f"datasets repeated: {names}")
        object.__setattr__(self, "datasets", tuple(str(s) for s in specs))
        object.__setattr__(self, "bits", _int_tuple("bits", self.bits))
        object.__setattr__(self, "overrides", dict(self.overrides or {}))
        check_choices("backbone", self.backbone, BACKBONES)
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 or None, got {self.threads}")
        if isinstance(self.data_root, Mapping) and set(self.data_root) - set(names):
            logger.debug("data_root names datasets this notebook does not use: %s",
                         sorted(set(self.data_root) - set(names)))
        self.base_run_config()  # every RunConfig name and value checked now

    @classmethod
    def from_parameters(cls, notebook: str, *, profile: str, datasets: Sequence[str] | str = (),
                        bits: int | Sequence[int] = (12, 24, 32, 48),
                        changes: Mapping[str, Any] | None = None,
                        output_root: str | None = None) -> ExperimentConfig:
        """A notebook's ``parameters`` cell: ``recipe(profile, changes)`` over its grid."""
        return cls(notebook=notebook, profile=profile, datasets=datasets, bits=bits,
                   output_root=output_root, **recipe(profile, changes))

    @property
    def root(self) -> Path:  # the module docstring's folders
        return resolve_path(self.output_root or os.environ.get(OUTPUT_ROOT_ENV) or "results")

    @property
    def output_dir(self) -> Path:
        return self.root / self.notebook / self.profile

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs" / self.profile

    @property
    def cache_dir(self) -> Path:
        override = os.environ.get(CACHE_DIR_ENV)
        return resolve_path(override) if override else self.root / "cache"

    @property
    def dataset_specs(self) -> tuple[DatasetSpec, ...]:
        return tuple(DatasetSpec.parse(d) for d in self.datasets)

    def spec(self, dataset: str) -> DatasetSpec:
        """One of this experiment's datasets, by name."""
        for spec in self.dataset_specs:
            if dataset in (spec.name, str(spec)):
                return spec
        raise ConfigError(f"dataset {dataset!r} is not one of {list(self.datasets)}")

    def dataset_root(self, dataset: str, resolve: bool = True) -> str | None:
        """The folder handed to the dataset's loader (``None`` for the synthetic set);
        ``resolve=False`` gives it as the parameters wrote it (what names a run)."""
        spec = self.spec(dataset)
        if spec.loader == "synthetic":
            return None
        if isinstance(self.data_root, Mapping):
            if spec.name not in self.data_root:
                raise ConfigError(f"data_root has no entry for {spec.name!r}; "
                                  f"it names {sorted(self.data_root)}")
            given = str(self.data_root[spec.name])
        elif self.data_root is None:
            raise ConfigError(
                f"dataset {spec.name!r} needs data_root (a folder holding {spec.name}/, or a "
                f"mapping {{'{spec.name}': folder}}); `fusnet reproduce --data-root DIR` sets it"
            )
        else:
            given = f"{self.data_root}/{spec.name}"
        return str(resolve_path(given)) if resolve else given

    def base_run_config(self) -> RunConfig:
        """The RunConfig every run of this notebook starts from (no dataset, no bits)."""
        config = RunConfig().replace(**{
            "model.backbone": self.backbone, "model.pretrained": self.pretrained,
            "data.image_size": self.image_size, "optim.epochs": self.epochs, "mode": self.mode,
            "device": self.device, "seed": self.seed,
            "eval_every": 1,  # per-epoch validation mAP: Fig. 11 needs it
        })
        return config.replace(**self.overrides) if self.overrides else config

    def run_config(self, dataset: str, bits: int, **changes: Any) -> RunConfig:
        """One run's RunConfig (``changes``: dotted), without ``output_dir`` nor idle switches."""
        config = self.base_run_config().replace(**{
            "data.dataset": self.spec(dataset).loader, "data.root": self.dataset_root(dataset),
            "model.bits": int(bits), "cache_dir": str(self.cache_dir), **changes,
        })
        return without_idle_lower_level_switches(config)

    def config_changes(self) -> pd.DataFrame:
        """Each setting of :meth:`base_run_config` not at RunConfig's default, beside it."""
        defaults = flatten_config(RunConfig().to_dict())
        ours = flatten_config(self.base_run_config().to_dict())
        rows = [(key, defaults.get(key), value) for key, value in ours.items()
                if defaults.get(key) != value]
        return pd.DataFrame(rows, columns=["setting", "default", "this notebook"]).set_index(
            "setting")

    def setup(self, inline_format: str = "jpeg", inline_dpi: int = 72) -> None:
        """Seeds, torch threads, logging and small inline figures for a notebook kernel."""
        _inline_figures(inline_format, inline_dpi)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        # tqdm.auto's bars are widgets in a kernel (ipywidgets); without it, no warning.
        warnings.filterwarnings("ignore", message="IProgress not found")
        random.seed(self.seed)
        np.random.seed(self.seed)  # noqa: NPY002 - third-party code reads the global state
        torch.manual_seed(self.seed)
        root_logger = logging.getLogger("fusnet")
        if not root_logger.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
            root_logger.addHandler(handler)
        root_logger.setLevel(logging.WARNING)
        logging.getLogger("fusnet.experiments").setLevel(logging.INFO)

    def parameters(self) -> dict[str, Any]:
        """The fields as plain JSON values (recorded in ``metrics.json``)."""
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        plain.update(datasets=list(self.datasets), bits=list(self.bits),
                     overrides=dict(self.overrides))
        if isinstance(self.data_root, Mapping):
            plain["data_root"] = dict(self.data_root)
        return plain


def recipe_run_config(profile: str, dataset: str | None = None) -> RunConfig:
    """The RunConfig a profile's runs start from (``fusnet train --profile``), with
    ``dataset``'s loader and the recipe's folder for it, if any; threads are the caller's."""
    exp = ExperimentConfig(notebook="train", profile=profile, datasets=[dataset] if dataset else (),
                           **recipe(profile))
    config = exp.base_run_config()
    if dataset is None:
        return config
    try:
        root = exp.dataset_root(dataset)
    except ConfigError:  # the recipe has no folder for it
        root = None
    return config.replace(**{"data.dataset": exp.spec(dataset).loader, "data.root": root})


def flatten_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested config dict as dotted keys (``{"model.bits": 48, ...}``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten_config(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _inline_figures(fmt: str, dpi: int) -> None:
    """Inline figure format and resolution in an IPython kernel only."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    if get_ipython() is None:
        return
    import matplotlib
    from matplotlib_inline.backend_inline import set_matplotlib_formats

    set_matplotlib_formats(fmt)
    matplotlib.rcParams["figure.dpi"] = dpi
