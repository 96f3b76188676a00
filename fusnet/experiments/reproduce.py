"""``fusnet reproduce``: execute the notebooks of a profile with papermill, resumably: the
executed copy goes beside the outputs, complete outputs (same parameters and recipe) skip a
notebook unless ``force``, and inside one finished runs are read back.
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


@dataclass
class NotebookResult:
    """What happened to one notebook: ``status`` is "ran", "skipped" or "failed"."""

    notebook: str
    status: str
    seconds: float
    output_dir: Path
    error: str | None = None


def select_notebooks(names: Sequence[str] | None = None) -> list[str]:
    """Notebook names from full names or unique prefixes (``"01"``), in run order."""
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


def recorded_parameters(params: Mapping[str, Any]) -> dict[str, Any]:
    """Parameters with their recipe, as ``metrics.json`` records them (a new recipe reruns)."""
    if "changes" not in params:  # a notebook that trains nothing has no recipe
        return dict(params)
    return {**params, **recipe(params["profile"], params["changes"])}


def _declared_parameters(path: Path) -> set[str]:
    """Names in a notebook's ``parameters`` cell."""
    import papermill

    return set(papermill.inspect_notebook(str(path)))


def _execute(path: Path, output: Path, parameters: dict[str, Any], kernel: str, cwd: Path) -> None:
    import papermill

    papermill.execute_notebook(
        str(path), str(output), parameters=parameters, kernel_name=kernel, cwd=str(cwd),
        progress_bar=False, log_output=False,
        store_widget_state=False,  # progress-bar widgets: kilobytes each, nothing to read
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
    """Run the notebooks (names or prefixes; default all) of ``profile`` in order, with
    ``changes`` (``notebook_parameters``); a failing one is logged and recorded, and the next
    runs. ``output_root``: from the current directory; ``execute``: runs one (papermill)."""
    names = select_notebooks(notebooks)
    root = Path(output_root).expanduser().resolve()
    results = []
    for i, name in enumerate(names, 1):
        params = notebook_parameters(profile, name, **{**dict(changes or {}), "output_root": str(root)})
        source = notebook_dir / f"{name}.ipynb"
        unknown = set(params) - _declared_parameters(source)
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
    rows = [("notebook", "status", "seconds", "outputs")] + [
        (r.notebook, r.status, f"{r.seconds:.0f}", str(relative_to_or_as_is(r.output_dir, base)))
        for r in results]
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
