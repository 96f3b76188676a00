"""The notebooks' library: typed parameters, shared runs, tables, outputs, examples, runner."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import fusnet.train.loop
from fusnet.cli import main as cli_main
from fusnet.config import RunConfig, run_fields
from fusnet.errors import ConfigError
from fusnet.eval.retrieval import pack_codes
from fusnet.experiments import (
    ABLATION_CONFIGURATIONS,
    ExperimentConfig,
    NotebookOutputs,
    RunRequest,
    ablation_variants,
    attention_variants,
    check_choices,
    ensure_run,
    ensure_runs,
    grid,
    outputs_complete,
    tables,
)
from fusnet.experiments import examples as ex
from fusnet.experiments import reproduce as rep
from fusnet.experiments.paper_tables import load_table, recompute_table4, recompute_table7
from fusnet.experiments.runs import run_dir, run_hash, run_identity
from fusnet.experiments.stats import paired_ttest
from fusnet.train.checkpoints import RESUMABLE_DIFFERENCES
from tests.conftest import REPO_ROOT


def _exp(tmp_path: Path, **changes) -> ExperimentConfig:
    params = {
        "notebook": "01_main_results",
        "profile": "test",
        "datasets": ["synthetic"],
        "bits": [12, 48],
        "backbone": "resnet18",
        "pretrained": "none",
        "epochs": 1,
        "image_size": 64,
        "mode": "frozen",
        "device": "cpu",
        "output_root": str(tmp_path / "results"),
        "overrides": {"data.synthetic_classes": 4},
    }
    return ExperimentConfig(**{**params, **changes})


# --- ExperimentConfig ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"datasets": ["cub"]}, "unknown loader"),
        ({"datasets": ["flowers5:folders"]}, "unknown loader"),
        ({"datasets": ["synthetic", "synthetic"]}, "repeated"),
        ({"backbone": "resnet5O"}, "unknown backbone"),
        ({"mode": "half"}, "mode"),
        ({"bits": [12, 0]}, "positive"),
        ({"overrides": {"model.widht": 3}}, "unknown model config key"),
        ({"threads": 0}, "threads"),
    ],
)
def test_a_wrong_parameter_fails_at_once(tmp_path, changes, match):
    with pytest.raises(ConfigError, match=match):
        _exp(tmp_path, **changes)


def test_folders_and_roots(tmp_path, monkeypatch):
    exp = _exp(tmp_path, datasets=["cub200", "flowers5:imagefolder"], data_root="data")
    assert exp.output_dir == tmp_path / "results" / "01_main_results" / "test"
    assert exp.runs_dir == tmp_path / "results" / "runs" / "test"
    assert exp.cache_dir == tmp_path / "results" / "cache"
    monkeypatch.setenv("FUSNET_CACHE_DIR", str(tmp_path / "c"))
    assert exp.cache_dir == tmp_path / "c"
    repo = Path(fusnet.__file__).resolve().parents[1]
    assert exp.dataset_root("flowers5") == str(repo / "data" / "flowers5")  # from the repo root
    assert exp.dataset_root("flowers5", resolve=False) == "data/flowers5"
    config = exp.run_config("flowers5", 24, **{"model.attention": "se"})
    assert (config.data.dataset, config.model.bits, config.model.attention) == ("imagefolder", 24, "se")
    mapped = _exp(tmp_path, datasets=["cub200"], data_root={"cub200": "/x/cub"})
    assert mapped.dataset_root("cub200") == "/x/cub"
    with pytest.raises(ConfigError, match="data_root"):
        _exp(tmp_path, datasets=["cub200"]).dataset_root("cub200")
    assert _exp(tmp_path).dataset_root("synthetic") is None


def test_output_root_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FUSNET_OUTPUT_ROOT", str(tmp_path / "env"))
    assert _exp(tmp_path, output_root=None).root == tmp_path / "env"


def test_check_choices():
    assert check_choices("attentions", ["se", "eca"], {"eca": 1, "se": 2}) == ("se", "eca")
    assert check_choices("target", "hash", ("hash", "class")) == ("hash",)
    with pytest.raises(ConfigError, match="unknown"):
        check_choices("attentions", ["sse"], {"se": 1})
    with pytest.raises(ConfigError, match="repeated"):
        check_choices("attentions", ["se", "se"], {"se": 1})


# --- runs ----------------------------------------------------------------------------------


def test_a_run_is_named_by_what_changes_its_result(tmp_path):
    exp = _exp(tmp_path)
    base = exp.run_config("synthetic", 12)
    assert run_hash(base) == run_hash(base.replace(device="cuda", output_dir="elsewhere"))
    assert run_hash(base) != run_hash(base.replace(**{"model.bits": 48}))
    # The full model under its Table 6 and Fig. 9 names is the same run.
    full = ablation_variants(["cascading+fusion+attention"])["cascading+fusion+attention"]
    assert run_hash(base.replace(**full)) == run_hash(base)
    assert run_hash(base.replace(**attention_variants(["eca"])["eca"])) == run_hash(base)
    assert run_hash(base.replace(**attention_variants(["se"])["se"])) != run_hash(base)
    # Named by what differs from the defaults: a field added later with a default keeps names.
    identity = run_identity(base)
    assert identity["model.bits"] == 12 and "model.attention" not in identity
    assert "output_dir" not in identity and "device" not in identity


def test_identity_and_resumable_fields_come_from_the_config_metadata():
    where = {"output_dir", "cache_dir", "device", "data.num_workers", "data.eval_batch_size"}
    assert run_fields(identity=False) == where
    # The checkpoint check reads the same metadata: those, and eval_every, may change on resume.
    assert RESUMABLE_DIFFERENCES == run_fields(resumable=True) == where | {"eval_every"}
    assert run_fields(identity=False, resumable=False) == set()
    assert {"model.bits", "data.root", "seed", "method"} <= run_fields(identity=True)


def test_every_committed_run_keeps_its_folder_name():
    """``results/runs/<profile>/<dataset>/<name>`` is ``run_dir`` of its ``config.json``.

    The data folder that named it is the config's, as its checkout wrote it: relative to
    that checkout (``output_dir`` less the run's path in the repository), or, where that
    checkout reached the data through a link (the config holds the resolved folder), the
    profile's data folder as its recipe gives it.
    """
    from fusnet.experiments.recipes import RECIPES

    configs = sorted((REPO_ROOT / "results" / "runs").glob("**/config.json"))
    if not configs:
        pytest.skip("no committed runs in this checkout")
    renamed = []
    for path in configs:
        folder = path.parent
        raw = json.loads(path.read_text())
        inside = folder.relative_to(REPO_ROOT).parts
        written = Path(raw["output_dir"]).parts
        assert written[-len(inside):] == inside, path
        checkout = Path(*written[: -len(inside)])
        root = raw["data"]["root"]
        data_root = None if root is None else os.path.relpath(root, checkout)
        config = RunConfig.from_dict(raw)
        named = run_dir(folder.parents[1], folder.parent.name, config, data_root)
        roots = RECIPES.get(folder.parents[1].name, {}).get("data_root")
        profile_root = roots.get(folder.parent.name) if isinstance(roots, dict) else None
        if named != folder and profile_root is not None:
            named = run_dir(folder.parents[1], folder.parent.name, config, profile_root)
        if named != folder:
            renamed.append(f"{folder.relative_to(REPO_ROOT)} -> {named.name}")
    assert not renamed, "\n".join(renamed)


def test_grid_and_variants():
    requests = grid(["a", "b"], [12, 48], ablation_variants(ABLATION_CONFIGURATIONS))
    assert len(requests) == 2 * 2 * 5
    assert requests[0].changes == {"model.cascade": False, "model.fusion": False,
                                   "model.transformer": False}
    assert [r.label for r in grid(["a"], [12])] == ["full"]


def _fake_train(calls: list):
    def train(config, resume=False):
        calls.append((config, resume))
        out = Path(config.output_dir)
        (out / "checkpoints").mkdir(parents=True, exist_ok=True)
        (out / "checkpoints" / "last.pt").write_text("x")
        metrics = {"map_index_ties": 0.5, "map_tie_aware": 0.25, "selection": {"epoch": 1},
                   "history": [{"epoch": 1, "loss": 1.0, "val_map": 0.4, "seconds": 1.0}]}
        (out / "metrics.json").write_text(json.dumps(metrics))
        (out / "manifest.json").write_text(json.dumps({"seed": config.seed}))

    return train


def test_ensure_run_trains_once_then_reads_back(tmp_path, monkeypatch):
    calls: list = []
    monkeypatch.setattr(fusnet.train.loop, "train", _fake_train(calls))
    exp = _exp(tmp_path)
    first = ensure_run(exp, RunRequest("synthetic", 12))
    assert len(calls) == 1 and calls[0][1] is True  # resume=True: continues an interrupted run
    assert first.path.parent == exp.runs_dir / "synthetic" and not first.reused
    assert not (first.path / "checkpoints").exists()
    again = ensure_runs(exp, [RunRequest("synthetic", 12, "cascading+fusion+attention",
                                         ablation_variants(["cascading+fusion+attention"])
                                         ["cascading+fusion+attention"])])
    assert len(calls) == 1 and again[0].reused and again[0].path == first.path
    assert again[0].map_index_ties == 0.5
    summary = again[0].summary(exp.root)
    assert summary["path"].startswith("runs/test/synthetic/") and summary["manifest"] == {"seed": 0}


# --- tables ---------------------------------------------------------------------------


def _ours(values: dict[tuple[str, int], float]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"dataset": d, "bits": b, "label": "full", "map": v, "map_tie_aware": v - 1}
         for (d, b), v in values.items()]
    )


def test_table3_comparison_and_improvements():
    t3 = load_table(3)
    ours = _ours({("cub200", 12): 60.0, ("cub200", 48): 80.0, ("synthetic", 12): 40.0})
    table = tables.table3_comparison(ours, t3)
    assert len(table) == 21  # 20 cells of the paper + one of ours
    cub12 = table[(table.dataset == "cub200") & (table.bits == 12)].iloc[0]
    assert cub12["best baseline"] == 56.42  # AMGH
    assert cub12["gain (replication)"] == pytest.approx(60.0 - 56.42)
    assert cub12["gain (paper)"] == pytest.approx(72.02 - 56.42)
    assert cub12["replication - paper"] == pytest.approx(60.0 - 72.02)
    synthetic = table[table.dataset == "synthetic"].iloc[0]
    assert math.isnan(synthetic["SDH"]) and synthetic["Ours (replication)"] == 40.0

    gains = tables.improvements(ours, t3)
    assert len(gains) == 20 * 8
    row = gains[(gains.dataset == "cub200") & (gains.bits == 48) & (gains.method == "SDH")].iloc[0]
    assert row["replication_improvement"] == pytest.approx(80.0 - 22.23)
    means = tables.mean_improvements(gains)
    semicon = means[(means.method == "Semicon") & (means.bits == 12)].iloc[0]
    assert semicon["replication_improvement"] == pytest.approx(60.0 - 37.76)


def test_table4_with_our_numbers_pairs_the_shared_cells():
    t3 = load_table(3)
    values = {("cub200", 12): 60.0, ("cub200", 24): 70.0, ("cub200", 32): 75.0,
              ("cub200", 48): 80.0, ("nabirds", 12): 50.0}
    result = tables.ttests_against_paper(_ours(values), t3)
    semicon = t3[(t3.method == "Semicon") & t3.dataset_id.isin(["cub200", "nabirds"])]
    semicon = semicon.set_index(["dataset_id", "bits"])["map"]
    keys = list(values)
    expected = paired_ttest([semicon[k] for k in keys], [values[k] for k in keys])
    assert result.iloc[0]["n"] == 5 and result.iloc[0]["t"] == pytest.approx(expected.t)
    assert result.iloc[1]["n"] == 4  # AMGH has no NABirds result
    empty = tables.ttests_against_paper(_ours({("synthetic", 12): 1.0}), t3)
    assert empty["n"].tolist() == [0, 0] and empty["t"].isna().all()


def test_printed_check_reproduces_tables_4_and_7_but_the_known_misprint():
    check4 = tables.printed_check(recompute_table4(), load_table(4, as_printed=True))
    wrong = check4[~check4.matches]
    assert len(check4) == 16 and wrong[["comparison", "column"]].values.tolist() == [
        ["Comparison 2", "ci_upper"]]
    check7 = tables.printed_check(recompute_table7(), load_table(7, as_printed=True))
    assert len(check7) == 4 * 9 and check7.matches.all()


def test_ablation_ttests_match_the_papers_table7_on_the_papers_table6():
    t6 = load_table(6)
    ours = tables.ablation_ttests(t6)
    paper = recompute_table7(t6)
    assert ours["pair"].tolist() == paper["pair"].tolist()
    assert np.allclose(ours[["mean", "t", "df"]].to_numpy(float), paper[["mean", "t", "df"]].to_numpy(float))


def test_side_by_side_keeps_the_papers_order_then_ours():
    t5 = load_table(5)
    ours = _ours({("flowers17", 12): 90.0, ("stanford_dogs", 48): 70.0})
    table = tables.side_by_side(ours, t5)
    assert len(table) == 21
    assert table.iloc[-1]["dataset"] == "flowers17" and math.isnan(table.iloc[-1]["paper"])
    dogs = table[(table.dataset == "stanford_dogs") & (table.bits == 48)].iloc[0]
    assert dogs["replication - paper"] == pytest.approx(70.0 - dogs["paper"])
    assert table["dataset"].iloc[0] == t5["dataset_id"].iloc[0]


def test_proxy_code_table_and_hamming_matrix():
    table, codes = tables.proxy_code_table({"a": 5, "b": 30}, [12, 24], iterations=3, seed=0)
    assert table.shape[0] == 4 and set(codes) == {("a", 12), ("a", 24), ("b", 12), ("b", 24)}
    d = tables.hamming_matrix(codes[("b", 24)])
    assert d.shape == (30, 30) and (np.diag(d) == 0).all() and (d == d.T).all()
    row = table[(table.dataset == "b") & (table.bits == 24)].iloc[0]
    assert row["hamming_min"] == d[np.triu_indices(30, 1)].min()
    assert row["hamming_mean"] == pytest.approx(d[np.triu_indices(30, 1)].mean())
    for bad in ({}, {"a": 1}, {"a": 2.5}):
        with pytest.raises(ConfigError, match="class_counts"):
            tables.proxy_code_table(bad, [12])


# --- outputs ----------------------------------------------------------------------------


def test_notebook_outputs_and_completeness(tmp_path):
    import matplotlib.pyplot as plt

    exp = _exp(tmp_path)
    out = NotebookOutputs(exp, attentions=("eca", "se"))
    out.table("t", pd.DataFrame({"a": [1.0, math.nan]}))
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    paths = out.figure("f", fig)
    plt.close(fig)
    assert [p.suffix for p in paths] == [".png", ".svg"]
    out.write_metrics({"x": math.nan, "v": np.float32(0.5)})
    metrics = json.loads((exp.output_dir / "metrics.json").read_text())
    assert metrics["results"] == {"x": None, "v": 0.5}
    assert metrics["parameters"]["attentions"] == ["eca", "se"]
    assert metrics["tables"] == {"t": "t.csv"} and metrics["figures"] == {"f": ["f.png", "f.svg"]}
    assert outputs_complete(exp.output_dir, {"bits": [12, 48], "attentions": ["eca", "se"]})
    assert not outputs_complete(exp.output_dir, {"bits": [12]})
    # A value and its one-item list are one parameter (05, 07, 10 once took plain values).
    assert outputs_complete(exp.output_dir, {"epochs": [1]})
    assert not outputs_complete(exp.output_dir, {"epochs": [1, 2]})
    # A recipe that learns another dataset's folder leaves the notebooks it does not use
    # complete; a new folder for a dataset it used does not.
    recorded = json.loads((exp.output_dir / "metrics.json").read_text())
    recorded["parameters"].update(datasets=["cub200"], data_root={"cub200": "a"})
    (exp.output_dir / "metrics.json").write_text(json.dumps(recorded))
    assert outputs_complete(exp.output_dir, {"data_root": {"cub200": "a", "nabirds": "b"}})
    assert not outputs_complete(exp.output_dir, {"data_root": {"cub200": "c", "nabirds": "b"}})
    (exp.output_dir / "f.svg").unlink()
    assert not outputs_complete(exp.output_dir)
    assert not outputs_complete(tmp_path / "nothing")
    # SVGs carry no date: the same figure gives the same file.
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    first = out.figure("g", fig)[1].read_bytes()
    assert out.figure("g", fig)[1].read_bytes() == first
    plt.close(fig)


# --- retrieval examples ---------------------------------------------------------------


def test_choose_queries_spreads_over_classes():
    labels = np.repeat(np.arange(10), 3)
    picked = ex.choose_queries(labels, 4)
    assert labels[picked].tolist() == [0, 3, 6, 9] and picked.tolist() == [0, 9, 18, 27]
    more = ex.choose_queries(labels, 12)
    assert len(set(more.tolist())) == 12 and sorted(labels[more[:10]].tolist()) == list(range(10))
    with pytest.raises(ValueError):
        ex.choose_queries(labels, 31)


def test_retrieval_examples_marks_right_and_wrong():
    db = np.array([[1, 1, 1, 1], [-1, -1, -1, -1], [1, 1, 1, -1], [1, 1, -1, -1]])
    codes = {
        "db_codes": pack_codes(db),
        "db_labels": np.array([0, 1, 1, 0]),
        "query_codes": pack_codes(np.array([[1, 1, 1, 1], [-1, -1, -1, 1]])),
        "query_labels": np.array([0, 1]),
    }
    hits = ex.retrieval_examples(codes, np.array([0, 1]), 3)
    first = hits[hits["query"] == 0]
    assert first["db_index"].tolist() == [0, 2, 3] and first["distance"].tolist() == [0, 1, 2]
    assert first["correct"].tolist() == [True, False, True]
    second = hits[hits["query"] == 1]
    assert second["db_index"].tolist() == [1, 0, 3]  # distances 1, 3, 3: ties by index
    assert second["correct"].tolist() == [True, False, False]
    precision = ex.precision_of_examples(hits, (1, 3))
    assert precision == {"precision@1": 1.0, "precision@3": pytest.approx(0.5)}


# --- the runner ---------------------------------------------------------------------------


def test_select_notebooks():
    assert rep.select_notebooks(["03", "01_main_results.ipynb"]) == ["01_main_results", "03_ablation"]
    from fusnet.experiments.profiles import NOTEBOOKS

    assert rep.select_notebooks(None) == list(NOTEBOOKS) and len(NOTEBOOKS) == 11
    with pytest.raises(ConfigError, match="matches"):
        rep.select_notebooks(["0"])
    with pytest.raises(ConfigError, match="nothing"):
        rep.select_notebooks(["99"])


def test_reproduce_runs_skips_complete_outputs_and_records_failures(tmp_path):
    ran = []

    def execute(source, output, params, kernel, cwd):
        ran.append(source.stem)
        assert kernel == "python3" and cwd == rep.NOTEBOOK_DIR and params["output_root"] == str(tmp_path)
        if source.stem == "08_proxy_codes":
            raise RuntimeError("kernel died")
        output.write_text("{}")
        payload = {"parameters": params, "tables": {}, "figures": {}}
        (output.parent / "metrics.json").write_text(json.dumps(payload))

    results = rep.reproduce("smoke", ["01", "08"], output_root=tmp_path, execute=execute)
    assert [(r.notebook, r.status) for r in results] == [("01_main_results", "ran"),
                                                         ("08_proxy_codes", "failed")]
    assert "kernel died" in results[1].error
    again = rep.reproduce("smoke", ["01", "08"], output_root=tmp_path, execute=execute)
    assert [r.status for r in again] == ["skipped", "failed"]
    forced = rep.reproduce("smoke", ["01"], output_root=tmp_path, execute=execute, force=True)
    assert forced[0].status == "ran" and ran.count("01_main_results") == 2
    # Changing a parameter reruns the notebook.
    changed = rep.reproduce("smoke", ["01"], output_root=tmp_path, execute=execute,
                            changes={"device": "cuda"})
    assert changed[0].status == "ran"
    text = rep.summary_table(results + again, tmp_path)
    assert "01_main_results" in text and "1 ran, 1 skipped, 2 failed" in text


def test_reproduce_reruns_a_notebook_when_its_recipe_changes(tmp_path, monkeypatch):
    from fusnet.experiments import recipes

    def execute(source, output, params, kernel, cwd):  # records what a notebook records
        output.write_text("{}")
        payload = {"parameters": rep.recorded_parameters(params), "tables": {}, "figures": {}}
        (output.parent / "metrics.json").write_text(json.dumps(payload))

    first = rep.reproduce("smoke", ["01", "08"], output_root=tmp_path, execute=execute)
    assert [r.status for r in first] == ["ran", "ran"]
    recorded = json.loads((tmp_path / "01_main_results" / "smoke" / "metrics.json").read_text())
    assert recorded["parameters"]["epochs"] == 3 and recorded["parameters"]["changes"] == {}
    smoke = {**recipes.RECIPES["smoke"], "epochs": 4}
    monkeypatch.setitem(recipes.RECIPES, "smoke", smoke)
    again = rep.reproduce("smoke", ["01", "08"], output_root=tmp_path, execute=execute)
    assert [r.status for r in again] == ["ran", "skipped"]  # 08 trains nothing: no recipe


def test_cli_reproduce_passes_options_and_reports(monkeypatch, capsys, tmp_path):
    seen = {}

    def fake(profile, notebooks, **kwargs):
        seen.update(profile=profile, notebooks=notebooks, **kwargs)
        return [rep.NotebookResult("01_main_results", "failed", 1.0, tmp_path, "boom")]

    monkeypatch.setattr(rep, "reproduce", fake)
    code = cli_main(["reproduce", "--profile", "paper", "--notebooks", "01", "--data-root", "/data",
                     "--output-root", str(tmp_path)])
    assert code == 1
    assert seen["profile"] == "paper" and seen["notebooks"] == ["01"]
    assert seen["changes"] == {"data_root": "/data"} and seen["force"] is False
    assert "boom" in capsys.readouterr().out


def test_ensure_run_retrains_a_finished_run_missing_a_file_the_caller_needs(tmp_path, monkeypatch):
    exp = ExperimentConfig(notebook="05_cam", profile="smoke", datasets=["synthetic"], bits=[12],
                           output_root=str(tmp_path))
    request = RunRequest("synthetic", 12)
    config = exp.run_config("synthetic", 12)
    path = run_dir(exp.runs_dir, "synthetic", config)
    path.mkdir(parents=True)
    for name in ("metrics.json", "manifest.json"):
        (path / name).write_text(json.dumps({"map_index_ties": 0.5, "map_tie_aware": 0.5}))
    trained = []
    monkeypatch.setattr(fusnet.train.loop, "train", lambda config, resume: trained.append(config.output_dir))
    assert ensure_run(exp, request).reused and not trained  # codes are enough
    record = ensure_run(exp, request, needs=["model.pt"])
    assert trained == [str(path)] and not record.reused
    (path / "model.pt").write_bytes(b"weights")
    assert ensure_run(exp, request, needs=["model.pt"]).reused and len(trained) == 1


def test_each_training_notebook_shows_what_it_trains():
    """One cell right after the experiment is built prints the run config's differences
    from RunConfig's defaults (issue 29), readable without opening the library."""
    from fusnet.experiments.profiles import notebook_parameters

    for path in sorted((Path(fusnet.__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        sources = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]
                   if c["cell_type"] == "code"]
        builds = [i for i, s in enumerate(sources) if "ExperimentConfig.from_parameters(" in s]
        if builds:  # 08 trains nothing
            assert sources[builds[0] + 1].rstrip().endswith("exp.config_changes()"), path.name
    params = notebook_parameters("cpu", "01_main_results")
    exp = ExperimentConfig.from_parameters("01_main_results", profile="cpu",
                                           datasets=params["datasets"], bits=params["bits"],
                                           changes=params["changes"])
    changes = exp.config_changes()
    assert changes.loc["model.backbone"].tolist() == ["resnet50", "efficientnet_lite0"]
    assert changes.loc["mode", "this notebook"] == exp.base_run_config().mode
    assert "model.bits" not in changes.index  # set per run, not by the notebook's recipe
    assert all(row["default"] != row["this notebook"] for _, row in changes.iterrows())
