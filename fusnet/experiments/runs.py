"""Training runs shared between notebooks, named by their config: a run's folder is
``<runs_dir>/<dataset>/<tag>-<bits>b-<hash>``, the hash over the fields that change its result
(:func:`run_identity`); :func:`ensure_run` reads it back, resumes it or trains it.
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
from fusnet.experiments.config import ExperimentConfig, flatten_config, relative_to_or_as_is
from fusnet.methods.options import method_options

logger = logging.getLogger(__name__)

_NOT_IDENTITY = run_fields(identity=False)

ABLATION_CONFIGURATIONS: dict[str, dict[str, bool]] = {
    "baseline": {"cascade": False, "fusion": False, "transformer": False},
    "cascading": {"cascade": True, "fusion": False, "transformer": False},
    "cascading+fusion": {"cascade": True, "fusion": True, "transformer": False},
    "cascading+attention": {"cascade": True, "fusion": False, "transformer": True},
    "cascading+fusion+attention": {"cascade": True, "fusion": True, "transformer": True},
}
"""Table 6's rows 1-5 (``load_table(6)``'s ``configuration``) as ``ModelConfig`` switches (the
paper's "Attention" column is the transformer)."""
ABLATION_LINES: dict[str, int] = {name: i for i, name in enumerate(ABLATION_CONFIGURATIONS, 1)}


def run_identity(config: RunConfig, data_root: str | None = None) -> dict[str, Any]:
    """The dotted config fields that name a run: those that differ from ``RunConfig()`` (a
    new field renames no run), method options as in the old flat section, and ``data_root``
    as the parameters gave it (moving the checkout renames nothing; default the config's)."""
    defaults = flatten_config(RunConfig().to_dict())
    flat = {
        k: v for k, v in flatten_config(config.to_dict()).items()
        if k not in _NOT_IDENTITY and not k.startswith("options.")
        and (k not in defaults or defaults[k] != v)
    }
    options = method_options(config.method, config.options)
    flat.update({f"{LEGACY_OPTIONS_SECTION}.{config.method}_{f.name}": getattr(options, f.name)
                 for f in dataclasses.fields(options) if getattr(options, f.name) != f.default})
    if data_root is not None:
        flat["data.root"] = data_root
    return flat


def run_hash(config: RunConfig, data_root: str | None = None) -> str:
    """Ten hex digits of SHA-256 over :func:`run_identity`."""
    text = json.dumps(run_identity(config, data_root), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def model_tag(config: RunConfig) -> str:
    """The architecture switches (``eca-c1f1t1``), or a baseline's method name (``dpsh``)."""
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
    """A finished run, its files read, and whether it had finished before (``reused``)."""

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
        return {
            "dataset": self.dataset, "bits": self.bits, "label": self.label,
            "path": str(relative_to_or_as_is(self.path, root)),
            "map_index_ties": self.map_index_ties, "map_tie_aware": self.map_tie_aware,
            "selection": self.metrics.get("selection"), "reused": self.reused,
            "manifest": self.manifest,
        }


@dataclass(frozen=True)
class RunRequest:
    """One run a notebook needs: dataset, bits, a label and dotted RunConfig changes."""

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


def ensure_run(exp: ExperimentConfig, request: RunRequest, keep_checkpoints: bool = False,
               needs: Sequence[str] = ()) -> RunRecord:
    """The finished run for ``request``: read back, resumed or trained now (again where it
    lacks a file in ``needs``, such as ``"model.pt"``: the same numbers on the same machine)."""
    from fusnet.train.loop import train

    config = request_config(exp, request)
    path = Path(config.output_dir)
    reused = is_finished(path)
    missing = [name for name in needs if not (path / name).is_file()]
    if reused and missing:
        logger.info("%s has no %s (not kept in git): training it again",
                    path.relative_to(exp.root), " or ".join(missing))
        reused = False
    if not reused:
        start, where = time.perf_counter(), path.relative_to(exp.root)
        last = path / "checkpoints" / "last.pt"
        if last.is_file():  # a notebook cell says what it does while it does it
            logger.info("resuming %s %d bits (%s) from %s", request.dataset, request.bits,
                        request.label, last.relative_to(exp.root))
        else:
            logger.info("training %s %d bits (%s) -> %s", request.dataset, request.bits,
                        request.label, where)
        try:
            train(config, resume=True)  # resumes from checkpoints/last.pt when there is one
        except KeyboardInterrupt:  # an interrupted kernel: the run stays resumable
            logger.warning("interrupted: %s keeps checkpoints/last.pt; run the cell again to "
                           "resume", where)
            raise
        logger.info("trained %s %d bits (%s) in %.0f s -> %s", request.dataset, request.bits,
                    request.label, time.perf_counter() - start, where)
        if not keep_checkpoints:
            shutil.rmtree(path / "checkpoints", ignore_errors=True)
    return RunRecord(dataset=exp.spec(request.dataset).name, bits=int(request.bits),
                     label=request.label, path=path, config=config,
                     metrics=_read_json(path / "metrics.json"),
                     manifest=_read_json(path / "manifest.json"), reused=reused)


def grid(datasets: Iterable[str], bits: Iterable[int],
         variants: dict[str, dict[str, Any]] | None = None) -> list[RunRequest]:
    """A request per (dataset, bits, variant: label -> changes; default ``{"full": {}}``)."""
    variants = variants or {"full": {}}
    return [RunRequest(dataset, int(k), label, dict(changes))
            for dataset in datasets for k in bits for label, changes in variants.items()]


def ablation_variants(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Label -> ``model.*`` changes for Table 6 configurations (names as in the table)."""
    return {name: {f"model.{k}": v for k, v in ABLATION_CONFIGURATIONS[name].items()}
            for name in names}


def attention_variants(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Label -> ``model.attention`` change for Fig. 9 (the rest is the full model)."""
    return {name: {"model.attention": name} for name in names}
