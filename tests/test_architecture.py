"""The package's architecture holds: the import-linter contract in pyproject.toml (layers
that every import points down, no circles at any depth), no module reaching for the package
root, and a top floor small enough to read."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import grimp
import pytest

from tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(cwd: Path, *, pythonpath: Path | None = None) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(pythonpath or cwd)}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_the_import_contract_holds():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_the_contract_fails_on_a_lazy_import_circle(tmp_path):
    """A circle closed by an import inside a function (how every loop of e08b4a3 was
    closed) breaks the contract, as a module-level one does."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "low.py").write_text(textwrap.dedent("""\
        def helper():
            from pkg.high import thing  # lazy, still an import

            return thing
        """))
    (package / "high.py").write_text("from pkg.low import helper\n\nthing = 1\n")
    (tmp_path / ".importlinter").write_text(textwrap.dedent("""\
        [importlinter]
        root_package = pkg

        [importlinter:contract:acyclic]
        name = No circles
        type = acyclic_siblings
        ancestors = pkg
        """))
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "No cycles are allowed in pkg" in result.stdout


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("fusnet", cache_dir=None)


def test_no_module_imports_the_package_root(graph):
    importers = graph.find_modules_that_directly_import("fusnet")
    assert importers == set(), f"import fusnet.version instead of the root: {sorted(importers)}"


def test_the_top_floor_is_small_and_the_papers_method_is_not_a_baseline(graph):
    top = sorted(p.stem for p in (REPO_ROOT / "fusnet").glob("*.py"))
    assert len(top) <= 12, top
    assert "fusnet.methods.multifusnet" in graph.modules
    assert not any(m.startswith("fusnet.baselines") for m in graph.modules)
