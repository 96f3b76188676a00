"""pytest set-up shared by ``tests/`` and the notebooks that ``--nbval-lax`` checks.

- ``$FUSNET_OUTPUT_ROOT`` points at a temporary folder for the session (unless set), so
  notebooks executed by the tests (``tests/test_notebooks.py`` with papermill, then
  nbval on ``notebooks/``) never write into the repository's ``results/``; nbval's
  runs of the notebooks read back the training runs the papermill test made.
- nbval's items get the ``notebook`` marker, so ``-m "not notebook"`` skips them too.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

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
