"""The run executor: unfinished runs trained here or in child processes, finished ones
read back; scripts/baselines_parallel.py's learning-rate sweep chosen on validation mAP."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from fusnet.experiments import ExperimentConfig, RunRequest, ensure_runs
from fusnet.experiments.config import REPO_ROOT
from fusnet.experiments.executor import DEADLINE_ERROR, RunExecutor

_SPEC = importlib.util.spec_from_file_location(
    "baselines_parallel", REPO_ROOT / "scripts" / "baselines_parallel.py")
driver = sys.modules["baselines_parallel"] = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(driver)  # registered first: its dataclass looks itself up there
cache_features_first, choose_rates = driver.cache_features_first, driver.choose_rates
lr_sweep, sweep_markdown = driver.lr_sweep, driver.sweep_markdown


def _exp(tmp_path: Path, **changes) -> ExperimentConfig:
    """Tiny synthetic runs: resnet18 from scratch, 64 px, 2 epochs, small widths."""
    params = {
        "notebook": "09_baselines",
        "profile": "test",
        "datasets": ["synthetic"],
        "bits": [8, 12],
        "backbone": "resnet18",
        "pretrained": "none",
        "epochs": 2,
        "image_size": 64,
        "mode": "frozen",
        "device": "cpu",
        "threads": 1,
        "output_root": str(tmp_path / "results"),
        "overrides": {
            "data.synthetic_classes": 4, "data.batch_size": 16, "data.eval_batch_size": 32,
            "optim.lr": 0.01, "model.block_mid": 16, "model.level_dim": 32,
            "model.hash_hidden": 16, "model.transformer_dim": 16, "model.transformer_heads": 2,
        },
    }
    return ExperimentConfig(**{**params, **changes})


def _mtimes(records) -> dict[Path, int]:
    return {r.path: (r.path / "metrics.json").stat().st_mtime_ns for r in records}


def test_choose_rates_takes_the_best_validation_map_and_the_smaller_lr_on_ties():
    sweep = [
        {"method": "semicon", "lr": 0.001, "best_val_map": 0.20},
        {"method": "semicon", "lr": 0.01, "best_val_map": 0.30},
        {"method": "exchnet", "lr": 0.01, "best_val_map": 0.40},
        {"method": "exchnet", "lr": 0.001, "best_val_map": 0.40},
        {"method": "adsh", "lr": 0.001, "best_val_map": None},  # no validation record
    ]
    assert choose_rates(sweep, ["semicon", "exchnet", "adsh"]) == {"semicon": 0.01, "exchnet": 0.001}


def test_sweep_markdown_marks_the_best_epoch_and_runs_without_validation():
    rows = [{"method": "dpsh", "lr": 0.01, "val_maps": [0.1, 0.3, 0.2], "best_val_map": 0.3},
            {"method": "dpsh", "lr": 0.001, "val_maps": [], "best_val_map": None}]
    lines = sweep_markdown(rows).splitlines()
    assert lines[2] == "| dpsh | 0.001 | — | — | no validation record |"
    assert lines[3] == "| dpsh | 0.01 | 0.300 | 2 | 0.100 0.300 0.200 |"


def test_past_the_deadline_nothing_is_trained(tmp_path):
    exp = _exp(tmp_path)
    with RunExecutor(exp, deadline=-math.inf) as executor:
        done = executor.run([RunRequest("synthetic", 8)])
    assert done.records == [] and done.failures[0]["error"] == DEADLINE_ERROR
    assert not exp.runs_dir.exists()


def test_a_failed_run_is_raised_or_recorded_with_keep_going(tmp_path):
    exp = _exp(tmp_path)
    bad = RunRequest("synthetic", 8, "bad", {"model.widht": 3})
    with pytest.raises(Exception, match="widht"):
        RunExecutor(exp).run([bad])
    for workers in (None, 2):  # the child pool is not even started for it
        with RunExecutor(exp, workers=workers, keep_going=True) as executor:
            done = executor.run([bad])
            assert executor._pool is None
        assert done.records == [] and "widht" in done.failures[0]["error"]


@pytest.mark.slow
def test_runs_in_this_process_then_read_back_not_retrained(tmp_path):
    exp = _exp(tmp_path)
    requests = [RunRequest("synthetic", 8), RunRequest("synthetic", 12)]
    first = ensure_runs(exp, requests)
    assert [r.bits for r in first] == [8, 12] and not any(r.reused for r in first)
    before = _mtimes(first)
    with RunExecutor(exp, workers=2) as executor:  # finished: read here, no child started
        again = executor.run(requests)
        assert executor._pool is None
    assert [r.path for r in again.records] == [r.path for r in first]
    assert all(r.reused for r in again.records) and _mtimes(again.records) == before
    assert [r.map_index_ties for r in again.records] == [r.map_index_ties for r in first]


@pytest.mark.slow
def test_two_child_processes_train_the_same_runs_as_this_process(tmp_path):
    here, there = _exp(tmp_path / "here"), _exp(tmp_path / "there")
    requests = [RunRequest("synthetic", 8, "dpsh", {"method": "dpsh"}), RunRequest("synthetic", 8)]
    serial = ensure_runs(here, requests)
    cache_features_first(there, "multifusnet", 0)  # the children read these caches
    with RunExecutor(there, workers=2, threads=1) as executor:
        done = executor.run(requests)
        assert done.failures == [] and len(done.records) == 2
        assert {r.path.name for r in done.records} == {r.path.name for r in serial}
        before = _mtimes(done.records)
        again = executor.run(requests)  # the same executor: nothing trained again
    assert all(r.reused for r in again.records) and _mtimes(again.records) == before
    by_name = {r.path.name: r for r in done.records}
    for record in serial:  # one thread each, same seed: the same numbers
        assert by_name[record.path.name].map_index_ties == pytest.approx(record.map_index_ties)


@pytest.mark.slow
def test_lr_sweep_picks_the_best_validation_map_on_the_first_dataset_and_largest_bits(tmp_path):
    exp = _exp(tmp_path)
    with RunExecutor(exp) as executor:
        sweep = lr_sweep(executor, ["dpsh"], {"dpsh": [0.001, 0.01]}, seed=0,
                         method_changes={"dpsh": {"optim.momentum": 0.0}})
    assert sweep.failures == [] and sorted(r["lr"] for r in sweep.rows) == [0.001, 0.01]
    assert {(r["dataset"], r["bits"], r["seed"]) for r in sweep.rows} == {("synthetic", 12, 0)}
    best = max(sweep.rows, key=lambda r: (r["best_val_map"], -r["lr"]))
    assert sweep.chosen == {"dpsh": best["lr"]}
    assert all(len(r["val_maps"]) == 2 and r["path"].startswith("synthetic/dpsh-12b-")
               for r in sweep.rows)
