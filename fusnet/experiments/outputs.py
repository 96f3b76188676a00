"""What a notebook writes: tables (CSV), figures (PNG and SVG) and, last, ``metrics.json``
(parameters, results, artifacts, runs used, code version), which :func:`outputs_complete`
reads to let ``fusnet reproduce`` skip a finished notebook.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from fusnet.experiments.config import ExperimentConfig
from fusnet.experiments.runs import RunRecord
from fusnet.runtime import atomic_write_text, code_version

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
FIGURE_FORMATS = ("png", "svg")


def _plain(value: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python, tuples -> lists."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class NotebookOutputs:
    """One notebook's artifacts under ``exp.output_dir``, its own parameters with ``exp``'s."""

    def __init__(self, exp: ExperimentConfig, **extra_parameters: Any) -> None:
        self.exp, self.extra_parameters, self.dir = exp, dict(extra_parameters), exp.output_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.tables: dict[str, str] = {}
        self.figures: dict[str, list[str]] = {}
        self.runs: list[RunRecord] = []
        self._start = time.perf_counter()

    def table(self, name: str, frame: pd.DataFrame, index: bool = False) -> Path:
        """Write ``<name>.csv`` (floats with 6 significant digits); return its path."""
        path = self.dir / f"{name}.csv"
        atomic_write_text(path, frame.to_csv(index=index, float_format="%.6g"))
        self.tables[name] = path.name
        return path

    def figure(self, name: str, fig: Any, dpi: int = 110) -> list[Path]:
        """Save a figure as ``<name>.png`` and a reproducible ``<name>.svg``; it stays open."""
        import matplotlib

        paths = []
        with matplotlib.rc_context({"svg.hashsalt": "fusnet", "svg.fonttype": "path"}):
            for fmt in FIGURE_FORMATS:
                path = self.dir / f"{name}.{fmt}"
                metadata = {"Date": None} if fmt == "svg" else {"Software": None}
                fig.savefig(path, dpi=dpi, bbox_inches="tight", metadata=metadata)
                paths.append(path)
        self.figures[name] = [p.name for p in paths]
        return paths

    def use_runs(self, records: Iterable[RunRecord]) -> None:
        """Record runs this notebook used (duplicates by folder are kept once)."""
        seen = {r.path for r in self.runs}
        for record in records:
            if record.path not in seen:
                self.runs.append(record)
                seen.add(record.path)

    def write_metrics(self, results: Mapping[str, Any]) -> Path:
        """Write ``metrics.json`` (last: it marks the notebook as finished)."""
        payload = {
            "notebook": self.exp.notebook, "profile": self.exp.profile,
            "parameters": _plain({**self.exp.parameters(), **self.extra_parameters}),
            "results": _plain(results), "tables": dict(self.tables), "figures": dict(self.figures),
            "runs": [_plain(r.summary(self.exp.root)) for r in self.runs], "code": code_version(),
            "wall_seconds": round(time.perf_counter() - self._start, 2),
            "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = self.dir / METRICS_FILE
        atomic_write_text(path, json.dumps(payload, indent=2, default=str) + "\n")
        logger.info("wrote %d table(s), %d figure(s) and %s to %s", len(self.tables),
                    len(self.figures), METRICS_FILE, self.dir.relative_to(self.exp.root))
        return path


def read_metrics(output_dir: Path) -> dict[str, Any] | None:
    """A notebook's ``metrics.json``, or None if missing or unreadable."""
    path = Path(output_dir) / METRICS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def outputs_complete(output_dir: Path, parameters: Mapping[str, Any] | None = None) -> bool:
    """Whether ``metrics.json`` reads, its artifacts exist and its parameters equal
    ``parameters``' (a value equals its one-item list: notebooks 05, 07, 10 once took them)."""
    metrics = read_metrics(output_dir)
    if metrics is None:
        return False
    names = [*metrics.get("tables", {}).values(),
             *(name for files in metrics.get("figures", {}).values() for name in files)]
    if not all((Path(output_dir) / name).is_file() for name in names):
        return False
    recorded = metrics.get("parameters", {})
    parameters = dict(parameters or {})
    if isinstance(parameters.get("data_root"), Mapping) and isinstance(
            recorded.get("data_root"), Mapping):  # only the folders of the datasets it used
        used = {str(d).split(":")[0] for d in recorded.get("datasets") or []}
        recorded = {**recorded, "data_root": {k: v for k, v in recorded["data_root"].items()
                                              if k in used}}
        parameters["data_root"] = {k: v for k, v in parameters["data_root"].items() if k in used}
    for key, value in parameters.items():
        if key in recorded:
            old, new = _plain(recorded[key]), _plain(value)
            if not (old == new or [old] == new or old == [new]):
                logger.info("%s: parameter %s changed (%r -> %r)", output_dir, key,
                            recorded[key], value)
                return False
    return True
