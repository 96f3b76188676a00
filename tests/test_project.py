"""The project's own files agree with each other (dependencies, README, CI)."""

from __future__ import annotations

import re

import tomllib
import yaml

from tests.conftest import REPO_ROOT


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_names() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names


def _environment_names() -> set[str]:
    env = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    names: set[str] = set()
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            names |= {_name(r) for r in entry["pip"] if not r.startswith("-e")}
        else:
            names.add(_name(entry))
    return names - {"python", "pip"}


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    assert _environment_names() == _pyproject_names()


def _lock_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "requirements-lock.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements-lock.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version.strip()
    return pins


def test_lock_file_pins_every_dependency_and_the_makefile_uses_it():
    pins = _lock_pins()
    assert _pyproject_names() <= set(pins), _pyproject_names() - set(pins)
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "-c requirements-lock.txt" in makefile
    torch_pins = dict(re.findall(r"(torch|torchvision)==([\w.]+)", makefile))
    assert torch_pins == {"torch": pins["torch"], "torchvision": pins["torchvision"]}


def test_ci_runs_the_readme_test_command():
    readme = (REPO_ROOT / "README.md").read_text()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, flags=re.M)


def test_tests_and_make_notebooks_cap_the_kernels_alike():
    import shutil
    import subprocess

    import pytest

    from conftest import SAME_KERNELS  # the root one (tests/conftest.py is another)

    assert SAME_KERNELS["ATEN_CPU_CAPABILITY"] == "avx2" and len(SAME_KERNELS) == 3
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    dry = subprocess.run(["make", "-n", "-o", "venv", "notebooks"], cwd=REPO_ROOT, text=True,
                         capture_output=True, check=True).stdout
    command = next(line for line in dry.splitlines() if "nbconvert" in line)
    assert command.startswith("env " + " ".join(f"{k}={v}" for k, v in SAME_KERNELS.items()))


def test_cli_help_and_data_commands(capsys, cub100_root):
    import pytest

    from fusnet.cli import main

    with pytest.raises(SystemExit) as done:
        main(["train", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--dataset", "--bits", "--no-cascade", "--attention", "--resume", "--config"):
        assert flag in text
    assert main(["data", "list"]) == 0
    assert "cub200" in capsys.readouterr().out.split()
    assert main(["data", "verify", "cub200", "--root", str(cub100_root)]) == 0
    out = capsys.readouterr().out
    assert "train: 2999 images, 100 classes" in out and "test: 2903 images" in out
    # a download that cannot happen is a runtime error: status 1, one line naming the dataset
    assert main(["data", "download", "nabirds", "--root", "/nonexistent-fusnet-root"]) == 1
    assert "nabirds" in capsys.readouterr().err.lower()


def test_the_readme_results_block_is_the_committed_results_summary():
    import pytest

    from fusnet.experiments.summary import headline_markdown, with_results_block

    readme = (REPO_ROOT / "README.md").read_text()
    # Regenerate with: python -m fusnet.experiments.summary --profile cpu --readme README.md
    assert with_results_block(readme, "cpu", headline_markdown("cpu")) == readme
    with pytest.raises(ValueError, match="results:smoke"):
        with_results_block(readme, "smoke", "")


def test_git_dirty_means_changed_code_not_changed_results(tmp_path):
    """A notebook that `fusnet reproduce` executes rewrites its copy under results/ while
    its runs train: that must not mark them dirty; a changed tracked code file must."""
    import subprocess

    from fusnet.runtime import code_version

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    (tmp_path / "fusnet").mkdir()
    (tmp_path / "results").mkdir()
    (tmp_path / "fusnet" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "executed.ipynb").write_text("{}\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "start")
    assert code_version(tmp_path)["git_dirty"] is False
    (tmp_path / "results" / "executed.ipynb").write_text('{"cells": []}\n')
    (tmp_path / "results" / "new-run").mkdir()
    assert code_version(tmp_path)["git_dirty"] is False  # outputs only
    (tmp_path / "fusnet" / "code.py").write_text("x = 2\n")
    assert code_version(tmp_path)["git_dirty"] is True
