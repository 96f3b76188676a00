"""The helper scripts behind committed results: the parallel baseline driver and the
device carry splitter (the driver's rate choice: tests/test_executor.py)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import pytest

from fusnet.experiments.config import REPO_ROOT

SCRIPTS = REPO_ROOT / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plan_parts_keeps_every_file_once_within_the_part_size(tmp_path):
    carry = _load("device_carry")
    root = tmp_path / "cub100"
    for i, size in enumerate([40, 30, 30, 50, 10]):
        (root / f"d{i % 2}").mkdir(parents=True, exist_ok=True)
        (root / f"d{i % 2}" / f"f{i}.jpg").write_bytes(b"x" * size)
    parts = carry.plan_parts([("data", root)], part_bytes=70)
    assert all(sum(f.stat().st_size for f, _ in part) <= 70 for part in parts)
    placed = sorted(str(rel) for part in parts for _, rel in part)
    assert placed == sorted(f"data/cub100/{p.relative_to(root)}" for p in root.rglob("*.jpg"))
    with pytest.raises(ValueError, match="larger than one part"):
        carry.plan_parts([("data", root)], part_bytes=45)


@pytest.mark.slow
def test_driver_sweeps_then_trains_the_grid_with_the_chosen_rate(tmp_path):
    out = tmp_path / "results"
    subprocess.run(
        [sys.executable, str(SCRIPTS / "baselines_parallel.py"), "--profile", "smoke",
         "--methods", "adsh", "--lrs", "0.001", "0.01", "--device", "cpu", "--workers", "1",
         "--threads", "1", "--epochs", "2", "--output-root", str(out)],
        check=True, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
    )
    report = json.loads((out / "09_baselines" / "smoke" / "parallel_runs.json").read_text())
    sweep = report["sweep"]["runs"]
    assert sorted(r["lr"] for r in sweep) == [0.001, 0.01] and report["failures"] == []
    best = max(sweep, key=lambda r: (r["best_val_map"], -r["lr"]))
    assert report["chosen_lr"] == {"adsh": best["lr"]}
    # The grid: every seed of the smoke profile at the chosen lr; seed 0 is the sweep's run.
    assert sorted(r["seed"] for r in report["runs"]) == [0, 1]
    assert {r["lr"] for r in report["runs"]} == {best["lr"]}
    assert [r["reused"] for r in report["runs"] if r["seed"] == 0] == [True]
    for run in report["runs"]:
        assert (out / "runs" / "smoke" / run["path"] / "metrics.json").is_file()


@pytest.mark.slow
def test_the_eval_size_probe_reproduces_a_run_at_its_own_size_and_caches_nothing(
        tmp_path, monkeypatch):
    from fusnet.train import batches
    from fusnet.train.loop import train
    from tests.test_train import tiny_config

    probe = _load("eval_size_probe")
    config = tiny_config(tmp_path, mode="top", **{"data.cached_views": 1, "optim.epochs": 1,
                                                  "cache_dir": str(tmp_path / "cache")})
    run = train(config).output_dir
    monkeypatch.setattr(batches, "compute_levels", probe.refuse_to_cache)  # as main() does
    row = probe.probe(run, 64, tmp_path / "scratch")  # the run's own size: its own numbers
    assert (row["val_map"], row["test_map"]) == (row["run_val_map"], row["run_test_map"])
    with pytest.raises(RuntimeError, match="cache this probe needs is missing"):
        probe.probe(run, 96, tmp_path / "scratch")
