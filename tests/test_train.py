"""Training end to end on the synthetic default: outputs, resume, NaN, checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fusnet.cli import main as cli_main
from fusnet.config import RunConfig
from fusnet.errors import CheckpointError, TrainingError
from fusnet.eval.encoding import load_codes
from fusnet.methods import multifusnet as multifusnet_method
from fusnet.train.loop import Trainer, load_checkpoint, load_model, train
from tests.conftest import interrupt_in_epoch


def tiny_config(tmp_path, **changes) -> RunConfig:
    base = RunConfig().replace(
        **{
            "data.dataset": "synthetic",
            "data.synthetic_classes": 4,
            "data.image_size": 64,
            "data.batch_size": 16,
            "data.eval_batch_size": 32,
            "model.backbone": "resnet18",
            "model.pretrained": "none",
            "model.bits": 8,
            "model.block_mid": 16,
            "model.level_dim": 32,
            "model.hash_hidden": 16,
            "model.transformer_dim": 16,
            "model.transformer_heads": 2,
            "optim.epochs": 2,
            "optim.lr": 0.01,
            "device": "cpu",
            "output_dir": str(tmp_path / "run"),
        }
    )
    return base.replace(**changes)


@pytest.mark.slow
def test_train_writes_every_artifact_and_codes_match_the_metrics(tmp_path):
    config = tiny_config(tmp_path)
    result = train(config)
    out = tmp_path / "run"
    for name in ("config.json", "metrics.json", "codes.npz", "manifest.json", "model.pt"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["selection"]["rule"] == "best validation mAP"
    assert len(metrics["history"]) == 2 and "val_map" in metrics["history"][-1]
    manifest = json.loads((out / "manifest.json").read_text())
    for key in ("code", "data", "weights", "seed", "device", "wall_seconds", "train_images_per_second"):
        assert key in manifest
    assert manifest["data"]["val_images"] > 0
    # the CPU's kernels move a run's numbers slightly: the manifest says which ran
    assert f"kernels={torch.backends.cpu.get_cpu_capability()}" in manifest["device"]
    # The saved codes reproduce the recorded test mAP through the CLI's evaluate.
    codes = load_codes(out / "codes.npz")
    assert codes["db_codes"].shape == (manifest["data"]["train_images"], 8)
    assert cli_main(["evaluate", "--codes", str(out / "codes.npz"), "--output", str(tmp_path / "m.json")]) == 0
    again = json.loads((tmp_path / "m.json").read_text())
    assert again["map"] == pytest.approx(result.metrics["map_index_ties"], abs=1e-12)
    # encode with the saved model gives the same query codes.
    assert cli_main(["encode", "--model", str(out / "model.pt"), "--split", "test",
                     "--output", str(tmp_path / "q.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "q.npz") as q, np.load(out / "codes.npz") as c:
        assert np.array_equal(q["codes"], c["query_codes"])
    # search: a query image file -> its nearest database images, and a contact sheet.
    from fusnet.data import build_dataset
    from fusnet.serve.search import search_image

    queries = build_dataset("synthetic", None, "test", num_classes=4, image_size=64)
    image, _ = queries[0]
    image.save(tmp_path / "query.png")
    hits = search_image(out, tmp_path / "query.png", k=5, sheet=tmp_path / "sheet.png", device="cpu")
    distances = [h["distance"] for h in hits]
    assert len(hits) == 5 and distances == sorted(distances)
    assert (tmp_path / "sheet.png").stat().st_size > 0
    with np.load(out / "codes.npz") as c:  # the top hit is at the query's own code distance
        packed = c["query_codes"][0:1]
        db = c["db_codes"]
    from fusnet.eval.retrieval import hamming_topk

    best_d, best_i = hamming_topk(packed, db, 5)
    assert distances == best_d[0].tolist() and [h["index"] for h in hits] == best_i[0].tolist()
    assert cli_main(["search", str(out), str(tmp_path / "query.png"), "--k", "3", "--device", "cpu"]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["full", "frozen"])
def test_resume_continues_exactly(tmp_path, monkeypatch, mode):
    straight = train(tiny_config(tmp_path / "a", mode=mode, select="last"))

    interrupted = tiny_config(tmp_path / "b", mode=mode, select="last")
    interrupt_in_epoch(interrupted, monkeypatch, epoch=1)
    assert load_checkpoint(tmp_path / "b" / "run" / "checkpoints" / "last.pt")["epoch"] == 1
    resumed = train(interrupted, resume=True)

    assert resumed.metrics["map_index_ties"] == straight.metrics["map_index_ties"]
    a = torch.load(tmp_path / "a" / "run" / "model.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "run" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]


@pytest.mark.slow
def test_resume_with_amp_from_a_checkpoint_saved_without_it(tmp_path, monkeypatch):
    # A CPU run (no AMP: the scaler's state is empty) resumed where AMP is on (a GPU).
    config = tiny_config(tmp_path, mode="frozen", select="last")
    interrupt_in_epoch(config, monkeypatch, epoch=1)

    def with_scaler(trainer):
        trainer.amp = True  # as on CUDA; autocast stays off on the CPU, the scaler is on
        trainer.scaler = torch.amp.GradScaler("cpu", enabled=True)

    trainer = Trainer(config, resume=True)
    trainer.after_setup.append(with_scaler)
    resumed = trainer.run()
    assert [h["epoch"] for h in resumed.history] == [1, 2]


@pytest.mark.slow
def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, mode="frozen", select="last", **{"optim.epochs": 3})
    real_hash_loss = multifusnet_method.hash_loss
    current = {"epoch": 0}

    def poisoned(u, proxy, target):
        loss = real_hash_loss(u, proxy, target)
        return loss * float("nan") if current["epoch"] >= 1 else loss

    monkeypatch.setattr(multifusnet_method, "hash_loss", poisoned)
    trainer = Trainer(config)
    trainer.before_epoch.append(lambda trainer, epoch: current.update(epoch=epoch))
    with pytest.raises(TrainingError, match="epoch 2"):
        trainer.run()
    kept = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert kept["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["multifusnet", "adsh"])
def test_checkpoint_layout_is_the_one_earlier_runs_wrote(tmp_path, method):
    # Checkpoints written before Multi-FusNet became a HashingMethod still load and resume:
    # the entries, and the criterion's (Multi-FusNet: the task weights alone), are pinned.
    train(tiny_config(tmp_path, mode="frozen", method=method, **{"optim.epochs": 1}))
    out = tmp_path / "run"
    last = load_checkpoint(out / "checkpoints" / "last.pt")
    best = load_checkpoint(out / "checkpoints" / "best.pt")
    final = load_checkpoint(out / "model.pt")
    common = {"format", "config", "num_classes", "model"}
    assert set(last) == common | {"epoch", "criterion", "optimizer", "scheduler", "scaler",
                                  "history", "best", "images_seen", "train_seconds",
                                  "wall_seconds", "caching_seconds", "validation_seconds",
                                  "resumes"}
    assert set(best) == common | {"criterion"} and set(final) == common | {"class_names"}
    if method == "multifusnet":
        assert set(last["criterion"]) == {"alpha1", "alpha2"}
    else:
        assert {"codes", "fit_labels"} <= set(last["criterion"])  # V and the fit classes


@pytest.mark.slow
def test_checkpoint_from_another_config_is_a_clear_error(tmp_path):
    config = tiny_config(tmp_path, mode="frozen", select="last", **{"optim.epochs": 1})
    train(config)
    last = tmp_path / "run" / "checkpoints" / "last.pt"
    with pytest.raises(CheckpointError, match=r"model\.bits"):
        load_checkpoint(last, config.replace(**{"model.bits": 16}))
    with pytest.raises(CheckpointError, match="already holds a run"):
        train(config)
    with pytest.raises(CheckpointError, match="another config"):
        train(config.replace(**{"model.attention": "se"}), resume=True)
    # A corrupt file is a CheckpointError naming it, not a crash.
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"bad\.pt"):
        load_model(bad)


def test_config_rejects_unknown_and_mixed_options(tmp_path, capsys):
    from fusnet.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown"):
        RunConfig().replace(**{"model.bitz": 3})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(RunConfig().to_dict()))
    assert RunConfig.from_json(path) == RunConfig()
    code = cli_main(["train", "--config", str(path), "--epochs", "3"])
    assert code == 2
