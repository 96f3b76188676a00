"""``fusnet reproduce``: execute the notebooks of a profile with papermill, resumably.

Each notebook runs with its profile's parameters (:mod:`fusnet.experiments.profiles`) and its
executed copy goes to ``<output root>/<notebook>/<profile>/<notebook>.ipynb``,
beside the tables, figures and ``metrics.json`` the notebook writes there. A
notebook whose outputs are complete (``metrics.json``, every artifact it lists,
the same parameters and recipe) is skipped unless ``force``; inside a notebook,
finished training runs are read back and interrupted ones resume, so running the
command again after an interruption continues where it stopped.

The kernel is ``python3``: ipykernel installs that kernelspec into the virtual
environment, and jupyter_client starts it with the running interpreter, so the
notebooks see the same packages as the command.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fusnet.errors import ConfigError
from fusnet.experiments.config import REPO_ROOT, relative_to_or_as_is
from fusnet.experiments.outputs import outputs_complete
from fusnet.experiments.profiles import NOTEBOOKS, notebook_parameters
from fusnet.experiments.recipes import recipe

logger = logging.getLogger(__name__)

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
DEFAULT_KERNEL = "python3"

Executor = Callable[..., Any]
"""``papermill.execute_notebook``'s signature (replaceable in tests)."""


@dataclass
class NotebookResult:
    """What happened to one notebook: ``status`` is "ran", "skipped" or "failed"."""

    notebook: str
    status: str
    seconds: float
    output_dir: Path
    error: str | None = None


def select_notebooks(names: Sequence[str] | None = None) -> list[str]:
    """Notebook names from full names or unique prefixes (``"01"``, ``"03_abl"``), in run order.

    Raises:
        ConfigError: a name matching no notebook, or several.
    """
    if not names:
        return list(NOTEBOOKS)
    chosen = set()
    for name in names:
        stem = Path(name).stem if name.endswith(".ipynb") else name
        matches = [n for n in NOTEBOOKS if n == stem] or [n for n in NOTEBOOKS if n.startswith(stem)]
        if len(matches) != 1:
            raise ConfigError(
                f"notebook {name!r} matches {matches or 'nothing'}; choose from {list(NOTEBOOKS)}"
            )
        chosen.add(matches[0])
    return [n for n in NOTEBOOKS if n in chosen]


def declared_parameters(path: Path) -> set[str]:
    """Names in a notebook's ``parameters`` cell (``papermill.inspect_notebook``)."""
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def recorded_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """A notebook's papermill parameters with the recipe they resolve to, as the notebook
    records them in ``metrics.json`` (``ExperimentConfig.parameters``): so a change to
    the profile's recipe, not only to the notebook's own parameters, reruns it."""
    if "changes" not in params:  # a notebook that trains nothing has no recipe
        return dict(params)
    return {**params, **recipe(params["profile"], params["changes"])}


def _execute(path: Path, output: Path, parameters: dict[str, Any], kernel: str, cwd: Path) -> None:
    import papermill

    papermill.execute_notebook(
        str(path), str(output), parameters=parameters, kernel_name=kernel, cwd=str(cwd),
        progress_bar=False, log_output=False,
    )


def reproduce(
    profile: str,
    notebooks: Sequence[str] | None = None,
    output_root: str | Path = "results",
    force: bool = False,
    kernel: str = DEFAULT_KERNEL,
    changes: Mapping[str, Any] | None = None,
    notebook_dir: Path = NOTEBOOK_DIR,
    execute: Callable[[Path, Path, dict[str, Any], str, Path], None] = _execute,
) -> list[NotebookResult]:
    """Run the notebooks of ``profile`` in order; return what happened to each.

    Args:
        profile: a key of ``fusnet.experiments.profiles.PROFILES``.
        notebooks: names or prefixes (default: all, in order).
        output_root: results folder (relative: from the current directory).
        force: run notebooks whose outputs are complete too.
        kernel: Jupyter kernel name.
        changes: parameters replaced in every notebook that has them, recipe names
            (``data_root``, ``device``) in its ``changes`` (``notebook_parameters``).
        notebook_dir: where the ``.ipynb`` files are.
        execute: runs one notebook (papermill by default).

    Returns:
        One :class:`NotebookResult` per notebook. A failing notebook is logged and
        recorded, and the next one runs.
    """
    names = select_notebooks(notebooks)
    root = Path(output_root).expanduser().resolve()
    results = []
    for i, name in enumerate(names, 1):
        params = notebook_parameters(profile, name, **{**dict(changes or {}), "output_root": str(root)})
        source = notebook_dir / f"{name}.ipynb"
        unknown = set(params) - declared_parameters(source)
        if unknown:
            raise ConfigError(f"{source.name} has no parameter(s) {sorted(unknown)}")
        out_dir = root / name / profile
        if not force and outputs_complete(out_dir, recorded_parameters(params)):
            logger.info("[%d/%d] %s: outputs complete, skipped (--force reruns)", i, len(names), name)
            results.append(NotebookResult(name, "skipped", 0.0, out_dir))
            continue
        logger.info("[%d/%d] %s (%s profile) -> %s", i, len(names), name, profile, out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        try:
            execute(source, out_dir / f"{name}.ipynb", params, kernel, notebook_dir)
        except Exception as exc:  # a failing notebook must not stop the others
            seconds = time.perf_counter() - start
            message = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
            logger.error("%s failed after %.0f s: %s (executed copy: %s)", name, seconds, message,
                         out_dir / f"{name}.ipynb")
            results.append(NotebookResult(name, "failed", seconds, out_dir, message))
            continue
        seconds = time.perf_counter() - start
        logger.info("%s done in %.0f s", name, seconds)
        results.append(NotebookResult(name, "ran", seconds, out_dir))
    return results


def summary_table(results: Sequence[NotebookResult], root: str | Path | None = None) -> str:
    """A plain-text table: notebook, status, seconds, output folder (and any error)."""
    base = Path(root).expanduser().resolve() if root is not None else None
    rows = [("notebook", "status", "seconds", "outputs")]
    for r in results:
        out = relative_to_or_as_is(r.output_dir, base)
        rows.append((r.notebook, r.status, f"{r.seconds:.0f}", str(out)))
    widths = [max(len(row[c]) for row in rows) for c in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"{r.notebook}: {r.error}" for r in results if r.error]
    total = sum(r.seconds for r in results)
    counts = {s: sum(r.status == s for r in results) for s in ("ran", "skipped", "failed")}
    lines.append(f"{counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed "
                 f"in {total:.0f} s")
    return "\n".join(lines)
