"""Multi-process training through torchrun (gloo on CPU): the DDP path runs end to end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

TINY_FLAGS = [
    "--dataset", "synthetic", "--synthetic-classes", "4", "--image-size", "64",
    "--backbone", "resnet18", "--pretrained", "none", "--block-mid", "16", "--level-dim", "32",
    "--hash-hidden", "16", "--transformer-dim", "16", "--transformer-heads", "2",
    "--epochs", "2", "--batch-size", "16", "--lr", "0.01", "--device", "cpu", "--bits", "8",
]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_torchrun_two_processes_train_and_agree(tmp_path, mode):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fusnet", "train", *TINY_FLAGS, "--mode", mode, "--output-dir", str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "bits8" / "metrics.json").read_text())
    manifest = json.loads((out / "bits8" / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert 0.0 <= metrics["map_index_ties"] <= 1.0
    assert len(metrics["history"]) == 2


BASELINE_FLAGS = {
    "dpsh": ["--momentum", "0"],
    "hashnet": [],
    "adsh": ["--adsh-num-samples", "40", "--adsh-inner-epochs", "1"],
    "semicon": ["--semicon-num-samples", "32", "--semicon-inner-epochs", "1"],
    "exchnet": ["--exchnet-num-samples", "32", "--exchnet-inner-epochs", "1",
                "--exchnet-align-start", "1"],
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(BASELINE_FLAGS))
def test_torchrun_two_processes_train_a_baseline(tmp_path, method):
    """Each baseline trains under DDP (gathered memories, V updates, anchors): the run
    finishes with finite losses and a recorded mAP. Whether the ranks' V agree is not
    checked (only rank 0 saves)."""
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO_ROOT)}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "fusnet", "train", *TINY_FLAGS, "--mode", "frozen", "--method", method,
        *BASELINE_FLAGS[method], "--output-dir", str(out),
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "bits8" / "metrics.json").read_text())
    manifest = json.loads((out / "bits8" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and metrics["method"] == method
    assert 0.0 <= metrics["map_index_ties"] <= 1.0
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all(math.isfinite(h["loss"]) for h in metrics["history"])
