"""The typed configuration of one notebook run, built from its papermill parameters.

A notebook's ``parameters`` cell holds plain values: the profile, the grid it sweeps
(``datasets``, ``bits``), its own few settings and ``changes`` to the profile's recipe.
The next cell passes them to :meth:`ExperimentConfig.from_parameters`, which takes the
profile's recipe (``fusnet.experiments.recipes.RECIPES``: data, backbone, epochs, head widths ...),
applies the changes, checks every name at once (datasets, backbone, mode, RunConfig
fields) and turns them into :class:`~fusnet.config.RunConfig` objects, one per training
run, and into the folders the notebook writes:

=========================================  ==================================================
``<output root>/<notebook>/<profile>/``    the notebook's tables, figures, ``metrics.json``
``<output root>/runs/<profile>/...``       training runs, shared by all notebooks of a profile
``<output root>/cache/``                   frozen-backbone feature caches, shared by all runs
=========================================  ==================================================

The output root is the ``output_root`` parameter, else ``$FUSNET_OUTPUT_ROOT``, else
``<repo>/results``; ``$FUSNET_CACHE_DIR`` moves the feature caches. Relative paths
(output root, data roots) are taken from the repository root, not from the
notebook's working folder, so a notebook gives the same result wherever it runs.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from fusnet.config import RunConfig
from fusnet.errors import ConfigError
from fusnet.experiments.recipes import recipe

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
OUTPUT_ROOT_ENV = "FUSNET_OUTPUT_ROOT"
CACHE_DIR_ENV = "FUSNET_CACHE_DIR"


def resolve_path(path: str | Path) -> Path:
    """An absolute path; a relative one is taken from the repository root."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def relative_to_or_as_is(path: Path, root: Path | None) -> Path:
    """``path`` relative to ``root`` when it lies under it, else ``path`` unchanged."""
    if root is None:
        return path
    try:
        return path.relative_to(root)
    except ValueError:
        return path


LOWER_LEVEL_SWITCHES = ("level_dropout", "lower_level_gate")
"""``ModelConfig`` fields that act on the lower levels only (ours, README fidelity notes)."""


def without_idle_lower_level_switches(config: RunConfig) -> RunConfig:
    """``config`` with :data:`LOWER_LEVEL_SWITCHES` at their defaults where there are no
    lower levels to act on: another method than Multi-FusNet, or no cascade (Table 6's
    row-1 baseline). Such a run is the same network with or without them, so it keeps one
    name (``fusnet.experiments.runs.run_hash``) and is trained once."""
    if config.method == "multifusnet" and config.model.cascade:
        return config
    defaults = RunConfig().model
    return config.replace(**{f"model.{name}": getattr(defaults, name)
                             for name in LOWER_LEVEL_SWITCHES})


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset of an experiment: the name in tables, and the loader that reads it.

    Written ``"name"`` (a registered loader, e.g. ``"cub200"``) or ``"name:loader"``
    for the paper's datasets without an official layout (``"flowers5:imagefolder"``).
    """

    name: str
    loader: str

    @classmethod
    def parse(cls, text: str) -> DatasetSpec:
        """Parse ``"name"`` or ``"name:loader"``, checking the loader is registered.

        Raises:
            ConfigError: empty parts, or a loader not in ``fusnet.data.DATASETS``.
        """
        from fusnet.data import DATASETS

        name, _, loader = str(text).partition(":")
        loader = loader or name
        if not name or not loader:
            raise ConfigError(f"dataset {text!r}: write 'name' or 'name:loader'")
        if loader not in DATASETS:
            raise ConfigError(
                f"dataset {text!r}: unknown loader {loader!r}; choose one of {sorted(DATASETS)}"
            )
        return cls(name, loader)

    def __str__(self) -> str:
        return self.name if self.name == self.loader else f"{self.name}:{self.loader}"


def _names_in(kind: str, values: Sequence[str], registry: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = [v for v in values if v not in registry]
    if unknown:
        raise ConfigError(f"unknown {kind} {unknown}; choose from {sorted(registry)}")
    return tuple(values)


def check_choices(kind: str, values: Sequence[str] | str, choices: Mapping[str, Any] | Sequence[str]) -> tuple[str, ...]:
    """Validate a notebook parameter that lists names (attention modules, configurations).

    Args:
        kind: what the names are, for the error message.
        values: the names (a single string is one name).
        choices: the allowed names (a registry dict or a sequence).

    Returns:
        The names as a tuple, in the given order.

    Raises:
        ConfigError: empty, repeated, or unknown names.
    """
    values = (values,) if isinstance(values, str) else tuple(values)
    if not values:
        raise ConfigError(f"no {kind} given")
    if len(set(values)) != len(values):
        raise ConfigError(f"{kind} repeated: {list(values)}")
    allowed = dict.fromkeys(choices)
    return _names_in(kind, values, allowed)


T = TypeVar("T")


def single(kind: str, values: Sequence[T]) -> T:
    """The one value of a notebook parameter that lists exactly one.

    A notebook that shows one model (05, 10) or one code length (07) takes its grid in the
    shape of every other notebook's (``datasets``, ``bits``: lists) and reads its one value
    with this.

    Raises:
        ConfigError: none, or more than one.
    """
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
    """What one notebook runs, under which profile, and where its outputs go.

    Attributes:
        notebook: the notebook's name (``"01_main_results"``); names its output folder.
        profile: ``"smoke"``, ``"cpu"``, ``"paper"`` or a name of your own (this
            constructor; :meth:`from_parameters` takes a recipe of ``fusnet.experiments.recipes``).
        datasets: :class:`DatasetSpec` strings (``"cub200"``, ``"flowers5:imagefolder"``).
        bits: hash code lengths.
        data_root: where the datasets are: a folder holding one folder per dataset
            name (``<data_root>/<name>``), or a mapping name -> folder; ``None`` when
            only the synthetic set is used.
        backbone, pretrained, epochs, image_size, mode, device, seed: as in
            :class:`~fusnet.config.RunConfig` (``model.backbone`` ...).
        output_root: the results folder (module docstring for the default).
        threads: torch intra-op threads (``None``: torch's default). One thread makes
            CPU results repeatable across machines with different core counts.
        overrides: any other ``RunConfig`` fields, dotted (``{"model.level_dim": 256}``).
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
        if isinstance(self.data_root, Mapping):
            unknown = sorted(set(self.data_root) - set(names))
            if unknown:
                logger.debug("data_root names datasets this notebook does not use: %s", unknown)
        self.base_run_config()  # every RunConfig name and value checked now

    @classmethod
    def from_parameters(
        cls,
        notebook: str,
        *,
        profile: str,
        datasets: Sequence[str] | str = (),
        bits: int | Sequence[int] = (12, 24, 32, 48),
        changes: Mapping[str, Any] | None = None,
        output_root: str | None = None,
    ) -> ExperimentConfig:
        """The experiment of a notebook's ``parameters`` cell: its profile's recipe, changed.

        Every notebook that trains builds its experiment with this; so do the scripts that
        train a profile's runs outside the notebooks (``scripts/regime_runs.py``,
        ``scripts/baselines_parallel.py``).

        Args:
            notebook: the notebook's name.
            profile: a profile of ``fusnet.experiments.recipes``: its recipe (``RECIPES[profile]``:
                data folders, backbone, epochs, image size, mode, device, seed, threads,
                RunConfig overrides) and the name of the output folders.
            datasets, bits: the grid the notebook sweeps.
            changes: changes to the recipe (``fusnet.experiments.recipes.recipe``): a recipe name
                (``data_root``, ``device``, ``epochs`` ...) replaces its value, any other
                key is a RunConfig field (``"optim.lr"``) set over the recipe's overrides.
            output_root: the results folder (module docstring for the default).

        Raises:
            ConfigError: an unknown profile, or a wrong name or value (as the constructor).
        """
        return cls(notebook=notebook, profile=profile, datasets=datasets, bits=bits,
                   output_root=output_root, **recipe(profile, changes))

    # --- folders ---------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The results folder (parameter, else ``$FUSNET_OUTPUT_ROOT``, else ``results``)."""
        return resolve_path(self.output_root or os.environ.get(OUTPUT_ROOT_ENV) or "results")

    @property
    def output_dir(self) -> Path:
        """``<root>/<notebook>/<profile>``: this notebook's tables, figures, metrics."""
        return self.root / self.notebook / self.profile

    @property
    def runs_dir(self) -> Path:
        """``<root>/runs/<profile>``: the training runs all notebooks of the profile share."""
        return self.root / "runs" / self.profile

    @property
    def cache_dir(self) -> Path:
        """Frozen-backbone feature caches (``$FUSNET_CACHE_DIR`` or ``<root>/cache``)."""
        override = os.environ.get(CACHE_DIR_ENV)
        return resolve_path(override) if override else self.root / "cache"

    @property
    def dataset_specs(self) -> tuple[DatasetSpec, ...]:
        return tuple(DatasetSpec.parse(d) for d in self.datasets)

    def spec(self, dataset: str) -> DatasetSpec:
        """The :class:`DatasetSpec` of one of this experiment's datasets, by name."""
        for spec in self.dataset_specs:
            if dataset in (spec.name, str(spec)):
                return spec
        raise ConfigError(f"dataset {dataset!r} is not one of {list(self.datasets)}")

    def dataset_root(self, dataset: str, resolve: bool = True) -> str | None:
        """The folder handed to the dataset's loader (``None`` for the synthetic set).

        Args:
            dataset: one of :attr:`datasets`, by name.
            resolve: make the path absolute (relative paths from the repository root);
                False gives it as the parameters wrote it (what names a run).

        Raises:
            ConfigError: a real dataset with no ``data_root``, or a mapping without it.
        """
        spec = self.spec(dataset)
        if spec.loader == "synthetic":
            return None
        if isinstance(self.data_root, Mapping):
            if spec.name not in self.data_root:
                raise ConfigError(
                    f"data_root has no entry for {spec.name!r}; it names {sorted(self.data_root)}"
                )
            given = str(self.data_root[spec.name])
        elif self.data_root is None:
            raise ConfigError(
                f"dataset {spec.name!r} needs data_root (a folder holding {spec.name}/, or a "
                f"mapping {{'{spec.name}': folder}}); `fusnet reproduce --data-root DIR` sets it"
            )
        else:
            given = f"{self.data_root}/{spec.name}"
        return str(resolve_path(given)) if resolve else given

    # --- runs -------------------------------------------------------------------------

    def base_run_config(self) -> RunConfig:
        """The RunConfig every run of this notebook starts from (no dataset, no bits)."""
        config = RunConfig().replace(
            **{
                "model.backbone": self.backbone,
                "model.pretrained": self.pretrained,
                "data.image_size": self.image_size,
                "optim.epochs": self.epochs,
                "mode": self.mode,
                "device": self.device,
                "seed": self.seed,
                "eval_every": 1,  # per-epoch validation mAP: Fig. 11 needs it
            }
        )
        return config.replace(**self.overrides) if self.overrides else config

    def run_config(self, dataset: str, bits: int, **changes: Any) -> RunConfig:
        """The RunConfig of one run; ``changes`` are dotted RunConfig fields.

        ``output_dir`` is left for :func:`fusnet.experiments.runs.run_dir` to fill in. The
        recipe's lower-level switches are reset where they act on nothing
        (:func:`without_idle_lower_level_switches`), so the cpu recipe's gate does not rename
        the baseline's or another method's runs.
        """
        spec = self.spec(dataset)
        config = self.base_run_config().replace(
            **{
                "data.dataset": spec.loader,
                "data.root": self.dataset_root(dataset),
                "model.bits": int(bits),
                "cache_dir": str(self.cache_dir),
                **changes,
            }
        )
        return without_idle_lower_level_switches(config)

    def setup(self, inline_format: str = "jpeg", inline_dpi: int = 72) -> None:
        """Seeds, torch threads, logging and inline figures for a notebook kernel.

        ``fusnet.experiments`` logs at INFO (one line per run); the rest of fusnet at
        WARNING (each run's per-epoch record is in its ``metrics.json``). In an IPython
        kernel, figures are shown as ``inline_format`` at ``inline_dpi`` (small JPEGs keep
        the committed notebooks small; the saved PNG/SVG files are unaffected).
        """
        _inline_figures(inline_format, inline_dpi)
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        # Progress bars are off in a kernel (no TTY); tqdm.auto would still warn about widgets.
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
        """The parameters as plain JSON values (recorded in ``metrics.json``)."""
        return {
            "notebook": self.notebook,
            "profile": self.profile,
            "datasets": list(self.datasets),
            "bits": list(self.bits),
            "data_root": dict(self.data_root) if isinstance(self.data_root, Mapping) else self.data_root,
            "backbone": self.backbone,
            "pretrained": self.pretrained,
            "epochs": self.epochs,
            "image_size": self.image_size,
            "mode": self.mode,
            "device": self.device,
            "seed": self.seed,
            "output_root": self.output_root,
            "threads": self.threads,
            "overrides": dict(self.overrides),
        }


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
