"""Every notebook, executed with papermill on the smoke profile: outputs and recorded values.

One session-wide run of ``fusnet.experiments.reproduce.reproduce("smoke")`` into
``$FUSNET_OUTPUT_ROOT`` (a temporary folder, ``conftest.py``); the checks then read
what each notebook recorded. nbval (``--nbval-lax notebooks``) re-executes the
committed notebooks afterwards and reads back the same training runs.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd
import pytest

from fusnet.experiments.profiles import NOTEBOOKS
from fusnet.experiments.reproduce import reproduce

pytestmark = pytest.mark.notebook


@pytest.fixture(scope="session")
def smoke(tmp_path_factory) -> dict:
    root = Path(os.environ.get("FUSNET_OUTPUT_ROOT") or tmp_path_factory.mktemp("results"))
    results = reproduce("smoke", output_root=root, force=True)
    return {"root": root, "results": {r.notebook: r for r in results}}


def _metrics(smoke: dict, notebook: str) -> dict:
    return json.loads((smoke["root"] / notebook / "smoke" / "metrics.json").read_text())


def _numbers(value, key=""):
    """(key, number) for every number in a nested JSON value."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _numbers(v, k)
    elif isinstance(value, list):
        for v in value:
            yield from _numbers(v, key)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield key, value


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_ran_and_wrote_its_artifacts(smoke, notebook):
    result = smoke["results"][notebook]
    assert result.status == "ran", result.error
    out = smoke["root"] / notebook / "smoke"
    assert (out / f"{notebook}.ipynb").is_file()
    metrics = _metrics(smoke, notebook)
    assert metrics["notebook"] == notebook and metrics["profile"] == "smoke"
    assert metrics["tables"] and metrics["figures"]
    for name in metrics["tables"].values():
        frame = pd.read_csv(out / name)
        assert len(frame) > 0, name
    for files in metrics["figures"].values():
        assert sorted(Path(f).suffix for f in files) == [".png", ".svg"]
        for f in files:
            assert (out / f).stat().st_size > 1000, f
    for run in metrics["runs"]:
        assert {"code", "weights", "seed", "device", "wall_seconds"} <= set(run["manifest"])
        assert (smoke["root"] / run["path"] / "codes.npz").is_file()


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_recorded_values_are_in_range(smoke, notebook):
    results = _metrics(smoke, notebook)["results"]
    numbers = list(_numbers(results))
    assert numbers
    for key, value in numbers:
        assert math.isfinite(value), key
        if key in ("map", "map_tie_aware", "val_map"):
            assert 0 <= value <= 100, (key, value)
        if key.startswith("precision@"):
            assert 0 <= value <= 1, (key, value)


def test_main_results_and_the_table4_check(smoke):
    results = _metrics(smoke, "01_main_results")["results"]
    assert sorted(r["bits"] for r in results["map"]) == [12, 24, 32, 48]
    check = results["table4_check"]
    assert (check["cells"], check["reproduced"]) == (16, 15)  # the AMGH ci_upper misprint
    assert [c["column"] for c in check["not_reproduced"]] == ["ci_upper"]


def test_ablation_and_attention(smoke):
    ablation = _metrics(smoke, "03_ablation")["results"]
    assert {r["line"] for r in ablation["map"]} == {1, 2, 3, 4, 5}
    assert ablation["table7_check"] == {"cells": 36, "reproduced": 36}
    assert [r["n"] for r in ablation["table7_replication"]] == [2, 2, 2, 2]
    attention = _metrics(smoke, "04_attention")["results"]
    assert {r["attention"] for r in attention["map"]} == {"eca", "se", "cbam", "coord", "psa"}


def test_cam_convergence_examples_and_codes(smoke):
    cam = _metrics(smoke, "05_cam")["results"]
    assert len(cam["images"]) == 3 and len(cam["mean_activation"]) == 9
    assert all(0 <= v <= 1 for v in cam["mean_activation"].values())
    convergence = _metrics(smoke, "06_convergence")["results"]
    assert convergence["epochs"] == 3 and len(convergence["val_map_last_epoch"]) == 4
    examples = _metrics(smoke, "07_retrieval_examples")["results"]
    assert set(examples["precision_of_shown_queries"][0]) == {"dataset", "precision@5", "precision@10"}
    codes = _metrics(smoke, "08_proxy_codes")["results"]["codes"]
    assert [c["bits"] for c in codes] == [12, 24, 32, 48]
    assert all(c["collisions"] == 0 and c["unique_codes"] == 6 for c in codes)


def test_baselines_side_by_side(smoke):
    results = _metrics(smoke, "09_baselines")["results"]
    methods = ["multifusnet", "dpsh", "hashnet", "adsh", "semicon", "exchnet"]
    assert [r["method"] for r in results["mean_std"]] == methods
    assert all(r["n"] == 2 for r in results["mean_std"])  # two seeds in the smoke profile
    assert {(r["method"], r["seed"]) for r in results["map"]} == {(m, s) for m in methods for s in (0, 1)}
    learned = {r["method"] for r in results["map"] if r["database"].startswith("learned codes V")}
    assert learned == {"adsh", "semicon", "exchnet"}
    tests = results["paired_ttests"]
    assert [t["comparison"] for t in tests] == methods[1:] and all(t["n"] == 2 for t in tests)


def test_notebooks_share_runs(smoke):
    def paths(notebook):
        return {(r["dataset"], r["bits"], r["label"]): r["path"] for r in _metrics(smoke, notebook)["runs"]}

    main = paths("01_main_results")
    full48 = main[("synthetic", 48, "full")]
    assert paths("05_cam")[("synthetic", 48, "full")] == full48
    assert paths("07_retrieval_examples")[("synthetic", 48, "full")] == full48
    assert paths("06_convergence") == main
    assert paths("03_ablation")[("synthetic", 48, "cascading+fusion+attention")] == full48
    assert paths("04_attention")[("synthetic", 48, "eca")] == full48
    # Notebook 09's Multi-FusNet seed-0 run is the main results' run.
    seed0 = [r["path"] for r in _metrics(smoke, "09_baselines")["runs"]
             if r["label"] == "multifusnet" and r["manifest"]["seed"] == 0]
    assert seed0 == [main[("synthetic", 12, "full")]]


def test_a_second_run_resumes_where_it_stopped(smoke):
    again = reproduce("smoke", output_root=smoke["root"])
    assert [r.status for r in again] == ["skipped"] * len(NOTEBOOKS)


def test_headline_markdown_reads_every_table_from_the_notebooks(smoke):
    from fusnet.experiments.summary import SECTIONS, headline_markdown

    text = headline_markdown("smoke", root=smoke["root"])
    for notebook, title, _ in SECTIONS:
        assert f"**{title}**" in text and f"{notebook}.ipynb" in text
    main = {r["bits"]: r["map"] for r in _metrics(smoke, "01_main_results")["results"]["map"]}
    row = "| synthetic | full | " + " | ".join(f"{main[k]:.2f}" for k in (12, 24, 32, 48)) + " |"
    first = text.split("**", 3)[2]  # the main results' section, up to the next title
    assert row in first
    baselines = _metrics(smoke, "09_baselines")["results"]["mean_std"][1]
    assert f"| {baselines['method']} | {baselines['mean']:.2f} ± {baselines['std']:.2f} (2) |" in text
    assert "no outputs" in headline_markdown("smoke", root=smoke["root"] / "elsewhere")


def test_search_your_images_builds_adds_and_searches(smoke):
    results = _metrics(smoke, "10_search_your_images")["results"]
    assert results["gallery_size"] == 80 and results["skipped"] == 0  # 60 indexed + 20 added
    assert results["queries"] == 4
    hits = pd.read_csv(smoke["root"] / "10_search_your_images" / "smoke" / "hits.csv")
    assert len(hits) == 4 * 5 and set(hits["rank"]) == {1, 2, 3, 4, 5}
    assert not set(hits["query"]) & set(hits["path"])  # queries are new to the gallery


def test_regimes_trains_both_configurations_in_each_regime(smoke):
    from fusnet.experiments.profiles import PROFILES

    params = PROFILES["smoke"]["11_regimes"]
    metrics = _metrics(smoke, "11_regimes")
    runs = metrics["results"]["runs"]
    expected = {(regime, c) for regime in params["regimes"] for c in params["configurations"]}
    assert {(r["regime"], r["configuration"]) for r in runs} == expected
    assert set(metrics["results"]["full_minus_baseline"]) == {
        f"synthetic/12/{regime}" for regime in params["regimes"]}
    modes = {json.loads((smoke["root"] / r["path"] / "config.json").read_text())["mode"]
             for r in metrics["runs"]}
    assert modes == {"frozen", "top", "full"}
