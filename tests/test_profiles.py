"""Profiles and notebooks agree: same parameter names, smoke values are the cells' defaults."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from fusnet.errors import ConfigError
from fusnet.experiments import ExperimentConfig
from fusnet.profiles import NOTEBOOKS, PROFILES, notebook_parameters
from tests.conftest import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())["cells"]


def _parameters_cell(name: str) -> dict[str, object]:
    """The ``parameters`` cell's assignments, evaluated as literals."""
    cells = [c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(cells[0]["source"]))
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{name}: the parameters cell holds assignments only"
        values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def test_every_notebook_exists_in_every_profile():
    assert sorted(p.stem for p in NOTEBOOK_DIR.glob("*.ipynb")) == sorted(NOTEBOOKS)
    for profile in PROFILES.values():
        assert list(profile) == list(NOTEBOOKS)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_parameters_cell_defaults_are_the_smoke_profile(notebook):
    assert _parameters_cell(notebook) == PROFILES["smoke"][notebook]


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_every_profile_sets_exactly_the_notebooks_parameters(profile, notebook):
    assert set(PROFILES[profile][notebook]) == set(_parameters_cell(notebook))


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_cells_are_thin_and_checked(notebook):
    cells = [c for c in _cells(notebook) if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    # The cell after the parameters builds the typed config.
    assert "ExperimentConfig(" in sources[1]
    assert any(s.startswith("# NBVAL_CHECK_OUTPUT") for s in sources)
    assert any("write_metrics(" in s for s in sources)
    for source in sources:  # no function or class definitions: logic lives in fusnet
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]


_RECIPE = ("profile", "datasets", "bits", "data_root", "backbone", "pretrained", "epochs",
           "image_size", "mode", "device", "seed", "threads", "output_root", "overrides")


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if n != "08_proxy_codes"])
def test_every_profile_builds_a_valid_config(profile, notebook):
    params = PROFILES[profile][notebook]
    kwargs = {k: params[k] for k in _RECIPE if k in params}
    if "dataset" in params:
        kwargs["datasets"] = [params["dataset"]]
    if isinstance(kwargs["bits"], int):
        kwargs["bits"] = [kwargs["bits"]]
    exp = ExperimentConfig(notebook=notebook, **kwargs)
    for spec in exp.dataset_specs:
        if profile == "paper":  # the paper's data come from --data-root
            with pytest.raises(ConfigError, match="--data-root"):
                exp.run_config(spec.name, exp.bits[0])
        else:
            config = exp.run_config(spec.name, exp.bits[0])
            assert config.mode == params["mode"] and config.eval_every == 1


def test_cpu_profile_points_at_the_shared_photos(shared_data):
    params = PROFILES["cpu"]["01_main_results"]
    exp = ExperimentConfig(notebook="01_main_results", profile="cpu", datasets=params["datasets"],
                           data_root=params["data_root"])
    # Both sides resolved: ../shared may be reached through a symbolic link.
    assert Path(exp.run_config("cub200", 12).data.root) == (shared_data / "cub100").resolve()


def test_notebook_parameters_copies_and_applies_known_changes():
    params = notebook_parameters("paper", "01_main_results", data_root="/data", unknown=1)
    assert params["data_root"] == "/data" and "unknown" not in params
    assert PROFILES["paper"]["01_main_results"]["data_root"] is None
    params["overrides"]["x"] = 1
    assert "x" not in PROFILES["paper"]["01_main_results"]["overrides"]
    assert "data_root" not in notebook_parameters("smoke", "08_proxy_codes", data_root="/d")
    with pytest.raises(ConfigError, match="profile"):
        notebook_parameters("laptop", "01_main_results")
    with pytest.raises(ConfigError, match="notebook"):
        notebook_parameters("smoke", "09_extra")
