"""Profiles and notebooks agree: same parameter names, smoke values are the cells' defaults."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from fusnet.errors import ConfigError
from fusnet.experiments import ExperimentConfig
from fusnet.experiments.profiles import NOTEBOOKS, PROFILES, notebook_parameters
from fusnet.experiments.recipes import RECIPE_NAMES, RECIPES, recipe
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
    # The cell after the parameters builds the typed config: from the profile's recipe and
    # the changes in every notebook that trains (08 trains nothing: no recipe, no changes).
    if "changes" in PROFILES["smoke"][notebook]:
        assert f'ExperimentConfig.from_parameters(\n    "{notebook}", ' in sources[1]
    else:
        assert "ExperimentConfig(" in sources[1]
    assert any(s.startswith("# NBVAL_CHECK_OUTPUT") for s in sources)
    assert any("write_metrics(" in s for s in sources)
    for source in sources:  # no function or class definitions: logic lives in fusnet
        tree = ast.parse(source)
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]


_EXPERIMENT = ("profile", "datasets", "bits", "changes", "output_root")
"""The parameters ``ExperimentConfig.from_parameters`` reads; the others are a notebook's own."""


def test_every_profile_has_one_recipe_and_every_notebook_takes_it_whole():
    assert set(RECIPES) == set(PROFILES)
    for name, entries in PROFILES.items():
        assert set(RECIPES[name]) == {*RECIPE_NAMES, "overrides"}
        for notebook, params in entries.items():
            assert not set(params) & {*RECIPE_NAMES, "overrides"} - {"seed"}, notebook
            assert params.get("changes", {}) == {} and params["profile"] == name
            assert isinstance(params.get("bits", []), list)
            assert isinstance(params.get("datasets", []), list)


@pytest.mark.parametrize("profile", sorted(PROFILES))
@pytest.mark.parametrize("notebook", [n for n in NOTEBOOKS if "changes" in PROFILES["smoke"][n]])
def test_every_profile_builds_a_valid_config(profile, notebook):
    params = PROFILES[profile][notebook]
    exp = ExperimentConfig.from_parameters(notebook, **{k: params[k] for k in _EXPERIMENT})
    assert exp.parameters() == {"notebook": notebook, "profile": profile, "output_root": None,
                                "datasets": params["datasets"], "bits": params["bits"],
                                **RECIPES[profile]}
    for spec in exp.dataset_specs:
        if profile == "paper":  # the paper's data come from --data-root
            with pytest.raises(ConfigError, match="--data-root"):
                exp.run_config(spec.name, exp.bits[0])
        else:
            config = exp.run_config(spec.name, exp.bits[0])
            assert config.mode == RECIPES[profile]["mode"] and config.eval_every == 1


def test_changes_amend_the_recipe():
    changed = recipe("cpu", {"device": "cuda", "optim.lr": 0.2, "top_stages": 1})
    assert changed["device"] == "cuda" and changed["overrides"]["optim.lr"] == 0.2
    assert changed["overrides"]["top_stages"] == 1 and changed["epochs"] == RECIPES["cpu"]["epochs"]
    assert RECIPES["cpu"]["device"] == "cpu" and RECIPES["cpu"]["overrides"]["optim.lr"] == 0.05
    exp = ExperimentConfig.from_parameters("01_main_results", profile="smoke", bits=[12],
                                           datasets=["synthetic"], changes={"epochs": 1})
    assert exp.run_config("synthetic", 12).optim.epochs == 1
    with pytest.raises(ConfigError, match="overrides"):
        recipe("smoke", {"overrides": {"optim.lr": 1.0}})
    with pytest.raises(ConfigError, match="unknown"):
        ExperimentConfig.from_parameters("01_main_results", profile="smoke",
                                         changes={"optim.lrr": 1.0})
    with pytest.raises(ConfigError, match="unknown profile"):
        ExperimentConfig.from_parameters("01_main_results", profile="laptop")


def test_cpu_recipe_gates_the_full_model_but_renames_no_run_without_lower_levels():
    from fusnet.experiments.runs import run_hash

    exp = ExperimentConfig.from_parameters("03_ablation", profile="cpu", datasets=["cub200"])
    full = exp.run_config("cub200", 48)
    assert full.model.lower_level_gate and full.model.cascade
    paper_head = exp.run_config("cub200", 48, **{"model.lower_level_gate": False})
    assert run_hash(paper_head) != run_hash(full)
    # no lower levels: the gate acts on nothing, so the run keeps its ungated name
    for changes in ({"model.cascade": False}, {"method": "dpsh"}):
        gated = exp.run_config("cub200", 48, **changes)
        ungated = exp.run_config("cub200", 48, **changes, **{"model.lower_level_gate": False,
                                                             "model.level_dropout": 0.0})
        assert not gated.model.lower_level_gate and run_hash(gated) == run_hash(ungated)
    dropped = exp.run_config("cub200", 48, **{"model.cascade": False, "model.level_dropout": 0.5})
    assert dropped.model.level_dropout == 0.0


def test_cpu_backbone_regimes_train_both_arms_on_their_backbone_at_its_native_size():
    from fusnet.experiments.regimes import regime_requests
    from fusnet.experiments.runs import run_hash

    params = PROFILES["cpu"]["11_regimes"]
    exp = ExperimentConfig.from_parameters("11_regimes", profile="cpu", datasets=["cub200"])
    requests = regime_requests(["cub200"], params["bits"], params["regimes"],
                               params["configurations"], params["regime_configurations"],
                               params["regime_seeds"])
    configs = {(r.label, r.bits): exp.run_config(r.dataset, r.bits, **r.changes) for r in requests}
    for lite, size in (("lite1", 240), ("lite2", 260)):
        for bits in (12, 48):
            base = configs[(f"frozen-gate-{lite}/baseline/seed0", bits)]
            full = configs[(f"frozen-gate-{lite}/cascading+fusion+attention/seed0", bits)]
            for config in (base, full):
                assert (config.model.backbone, config.data.image_size) == (f"efficientnet_{lite}", size)
                assert config.mode == "frozen"
            assert full.model.lower_level_gate and not base.model.lower_level_gate
            # not the Lite0 baseline's run: each backbone trains its own
            assert run_hash(base) != run_hash(configs[("frozen-gate/baseline/seed0", bits)])


def _cpu_regime_runs(prefix: str) -> dict:
    """Notebook 11's cpu-profile runs on CUB whose label starts with ``prefix``:
    (label, bits) -> RunConfig, its ``output_dir`` the run folder."""
    from fusnet.experiments.regimes import regime_requests
    from fusnet.experiments.runs import request_config

    params = PROFILES["cpu"]["11_regimes"]
    exp = ExperimentConfig.from_parameters("11_regimes", profile="cpu", datasets=["cub200"])
    requests = regime_requests(["cub200"], params["bits"], params["regimes"],
                               params["configurations"], params["regime_configurations"],
                               params["regime_seeds"])
    return {(r.label, r.bits): request_config(exp, r) for r in requests
            if r.label.startswith(prefix)}


def test_cpu_gated_top_stage_regime_runs_the_full_model_at_every_code_length():
    from fusnet.experiments.profiles import PAPER_BITS

    runs = _cpu_regime_runs("top2-views4-gate")
    for bits in PAPER_BITS:
        for seed in (0, 1, 2):
            full = runs[(f"top2-views4-gate/cascading+fusion+attention/seed{seed}", bits)]
            assert (full.mode, full.top_stages, full.optim.lr) == ("top", 2, 0.2)
            assert full.model.lower_level_gate and full.model.cascade and full.seed == seed
        # the baseline only where the ablation compares (12 and 48 bits)
        assert (("top2-views4-gate/baseline/seed0", bits) in runs) == (bits in (12, 48))
    # the 12- and 48-bit runs keep the folders their committed results are in
    for bits, folder in ((12, "eca-c1f1t1-12b-d0bc965410"), (48, "eca-c1f1t1-48b-17bea7edc9")):
        path = Path(runs[("top2-views4-gate/cascading+fusion+attention/seed0", bits)].output_dir)
        assert path.name == folder
    # the 16-epoch regime: both arms at 12 and 48 bits, seeds 0-2, each its own run (not the
    # 12-epoch one of its seed)
    longer = {key: config for key, config in runs.items()
              if key[0].startswith("top2-views4-gate-e16/")}
    assert sorted(longer) == sorted(
        (f"top2-views4-gate-e16/{name}/seed{seed}", bits) for bits in (12, 48)
        for name in ("baseline", "cascading+fusion+attention") for seed in (0, 1, 2))
    for (label, bits), config in longer.items():
        short = runs[(label.replace("-e16", ""), bits)]
        assert config.optim.epochs == 16 and short.optim.epochs == 12
        assert config.replace(**{"optim.epochs": 12, "output_dir": short.output_dir}) == short
    # seed 0 keeps the folders its committed results are in
    for name, bits, folder in (("baseline", 12, "eca-c0f0t0-12b-a48d340546"),
                               ("cascading+fusion+attention", 12, "eca-c1f1t1-12b-27d2fd3399"),
                               ("baseline", 48, "eca-c0f0t0-48b-0123878500")):
        path = Path(longer[(f"top2-views4-gate-e16/{name}/seed0", bits)].output_dir)
        assert path.name == folder


def test_the_one_stage_regimes_keep_their_committed_folders():
    """Issue 27's candidates: only the stride-32 stage trains, the full model with the gate."""
    runs = _cpu_regime_runs("top1-views4-gate-")
    full = "cascading+fusion+attention"
    assert sorted(runs) == sorted(
        [(f"top1-views4-gate-{e}/{full}/seed{s}", b)
         for e in ("e16", "e16-192px", "e18-192px", "e18-192px-eval224-dwfrozen")
         for b in (12, 48) for s in (0, 1, 2)]
        + [(f"top1-views4-gate-{e}/{full}/seed{s}", 48) for e in ("e15", "e13-lr0.3")
           for s in (0, 1, 2)]
        + [(f"top1-views4-gate-{e}/{full}", 48)
           for e in ("e12", "e12-lr0.3", "e12-lr0.4", "e18-192px-eval224")])
    recipes = {  # epochs, validated every, lr, cache layout, cache precision (224 px but -192px)
        "e16": (16, 4, 0.2, "contiguous", "float32"),
        "e15": (15, 15, 0.2, "channels_last", "float32"),
        "e12": (12, 4, 0.2, "channels_last", "bfloat16"),
        "e12-lr0.3": (12, 4, 0.3, "channels_last", "bfloat16"),
        "e12-lr0.4": (12, 4, 0.4, "channels_last", "bfloat16"),
        "e13-lr0.3": (13, 13, 0.3, "channels_last", "bfloat16"),
        "e16-192px": (16, 16, 0.2, "channels_last", "bfloat16"),
        "e18-192px": (18, 18, 0.2, "channels_last", "bfloat16"),
        "e18-192px-eval224": (18, 18, 0.2, "channels_last", "bfloat16"),
        "e18-192px-eval224-dwfrozen": (18, 18, 0.2, "channels_last", "bfloat16"),
    }
    for (label, _bits), config in runs.items():
        assert (config.mode, config.top_stages, config.data.cached_views) == ("top", 1, 4)
        assert config.model.lower_level_gate and config.model.cascade
        name = label.split("/")[0].removeprefix("top1-views4-gate-")
        assert (config.optim.epochs, config.eval_every, config.optim.lr,
                config.data.cache_layout, config.data.cache_precision,
                config.data.image_size) == (*recipes[name], 192 if "192" in name else 224)
        assert config.data.test_image_size == (192 if name.endswith("192px") else 224)
        assert config.freeze_depthwise == name.endswith("dwfrozen")
    for label, folder in (("e16/{}/seed0", "eca-c1f1t1-48b-447b95ce9c"),
                          ("e16/{}/seed1", "eca-c1f1t1-48b-4b0bee835c"),
                          ("e15/{}/seed0", "eca-c1f1t1-48b-d1d6b580cc"),
                          ("e12/{}", "eca-c1f1t1-48b-111d5932f6"),
                          ("e12-lr0.3/{}", "eca-c1f1t1-48b-c49fdcb3ba"),
                          ("e12-lr0.4/{}", "eca-c1f1t1-48b-b2ed0c17c4"),
                          ("e13-lr0.3/{}/seed0", "eca-c1f1t1-48b-c1c5cc4c32"),
                          ("e13-lr0.3/{}/seed1", "eca-c1f1t1-48b-5c752bac03"),
                          ("e13-lr0.3/{}/seed2", "eca-c1f1t1-48b-2fa6a97ee0"),
                          ("e16-192px/{}/seed0", "eca-c1f1t1-48b-fdcc1fa2bd"),
                          ("e16-192px/{}/seed1", "eca-c1f1t1-48b-141d6a2d13"),
                          ("e18-192px/{}/seed0", "eca-c1f1t1-12b-db78c32d21"),
                          ("e18-192px/{}/seed1", "eca-c1f1t1-12b-fb3b8385bd"),
                          ("e18-192px/{}/seed2", "eca-c1f1t1-12b-fc55f58362"),
                          ("e18-192px-eval224/{}", "eca-c1f1t1-48b-9e4fb07aed")):
        bits = int(folder.split("-")[-2].removesuffix("b"))
        run = runs[(f"top1-views4-gate-{label.format(full)}", bits)]
        assert Path(run.output_dir).name == folder


def test_main_results_train_in_the_chosen_regime_on_cub_and_nabirds():
    """Issue 28: notebook 01's cpu runs are notebook 11's regime, so its CUB 12- and 48-bit
    runs are that regime's seed-0 runs (one folder each), and NABirds-33 trains likewise."""
    from fusnet.experiments.profiles import CPU_MAIN_REGIME, regime_changes
    from fusnet.experiments.runs import grid, request_config

    params = PROFILES["cpu"]["01_main_results"]
    assert params["regime"] == CPU_MAIN_REGIME and params["datasets"] == ["cub200", "nabirds"]
    assert PROFILES["smoke"]["01_main_results"]["regime"] is None
    exp = ExperimentConfig.from_parameters(
        "01_main_results", profile="cpu", datasets=params["datasets"], bits=params["bits"],
        changes=regime_changes("cpu", params["regime"]))
    runs = {(r.dataset, r.bits): request_config(exp, r) for r in grid(exp.datasets, exp.bits)}
    assert len(runs) == 8
    cam = PROFILES["cpu"]["05_cam"]  # Fig. 10 shows the 48-bit CUB model of notebook 01
    assert (cam["regime"], cam["datasets"], cam["bits"]) == (CPU_MAIN_REGIME, ["cub200"], [48])
    regime = _cpu_regime_runs(CPU_MAIN_REGIME)
    for bits in (12, 48):
        seed0 = regime[(f"{CPU_MAIN_REGIME}/cascading+fusion+attention/seed0", bits)]
        assert runs[("cub200", bits)] == seed0
    for config in runs.values():
        assert (config.mode, config.top_stages, config.freeze_depthwise) == ("top", 1, True)
        assert (config.optim.epochs, config.data.image_size, config.data.test_image_size) == (
            18, 192, 224)
    assert runs[("nabirds", 48)].data.root.endswith("nabirds33")


def test_retrieval_examples_show_a_regime_model_through_notebook_11s_run():
    from fusnet.experiments.profiles import CPU_REGIMES, regime_changes
    from fusnet.experiments.runs import RunRequest, request_config

    assert regime_changes("cpu", None) == {}
    assert regime_changes("cpu", "top2-views4-gate-e16") == CPU_REGIMES["top2-views4-gate-e16"]
    with pytest.raises(ConfigError, match="top2-views4-gate-e16"):
        regime_changes("cpu", "top2-views5")
    with pytest.raises(ConfigError, match="unknown profile"):
        regime_changes("gpu", None)
    # the smoke profile shows the recipe's model (notebook 01's run: test_notebooks_share_runs)
    assert PROFILES["smoke"]["07_retrieval_examples"]["regime"] is None
    # the cpu profile's CUB figure is notebook 11's run of issue 27's regime, seed 0
    params = PROFILES["cpu"]["07_retrieval_examples"]
    exp = ExperimentConfig.from_parameters("07_retrieval_examples", profile="cpu",
                                           datasets=params["datasets"], bits=params["bits"])
    shown = request_config(exp, RunRequest("cub200", 48, params["regime"],
                                           regime_changes("cpu", params["regime"])))
    run11 = _cpu_regime_runs(params["regime"])
    assert shown == run11[(f"{params['regime']}/cascading+fusion+attention/seed0", 48)]
    assert (shown.mode, shown.optim.epochs, shown.model.lower_level_gate) == ("top", 18, True)
    assert Path(shown.output_dir).name == "eca-c1f1t1-48b-49bad97a91"  # its committed run


def test_cpu_profile_points_at_the_shared_photos(shared_data):
    exp = ExperimentConfig.from_parameters("01_main_results", profile="cpu", datasets=["cub200"])
    # Both sides resolved: ../shared may be reached through a symbolic link.
    assert Path(exp.run_config("cub200", 12).data.root) == (shared_data / "cub100").resolve()


def test_notebook_parameters_copies_and_applies_known_changes():
    params = notebook_parameters("paper", "01_main_results", data_root="/data", unknown=1,
                                 output_root="/out")
    assert params["changes"] == {"data_root": "/data"} and params["output_root"] == "/out"
    assert "unknown" not in params and "unknown" not in params["changes"]
    assert PROFILES["paper"]["01_main_results"]["changes"] == {}
    params["changes"]["x"] = 1
    assert "x" not in PROFILES["paper"]["01_main_results"]["changes"]
    proxy = notebook_parameters("smoke", "08_proxy_codes", data_root="/d", seed=3)
    assert "data_root" not in proxy and "changes" not in proxy and proxy["seed"] == 3
    with pytest.raises(ConfigError, match="profile"):
        notebook_parameters("laptop", "01_main_results")
    with pytest.raises(ConfigError, match="notebook"):
        notebook_parameters("smoke", "09_extra")


def _train_config(*argv: str):
    from fusnet.cli import build_parser
    from fusnet.cli.train import config_from_args

    return config_from_args(build_parser().parse_args(["train", *argv]))


def test_train_profile_starts_from_the_recipe_and_flags_change_it():
    """``fusnet train --profile`` (``make demo``): the run a profile's notebook trains, but
    for the notebooks' cache and output folders."""
    config, bits = _train_config("--profile", "smoke", "--bits", "12", "48", "--output-dir", "o")
    exp = ExperimentConfig.from_parameters("01_main_results", profile="smoke", bits=[48],
                                           datasets=["synthetic"])
    notebook_run = exp.run_config("synthetic", 48).replace(cache_dir=None, output_dir="o")
    assert bits == (12, 48)
    assert config.replace(**{"model.bits": 48}).to_dict() == notebook_run.to_dict()
    cpu, _ = _train_config("--profile", "cpu", "--dataset", "cub200", "--lr", "0.2")
    exp = ExperimentConfig.from_parameters("01_main_results", profile="cpu", datasets=["cub200"])
    assert cpu.data.root == exp.dataset_root("cub200") and cpu.optim.lr == 0.2
    assert cpu.model.level_dim == RECIPES["cpu"]["overrides"]["model.level_dim"]
    own, _ = _train_config("--profile", "cpu", "--dataset", "cub200", "--root", "/photos")
    assert own.data.root == "/photos"
    paper, _ = _train_config("--profile", "paper", "--dataset", "cub200")  # no folder: --root
    assert paper.data.root is None and paper.model.backbone == "resnet50"
    with pytest.raises(ConfigError, match="--profile"):
        _train_config("--config", "run.json", "--profile", "smoke")
