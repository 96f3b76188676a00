"""The paper's experiments as library code the notebooks call (``notebooks/*.ipynb``).

- :mod:`~fusnet.experiments.config`: :class:`ExperimentConfig`, the typed form of a
  notebook's parameters (its profile's recipe, changed), and where its outputs go;
- :mod:`~fusnet.experiments.runs`: training runs shared by the notebooks, trained once;
- :mod:`~fusnet.experiments.executor`: trains a list of runs here or in parallel child
  processes, and the learning-rate sweep on the validation split;
- :mod:`~fusnet.experiments.tables`: our results beside the paper's Tables 3-7;
- :mod:`~fusnet.experiments.outputs`: CSV tables, PNG/SVG figures, ``metrics.json``;
- :mod:`~fusnet.experiments.cam`: Grad-CAM of the fusion branch (Fig. 10);
- :mod:`~fusnet.experiments.examples`: retrieval examples (Fig. 12);
- :mod:`~fusnet.experiments.reproduce`: ``fusnet reproduce``, the papermill runner;
- :mod:`~fusnet.experiments.recipes`: each profile's training recipe (smoke, CPU, paper)
  and the training regimes;
- :mod:`~fusnet.experiments.profiles`: every notebook's parameters under each profile.

The figures' plotting is in :mod:`fusnet.experiments.plots`.
"""

from fusnet.experiments.config import DatasetSpec, ExperimentConfig, check_choices, single
from fusnet.experiments.outputs import NotebookOutputs, outputs_complete, read_metrics
from fusnet.experiments.runs import (
    ABLATION_CONFIGURATIONS,
    ABLATION_LINES,
    RunRecord,
    RunRequest,
    ablation_variants,
    attention_variants,
    ensure_run,
    ensure_runs,
    grid,
)

__all__ = [
    "ABLATION_CONFIGURATIONS",
    "ABLATION_LINES",
    "DatasetSpec",
    "ExperimentConfig",
    "NotebookOutputs",
    "RunRecord",
    "RunRequest",
    "ablation_variants",
    "attention_variants",
    "check_choices",
    "ensure_run",
    "ensure_runs",
    "grid",
    "outputs_complete",
    "read_metrics",
    "single",
]
