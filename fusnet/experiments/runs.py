"""Training runs shared between notebooks: named by their config, trained once, resumed.

A run's folder is ``<runs_dir>/<dataset>/<tag>-<bits>b-<hash>``, the hash taken
over its :class:`~fusnet.config.RunConfig` less the fields that do not change the
result (output and cache folders, device, workers, encoding batch: their metadata,
``fusnet.config.run_fields(identity=False)``). Two notebooks asking for the same run
(the full model at 48 bits is in Tables 3 and 6, Figs. 9, 10, 11 and 12) get the same
folder, and :func:`ensure_run` trains it only once:

- ``metrics.json`` there: the run finished; its record is read back;
- ``checkpoints/last.pt`` there: it was interrupted; training resumes exactly;
- otherwise it is trained from scratch.

Once a run has finished, its ``checkpoints/`` folder (``last.pt``, ``best.pt``: only
needed to resume) is deleted unless asked otherwise; ``model.pt`` keeps the selected
weights, ``codes.npz`` the codes. Neither is committed with the results; a notebook that
reads one asks :func:`ensure_run` for it (``needs``) and gets the run retrained if absent.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusnet.config import LEGACY_OPTIONS_SECTION, RunConfig, run_fields
from fusnet.errors import DataError
from fusnet.experiments.config import ExperimentConfig, relative_to_or_as_is
from fusnet.methods.options import method_options

logger = logging.getLogger(__name__)

# RunConfig fields that do not change what a run computes (their metadata in fusnet.config).
_NOT_IDENTITY = run_fields(identity=False)

ABLATION_CONFIGURATIONS: dict[str, dict[str, bool]] = {
    "baseline": {"cascade": False, "fusion": False, "transformer": False},
    "cascading": {"cascade": True, "fusion": False, "transformer": False},
    "cascading+fusion": {"cascade": True, "fusion": True, "transformer": False},
    "cascading+attention": {"cascade": True, "fusion": False, "transformer": True},
    "cascading+fusion+attention": {"cascade": True, "fusion": True, "transformer": True},
}
"""Table 6's five rows (lines 1-5, in order) as ``ModelConfig`` switches.

The names are ``fusnet.experiments.paper_tables.load_table(6)``'s ``configuration`` column; the
paper's "Attention" column is the transformer hash-feature enhancement."""

ABLATION_LINES: dict[str, int] = {name: i for i, name in enumerate(ABLATION_CONFIGURATIONS, 1)}
"""Configuration name -> Table 6 line number (5 = the full model)."""


def _flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def run_identity(config: RunConfig, data_root: str | None = None) -> dict[str, Any]:
    """The config fields that name a run: those that differ from ``RunConfig()`` (dotted).

    Comparing with the defaults keeps a run's name when a later version adds a config
    field (with a default that keeps the old behaviour); a changed default renames it.
    The method's options are compared with the method's defaults and named as they were
    when one flat section held every method's (``baseline.adsh_num_samples``, not
    ``options.num_samples``: :func:`option_identity`), so no run was renamed when each
    method came to own its options.

    Args:
        config: the run's config.
        data_root: the data folder as the parameters gave it (relative paths stay
            relative, so moving the checkout does not rename the run); default the
            config's.
    """
    defaults = _flatten(RunConfig().to_dict())
    flat = {
        k: v for k, v in _flatten(config.to_dict()).items()
        if k not in _NOT_IDENTITY and not k.startswith("options.")
        and (k not in defaults or defaults[k] != v)
    }
    flat.update(option_identity(config))
    if data_root is not None:
        flat["data.root"] = data_root
    return flat


def option_identity(config: RunConfig) -> dict[str, Any]:
    """The run's method options that differ from the method's defaults, under their
    dotted names of the old flat section (``{"baseline.exchnet_align_start": 2}``;
    ``fusnet.config.LEGACY_OPTIONS_SECTION``)."""
    options = method_options(config.method, config.options)
    return {
        f"{LEGACY_OPTIONS_SECTION}.{config.method}_{f.name}": getattr(options, f.name)
        for f in dataclasses.fields(options)
        if getattr(options, f.name) != f.default
    }


def run_hash(config: RunConfig, data_root: str | None = None) -> str:
    """Ten hex digits of SHA-256 over :func:`run_identity`."""
    text = json.dumps(run_identity(config, data_root), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def model_tag(config: RunConfig) -> str:
    """Short readable name of the architecture switches (``eca-c1f1t1``), or a baseline's
    method name (``dpsh``)."""
    if config.method != "multifusnet":
        return config.method
    m = config.model
    return f"{m.attention}-c{int(m.cascade)}f{int(m.fusion)}t{int(m.transformer)}"


def run_dir(runs_dir: Path, dataset: str, config: RunConfig, data_root: str | None = None) -> Path:
    """``<runs_dir>/<dataset>/<tag>-<bits>b-<hash>`` (module docstring)."""
    name = f"{model_tag(config)}-{config.model.bits}b-{run_hash(config, data_root)}"
    return runs_dir / dataset / name


@dataclass
class RunRecord:
    """A finished run as the notebooks use it.

    Attributes:
        dataset: the dataset's name in the experiment (``DatasetSpec.name``).
        bits: code length.
        label: what the notebook calls this run (a configuration, an attention module).
        path: the run folder (``metrics.json``, ``codes.npz``, ``model.pt``, ...).
        config: the run's config.
        metrics: the run's ``metrics.json``.
        manifest: the run's ``manifest.json`` (code, data, weights, device, wall time).
        reused: True when the run had finished before (nothing was trained now).
    """

    dataset: str
    bits: int
    label: str
    path: Path
    config: RunConfig
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def map_index_ties(self) -> float:
        return float(self.metrics["map_index_ties"])

    @property
    def map_tie_aware(self) -> float:
        return float(self.metrics["map_tie_aware"])

    def summary(self, root: Path | None = None) -> dict[str, Any]:
        """JSON record for a notebook's ``metrics.json`` (path relative to ``root``)."""
        path = relative_to_or_as_is(self.path, root)
        return {
            "dataset": self.dataset,
            "bits": self.bits,
            "label": self.label,
            "path": str(path),
            "map_index_ties": self.map_index_ties,
            "map_tie_aware": self.map_tie_aware,
            "selection": self.metrics.get("selection"),
            "reused": self.reused,
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class RunRequest:
    """One run a notebook needs: dataset, bits, a label and ModelConfig/RunConfig changes."""

    dataset: str
    bits: int
    label: str = "full"
    changes: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict[str, Any]:
    """A run's JSON file; a damaged one is a DataError naming it and the fix."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path} ({exc}): it is damaged or cut short; delete the run folder "
            f"{path.parent} and rerun (the run is trained again)"
        ) from exc


def request_config(exp: ExperimentConfig, request: RunRequest) -> RunConfig:
    """The run's config, its ``output_dir`` the run folder (:func:`run_dir`)."""
    config = exp.run_config(request.dataset, request.bits, **request.changes)
    name = exp.spec(request.dataset).name
    path = run_dir(exp.runs_dir, name, config, exp.dataset_root(request.dataset, resolve=False))
    return config.replace(output_dir=str(path))


def is_finished(path: Path) -> bool:
    """A run folder whose ``metrics.json`` exists (written last by the trainer)."""
    return (path / "metrics.json").is_file()


def ensure_run(
    exp: ExperimentConfig, request: RunRequest, keep_checkpoints: bool = False,
    needs: Sequence[str] = (),
) -> RunRecord:
    """The finished run for ``request``: read back, resumed, or trained now.

    Args:
        exp: the notebook's experiment (datasets, recipe, folders).
        request: which run.
        keep_checkpoints: keep ``checkpoints/`` of a run trained now (module docstring).
        needs: run files the caller reads besides the metrics (``"model.pt"`` for
            Grad-CAM, ``"codes.npz"`` for retrieval examples). The committed results keep
            neither (``.gitignore``: generated binaries stay out of git), so a finished run
            missing one is trained again: same config and seed, so the same numbers on the
            same machine.

    Returns:
        Its :class:`RunRecord`.
    """
    from fusnet.train.loop import train

    config = request_config(exp, request)
    name = exp.spec(request.dataset).name
    path = Path(config.output_dir)
    reused = is_finished(path)
    missing = [name for name in needs if not (path / name).is_file()]
    if reused and missing:
        logger.info("%s has no %s (not kept in git): training it again",
                    path.relative_to(exp.root), " or ".join(missing))
        reused = False
    if not reused:
        start = time.perf_counter()
        train(config, resume=True)  # resumes from checkpoints/last.pt when there is one
        logger.info(
            "trained %s %d bits (%s) in %.0f s -> %s", request.dataset, request.bits,
            request.label, time.perf_counter() - start, path.relative_to(exp.root),
        )
        if not keep_checkpoints:
            shutil.rmtree(path / "checkpoints", ignore_errors=True)
    record = RunRecord(
        dataset=name,
        bits=int(request.bits),
        label=request.label,
        path=path,
        config=config,
        metrics=_read_json(path / "metrics.json"),
        manifest=_read_json(path / "manifest.json"),
        reused=reused,
    )
    return record


def ensure_runs(
    exp: ExperimentConfig, requests: Sequence[RunRequest], workers: int | None = None,
    threads: int = 1,
) -> list[RunRecord]:
    """:func:`ensure_run` for each request, logging progress and mAP.

    Args:
        exp: the notebook's experiment.
        requests: the runs.
        workers: None (default): in this process, in order; N: the unfinished runs in N
            child processes at once (:class:`~fusnet.experiments.executor.RunExecutor`).
        threads: torch threads of each child process.

    Returns:
        The records in the order the runs finished (in this process: the requests' order).
    """
    from fusnet.experiments.executor import RunExecutor

    with RunExecutor(exp, workers=workers, threads=threads) as executor:
        return executor.run(requests).records


def log_progress(i: int, n: int, record: RunRecord) -> None:
    """The progress line of the ``i``-th of ``n`` runs to finish: its test mAP."""
    logger.info(
        "[%d/%d] %s %d bits %s: test mAP %.4f (index ties)%s",
        i, n, record.dataset, record.bits, record.label, record.map_index_ties,
        " (finished before)" if record.reused else "",
    )


def grid(
    datasets: Iterable[str],
    bits: Iterable[int],
    variants: dict[str, dict[str, Any]] | None = None,
) -> list[RunRequest]:
    """Requests for every (dataset, bits, variant); ``variants`` maps label -> changes.

    Without ``variants``, one full-model request per (dataset, bits), labelled "full".
    """
    variants = variants or {"full": {}}
    return [
        RunRequest(dataset, int(k), label, dict(changes))
        for dataset in datasets
        for k in bits
        for label, changes in variants.items()
    ]


def ablation_variants(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Label -> ``model.*`` changes for Table 6 configurations (names as in the table)."""
    return {
        name: {f"model.{k}": v for k, v in ABLATION_CONFIGURATIONS[name].items()} for name in names
    }


def attention_variants(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Label -> ``model.attention`` change for Fig. 9 (the rest is the full model)."""
    return {name: {"model.attention": name} for name in names}
