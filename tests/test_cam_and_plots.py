"""Grad-CAM of the fusion branch (Fig. 10) and the figures' plotting helpers."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch

from fusnet.config import ModelConfig, RunConfig
from fusnet.errors import ConfigError
from fusnet.experiments import cam, plots
from fusnet.models import MultiFusNet
from fusnet.models.proxy_codes import class_proxy_codes

TINY = {"backbone": "resnet18", "pretrained": "none", "bits": 8, "block_mid": 8, "level_dim": 16,
        "hash_hidden": 8, "transformer_dim": 8, "transformer_heads": 2}


def _model(**changes) -> MultiFusNet:
    torch.manual_seed(0)
    return MultiFusNet(ModelConfig(**{**TINY, **changes}), num_classes=3).eval()


@pytest.fixture(autouse=True)
def _one_thread_and_no_open_figures():
    # Tiny models run fastest on one thread (and do not fight a busy machine's cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
    plt.close("all")


# --- CAM ------------------------------------------------------------------------------------


def test_cam_model_returns_one_tensor_and_taps_each_level():
    model = _model()
    images = torch.randn(2, 3, 32, 32)
    wrapper = cam.CamModel(model)
    assert torch.allclose(wrapper(images), model(images).hash_logits)
    assert cam.CamModel(model, output="class")(images).shape == (2, 3)
    assert wrapper.levels == [0, 1, 2]
    assert wrapper.layer("fused", 1) is model.head.fusions[1]
    assert wrapper.layer("attention", 1) is model.head.fusions[1].attention
    with pytest.raises(ConfigError, match="kind"):
        wrapper.layer("gradients", 0)
    top_only = cam.CamModel(_model(cascade=False, fusion=False))
    assert top_only.levels == [2]
    with pytest.raises(ConfigError, match="fusion"):
        top_only.layer("attention", 2)
    with pytest.raises(ConfigError, match="levels"):
        top_only.layer("original", 0)


def test_hash_code_target_is_the_agreement_with_the_code():
    target = cam.HashCodeTarget(torch.tensor([1.0, -1.0, 1.0]))
    assert float(target(torch.tensor([0.5, 2.0, -1.0]))) == pytest.approx(0.5 - 2.0 - 1.0)


@pytest.mark.parametrize("target", ["hash", "class"])
def test_compute_cams_gives_a_map_per_kind_and_level(target):
    model = _model()
    proxy = class_proxy_codes(3, 8, 3, seed=0)
    maps = cam.compute_cams(model, torch.randn(2, 3, 32, 32), [0, 2], proxy, target=target)
    levels = range(3) if target == "hash" else [2]  # the classifier reads the top level only
    assert set(maps) == {(k, level) for k in cam.CAM_KINDS for level in levels}
    for m in maps.values():
        assert m.shape == (2, 32, 32) and m.dtype == np.float32
        assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 + 1e-6
    table = cam.cam_table(maps, [7, 9], ["a", "b"])
    assert len(table) == 2 * len(maps) and set(table["image"]) == {7, 9}
    assert table["mean_activation"].between(0, 1).all()
    summary = cam.cam_summary(maps)
    assert set(summary) == {f"{k}/level{i + 1}" for k in cam.CAM_KINDS for i in levels}
    with pytest.raises(ConfigError, match="proxy"):
        cam.compute_cams(model, torch.randn(1, 3, 64, 64), [0], None, target="hash")


def test_load_cam_batch_and_display_images():
    config = RunConfig().replace(**{"data.dataset": "synthetic", "data.image_size": 64,
                                    "data.synthetic_classes": 4})
    model = _model()
    images, labels, indices, names = cam.load_cam_batch(config, model, 3)
    assert images.shape == (3, 3, 64, 64) and len(set(labels)) == 3 and len(names) == 3
    assert indices.tolist() == sorted(indices.tolist())  # one per class, classes spread
    shown = cam.display_images(images, model.backbone.mean, model.backbone.std)
    assert shown.shape == (3, 64, 64, 3) and 0 <= shown.min() and shown.max() <= 1


# --- plots ------------------------------------------------------------------------------------


def _visible_axes(fig) -> int:
    return sum(ax.get_visible() for ax in fig.axes if ax.get_label() != "<colorbar>")


def test_panel_and_generalisation_figures():
    frame = pd.DataFrame({"dataset": ["a", "a", "b", "b"], "bits": [12, 48, 12, 48],
                          "attention": ["eca", "se", "eca", "se"], "map": [1.0, 2.0, 3.0, 4.0]})
    fig = plots.panel_bars(frame, hue="attention", ncols=1)
    assert _visible_axes(fig) == 2 and len(fig.legends) == 1
    table5 = pd.DataFrame({"dataset": ["x", "x", "y"], "bits": [12, 48, 12],
                           "paper": [1.0, 2.0, np.nan], "map": [np.nan, np.nan, 5.0]})
    bars, lines = plots.generalisation_figures(table5)
    assert _visible_axes(bars) == 2 and _visible_axes(lines) == 2
    table6 = pd.DataFrame({"configuration": ["baseline", "cascading"], "dataset": ["d", "d"],
                           "bits": [12, 12], "paper": [1.0, 2.0], "map": [0.5, np.nan]})
    assert _visible_axes(plots.ablation_figure(table6, ["baseline", "cascading"])) == 2


def test_convergence_retrieval_cam_and_code_figures():
    history = pd.DataFrame({"dataset": ["a"] * 3, "bits": [12] * 3, "epoch": [1, 2, 3],
                            "val_map": [1.0, 2.0, 3.0]})
    assert _visible_axes(plots.convergence_figure(history)) == 1
    image = np.zeros((8, 8, 3))
    fig = plots.retrieval_figure([image] * 2, [[image] * 3] * 2, np.array([[1, 0, 1], [0, 0, 1]], bool),
                                 np.zeros((2, 3)), ["q1", "q2"], title="t")
    assert len(fig.axes) == 2 * 4
    maps = {(k, level): np.zeros((2, 8, 8)) for k in cam.CAM_KINDS for level in range(3)}
    assert len(plots.cam_figure(np.zeros((2, 8, 8, 3)), maps, cam.CAM_KINDS, [0, 1, 2]).axes) == 2 * 10
    codes = {12: np.sign(np.random.default_rng(0).standard_normal((5, 12))) + 0.0}
    codes[12][codes[12] == 0] = 1
    assert _visible_axes(plots.code_heatmaps(codes)) == 1
    assert _visible_axes(plots.distance_histograms(codes)) == 1
