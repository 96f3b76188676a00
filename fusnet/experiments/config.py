"""The typed configuration of one notebook run, built from its papermill parameters.

:meth:`ExperimentConfig.from_parameters` applies a notebook's ``changes`` to its profile's
recipe, checks every name at once and gives one RunConfig per run, and the folders: the
notebook's outputs in ``<root>/<notebook>/<profile>/``, the runs all notebooks of a profile
share in ``<root>/runs/<profile>/``, feature caches in ``<root>/cache/`` (or
``$FUSNET_CACHE_DIR``). The root is the ``output_root`` parameter, else
``$FUSNET_OUTPUT_ROOT``, else ``results``; relative paths are taken from the repository
root, so a notebook gives the same result wherever it runs.
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


LOWER_LEVEL_SWITCHES = ("level_dropout", "lower_level_gate")
"""``ModelConfig`` fields that act on the lower levels only (ours, README fidelity notes)."""


def without_idle_lower_level_switches(config: RunConfig) -> RunConfig:
    """``config`` with :data:`LOWER_LEVEL_SWITCHES` at their defaults where there are no lower
    levels (another method, or no cascade: Table 6's row 1), so such a run keeps one name."""
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


def _names_in(kind: str, values: Sequence[str], registry: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = [v for v in values if v not in registry]
    if unknown:
        raise ConfigError(f"unknown {kind} {unknown}; choose from {sorted(registry)}")
    return tuple(values)


def check_choices(kind: str, values: Sequence[str] | str,
                  choices: Mapping[str, Any] | Sequence[str]) -> tuple[str, ...]:
    """A notebook parameter that lists names (a string is one name), as a tuple in order;
    ConfigError when empty, repeated, or not among ``choices``."""
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise ConfigError(f"no {kind} given")
    if len(set(values)) != len(values):
        raise ConfigError(f"{kind} repeated: {list(values)}")
    return _names_in(kind, values, dict.fromkeys(choices))


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
    """What one notebook runs (its name and profile name its folders), and where.

    ``datasets`` are :class:`DatasetSpec` strings; ``data_root`` a folder holding
    ``<data_root>/<name>``, a mapping name -> folder, or ``None`` (synthetic only);
    ``backbone`` ... ``seed`` as in RunConfig, ``overrides`` any other RunConfig fields,
    dotted; ``threads`` torch intra-op threads (``None``: torch's default).
    """

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
        _names_in("backbone", [self.backbone], BACKBONES)
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
        """A notebook's ``parameters`` cell: ``RECIPES[profile]`` with ``changes``
        (:func:`~fusnet.experiments.recipes.recipe`), over the grid ``datasets`` x ``bits``."""
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
        """One run's RunConfig (``changes``: dotted fields); ``output_dir`` is
        ``fusnet.experiments.runs.run_dir``'s to fill in. Lower-level switches are reset
        where they act on nothing (:func:`without_idle_lower_level_switches`)."""
        config = self.base_run_config().replace(**{
            "data.dataset": self.spec(dataset).loader, "data.root": self.dataset_root(dataset),
            "model.bits": int(bits), "cache_dir": str(self.cache_dir), **changes,
        })
        return without_idle_lower_level_switches(config)

    def config_changes(self) -> pd.DataFrame:
        """What this notebook trains: each setting of its runs' RunConfig (the profile's
        recipe with the notebook's changes, before a run's dataset and code length) that
        differs from :class:`~fusnet.config.RunConfig`'s defaults, beside the default. A
        notebook's variants (ablation rows, attention modules, methods) change it further."""
        defaults = flatten_config(RunConfig().to_dict())
        ours = flatten_config(self.base_run_config().to_dict())
        rows = [(key, defaults.get(key), value) for key, value in ours.items()
                if defaults.get(key) != value]
        return pd.DataFrame(rows, columns=["setting", "default", "this notebook"]).set_index(
            "setting")

    def setup(self, inline_format: str = "jpeg", inline_dpi: int = 72) -> None:
        """Seeds, torch threads, logging (``fusnet.experiments`` at INFO, the rest of fusnet
        at WARNING) and small inline figures for a notebook kernel."""
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
    """The RunConfig a profile's runs start from, for ``fusnet train --profile``: the
    recipe's, validated every epoch; with ``dataset`` (a loader name) that loader and the
    recipe's folder for it, if any. The recipe's ``threads`` are the caller's to set."""
    exp = ExperimentConfig(notebook="train", profile=profile, datasets=[dataset] if dataset else (),
                           **recipe(profile))
    config = exp.base_run_config()
    if dataset is None:
        return config
    spec, roots = exp.spec(dataset), exp.data_root
    has_folder = spec.loader != "synthetic" and roots is not None and (
        not isinstance(roots, Mapping) or spec.name in roots)
    return config.replace(**{"data.dataset": spec.loader,
                             "data.root": exp.dataset_root(dataset) if has_folder else None})


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
    """Inline figure format and resolution in an IPython kernel (a no-op elsewhere)."""
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
