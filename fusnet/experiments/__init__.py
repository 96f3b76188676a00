"""The paper's experiments as library code the notebooks call (``notebooks/*.ipynb``).

Modules, lowest first; each imports only modules before it (lazy imports included):
``stats`` < ``recipes`` (each profile's training recipe) < ``profiles`` (every notebook's
parameters) < ``config`` (:class:`ExperimentConfig`) < ``paper_tables`` (Tables 3-7) <
``runs`` (shared, trained once) < ``tables`` < ``baselines`` (notebook 09) < ``regimes``
(notebook 11) < ``executor`` < ``plots`` < ``outputs`` < ``examples`` (Fig. 12) < ``cam``
(Fig. 10) < ``search_photos`` (notebook 10) < ``verdicts`` (the paper's claims) <
``summary`` (the README's tables) < ``reproduce`` (``fusnet reproduce``).
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
