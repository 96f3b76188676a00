"""Exported model files (``fusnet export``, ``fusnet.load``, torch.hub): round trips and bad files."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import fusnet
from fusnet.cli import main as cli_main
from fusnet.data.transforms import build_transform
from fusnet.errors import CheckpointError
from fusnet.eval.retrieval import pack_codes
from fusnet.models.proxy_codes import class_proxy_codes
from fusnet.serve.export import EXPORT_VERSION, export_model, read_export
from fusnet.train.loop import load_model
from tests.export_helpers import tiny_run, write_images

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("export")
    run = tiny_run(root / "run")
    model_file = export_model(run, root / "model.fusnet")
    return {"run": run, "file": model_file, "images": write_images(root / "images", 6)}


@pytest.mark.slow
def test_codes_identical_before_and_after_export(exported, caplog):
    with caplog.at_level(logging.INFO, logger="fusnet.train.checkpoints"):
        model, config = load_model(exported["run"] / "model.pt")
    assert "loaded the trained multifusnet weights" in caplog.text  # after "weights: random"
    model.eval()
    transform = build_transform(config.data.image_size, train=False,
                                mean=model.backbone.mean, std=model.backbone.std)
    batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in exported["images"]])  # (6, 3, S, S)
    before = pack_codes(model.encode(batch))  # (6, 2)
    encoder = fusnet.load(exported["file"])
    assert encoder.bits == 12 and before.shape == (6, 2)
    np.testing.assert_array_equal(encoder.encode(exported["images"]), before)  # paths
    np.testing.assert_array_equal(encoder.encode([str(p) for p in exported["images"]], batch_size=4), before)
    pil = [Image.open(p) for p in exported["images"]]
    np.testing.assert_array_equal(encoder.encode(pil), before)  # PIL images
    np.testing.assert_array_equal(encoder.encode(batch), before)  # a transformed batch
    np.testing.assert_array_equal(encoder.encode(batch[0]), before[:1])  # one tensor
    assert encoder.codes(exported["images"][0]).shape == (1, 12)
    # the codes differ between images: the comparison above is not of constants
    assert len({row.tobytes() for row in before}) > 1


@pytest.mark.slow
def test_exported_file_holds_what_encoding_needs(exported):
    info = read_export(exported["file"])
    assert info["version"] == EXPORT_VERSION and info["bits"] == 12
    assert info["transform"]["image_size"] == 64 and len(info["transform"]["mean"]) == 3
    assert len(info["class_names"]) == 4
    torch.testing.assert_close(info["proxy_codes"], class_proxy_codes(4, 12, 15, seed=0))
    encoder = fusnet.load(exported["file"])
    assert encoder.class_names == info["class_names"] and encoder.model_id == info["model_id"]


@pytest.mark.slow
def test_torch_hub_loads_the_same_model(exported):
    hub = torch.hub.load(str(REPO_ROOT), "multifusnet", source="local", path=str(exported["file"]))
    direct = fusnet.load(exported["file"])
    assert hub.model_id == direct.model_id
    np.testing.assert_array_equal(hub.encode(exported["images"]), direct.encode(exported["images"]))


@pytest.mark.slow
def test_cli_export(exported, tmp_path, capsys):
    out = tmp_path / "cli.fusnet"
    assert cli_main(["export", str(exported["run"]), "--output", str(out)]) == 0
    assert "12-bit model" in capsys.readouterr().out
    assert read_export(out)["model_id"] == read_export(exported["file"])["model_id"]


@pytest.mark.slow
def test_bad_model_files_are_clear_errors(exported, tmp_path):
    foreign = tmp_path / "photo.fusnet"
    foreign.write_bytes(b"\xff\xd8 this is not a model")
    with pytest.raises(CheckpointError, match=r"photo\.fusnet is not a fusnet model file"):
        fusnet.load(foreign)
    with pytest.raises(CheckpointError, match="does not exist"):
        fusnet.load(tmp_path / "missing.fusnet")
    # a run's model.pt is a checkpoint, not an exported file
    with pytest.raises(CheckpointError, match="fusnet export"):
        fusnet.load(exported["run"] / "model.pt")
    # a file from another export version
    payload = torch.load(exported["file"], weights_only=True)
    payload["export"]["version"] = EXPORT_VERSION + 1
    other = tmp_path / "future.fusnet"
    torch.save(payload, other)
    with pytest.raises(CheckpointError, match=f"format version {EXPORT_VERSION + 1}"):
        fusnet.load(other)
    # exporting something that is not a finished run
    with pytest.raises(CheckpointError, match=r"model\.pt"):
        export_model(tmp_path, tmp_path / "x.fusnet")


@pytest.mark.slow
def test_bad_image_inputs_name_the_problem(exported, tmp_path):
    encoder = fusnet.load(exported["file"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    with pytest.raises(fusnet.errors.DataError, match=r"broken\.jpg"):
        encoder.encode([broken])
    with pytest.raises(ValueError, match="no images"):
        encoder.encode([])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        encoder.encode(torch.zeros(2, 64, 64))
