"""The paper's experiments as library code the notebooks call (``notebooks/*.ipynb``).

Modules, lowest first; each imports only modules before it (lazy imports included):
``stats`` (t-tests) < ``recipes`` (each profile's training recipe, the regimes) <
``profiles`` (every notebook's parameters) < ``config`` (:class:`ExperimentConfig`) <
``paper_tables`` (the paper's Tables 3-7) < ``runs`` (shared runs, trained once) <
``tables`` (ours beside the paper's) < ``baselines`` (notebook 09's grid and tests) <
``regimes`` (notebook 11's) < ``executor`` (runs here or in child processes) <
``plots`` < ``outputs`` (CSV, PNG/SVG, ``metrics.json``) < ``examples`` (Fig. 12) <
``cam`` (Fig. 10) < ``search_photos`` (notebook 10) < ``verdicts`` (the paper's claims
against the runs) < ``summary`` (the README's tables) < ``reproduce`` (``fusnet
reproduce``, papermill).
"""

from fusnet.experiments.config import DatasetSpec, ExperimentConfig, check_choices, single
from fusnet.experiments.executor import ensure_runs
from fusnet.experiments.outputs import NotebookOutputs, outputs_complete, read_metrics
from fusnet.experiments.runs import (
    ABLATION_CONFIGURATIONS,
    ABLATION_LINES,
    RunRecord,
    RunRequest,
    ablation_variants,
    attention_variants,
    ensure_run,
    grid,
)

__all__ = [
    "ABLATION_CONFIGURATIONS", "ABLATION_LINES", "DatasetSpec", "ExperimentConfig",
    "NotebookOutputs", "RunRecord", "RunRequest", "ablation_variants", "attention_variants",
    "check_choices", "ensure_run", "ensure_runs", "grid", "outputs_complete", "read_metrics",
    "single",
]
