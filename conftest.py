"""pytest set-up shared by ``tests/`` and the notebooks that ``--nbval-lax`` checks.

- ``$FUSNET_OUTPUT_ROOT`` points at a temporary folder for the session (unless set), so
  notebooks executed by the tests (``tests/test_notebooks.py`` with papermill, then
  nbval on ``notebooks/``) never write into the repository's ``results/``; nbval's
  runs of the notebooks read back the training runs the papermill test made.
- nbval's items get the ``notebook`` marker, so ``-m "not notebook"`` skips them too.
- The CPU kernels are capped at AVX2 (:data:`SAME_KERNELS`, from ``tests/same-kernels.env``,
  unless set), for this process and the notebook kernels it starts: the saved smoke outputs
  that nbval compares hold numbers that move with the kernels' vector width (on an AVX2
  machine a 12-bit smoke run's mAP is 0.4578 with PyTorch's AVX2 kernels, 0.4590 with its
  scalar ones; notebook 01 saved 45.3 on an earlier test machine, probably AVX-512, where
  this one computes 45.8), and the test machines differ. ``make notebooks`` saves them under the same caps (Makefile).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

SAME_KERNELS_FILE = Path(__file__).parent / "tests" / "same-kernels.env"
"""KEY=VALUE lines, ``#`` comments: also read by the Makefile's ``notebooks`` target."""
SAME_KERNELS = dict(
    line.split("=", 1) for line in SAME_KERNELS_FILE.read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
"""PyTorch's own, oneDNN's and MKL's kernels at AVX2 at most; read when torch first runs an op."""
for _name, _value in SAME_KERNELS.items():
    os.environ.setdefault(_name, _value)

_CREATED: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    # pyproject's --nbval-sanitize-with names a file at the repository root: find it from
    # any working directory.
    sanitize = getattr(config.option, "nbval_sanitize_with", None)
    if sanitize and not Path(sanitize).is_absolute():
        config.option.nbval_sanitize_with = str(config.rootpath / sanitize)
    if not os.environ.get("FUSNET_OUTPUT_ROOT"):
        root = Path(tempfile.mkdtemp(prefix="fusnet-test-results-"))
        _CREATED.append(root)
        os.environ["FUSNET_OUTPUT_ROOT"] = str(root)


def pytest_unconfigure(config: pytest.Config) -> None:
    for root in _CREATED:
        shutil.rmtree(root, ignore_errors=True)
        if os.environ.get("FUSNET_OUTPUT_ROOT") == str(root):
            del os.environ["FUSNET_OUTPUT_ROOT"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.nodeid.split("::", 1)[0].endswith(".ipynb"):
            item.add_marker(pytest.mark.notebook)
