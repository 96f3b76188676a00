"""Baselines (fusnet.methods): each loss against a hand computation, the V-step against brute
force, and a tiny end-to-end run per method (train -> metrics.json with mAP), resume included."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re

import numpy as np
import pytest
import torch

from fusnet.cli import main as cli_main
from fusnet.config import ModelConfig, RunConfig
from fusnet.data import split_train_val
from fusnet.errors import ConfigError
from fusnet.eval.encoding import load_codes
from fusnet.eval.retrieval import unpack_codes
from fusnet.methods import LEARNED_DATABASE, METHODS, NETWORK_DATABASE, HashOutput, build_method
from fusnet.methods.base import NoOptions, sign_codes
from fusnet.methods.baselines.adsh import ADSHOptions
from fusnet.methods.baselines.asymmetric import (
    asymmetric_loss,
    asymmetric_similarity,
    dcc_update,
    similarity_transpose_times,
    soft_ratio,
)
from fusnet.methods.baselines.dpsh import DPSHOptions, dpsh_loss
from fusnet.methods.baselines.exchnet import (
    channel_diversity_loss,
    mean_pairwise_hellinger,
    spatial_diversity_loss,
)
from fusnet.methods.baselines.hashnet import continuation_beta, hashnet_loss
from fusnet.methods.baselines.layers import copy_top_stage, top_stage_blocks
from fusnet.methods.baselines.semicon import (
    ChannelTransformer,
    SEMICONHead,
    attention_out_channels,
    attention_trunk,
    icon_groups,
    suppression_mask,
    trunk_channels,
)
from fusnet.methods.options import method_options, with_options
from fusnet.models.multifusnet import build_model_backbone
from fusnet.train.loop import load_checkpoint, load_model, train
from fusnet.train.preflight import validate_run
from tests.conftest import interrupt_in_epoch


def _softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _sign(x: float) -> float:
    return 1.0 if x >= 0 else -1.0


def _config(**changes) -> RunConfig:
    return RunConfig().replace(**{"model.bits": 2, **changes})


# --- DPSH -------------------------------------------------------------------------------

U_BATCH = [[0.5, -1.0], [2.0, 0.25]]
MEMORY = [[0.5, -1.0], [1.0, 1.0], [-0.5, 0.0]]  # latest outputs of N = 3 training images
SIM = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]


def test_dpsh_loss_by_hand() -> None:
    n, b, eta = 3, 2, 10.0
    likelihood = 0.0
    for i in range(b):
        for j in range(n):
            theta = 0.5 * _dot(U_BATCH[i], MEMORY[j])
            likelihood -= SIM[i][j] * theta - _softplus(theta)
    quantisation = sum((_sign(v) - v) ** 2 for row in U_BATCH for v in row)
    expected = (likelihood + eta * quantisation) / (n * b)
    total, lik, quant = dpsh_loss(torch.tensor(U_BATCH), torch.tensor(MEMORY), torch.tensor(SIM), eta)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert lik.item() == pytest.approx(likelihood / (n * b), rel=1e-6)
    assert quant.item() == pytest.approx(quantisation / (n * b), rel=1e-6)


def test_dpsh_method_writes_the_memory_and_pairs_against_all_fit_images() -> None:
    labels = torch.tensor([0, 1, 0])
    method = build_method("dpsh")(_config(method="dpsh"), labels, num_classes=2)
    u = torch.tensor(U_BATCH, requires_grad=True)
    index = torch.tensor([2, 0])  # the batch holds fit images 2 and 0
    loss, parts = method.loss(HashOutput(hash_logits=u), labels[index], index)
    memory = [[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]]
    memory[2], memory[0] = U_BATCH[0], U_BATCH[1]
    sim = [[1.0 if labels[index[i]] == labels[j] else 0.0 for j in range(3)] for i in range(2)]
    expected, _, _ = dpsh_loss(torch.tensor(U_BATCH), torch.tensor(memory), torch.tensor(sim), 10.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    torch.testing.assert_close(method.memory, torch.tensor(memory))
    loss.backward()
    assert u.grad is not None and torch.isfinite(u.grad).all()
    assert parts["loss"].item() == pytest.approx(loss.item())


# --- HashNet ------------------------------------------------------------------------------

H = [[0.5, -0.5], [0.25, 0.75], [-1.0, 0.5]]
H_LABELS = [0, 0, 1]


def test_hashnet_loss_by_hand() -> None:
    alpha = 5.0  # 10 / 2 bits
    pairs = [(i, j) for i in range(3) for j in range(3) if i != j]
    n1 = sum(H_LABELS[i] == H_LABELS[j] for i, j in pairs)  # 2 similar (ordered) pairs
    n0 = len(pairs) - n1  # 4 dissimilar
    total = 0.0
    for i, j in pairs:
        s = 1.0 if H_LABELS[i] == H_LABELS[j] else 0.0
        w = len(pairs) / n1 if s else len(pairs) / n0
        theta = alpha * _dot(H[i], H[j])
        total += w * (_softplus(theta) - s * theta)
    expected = total / len(pairs)
    loss, parts = hashnet_loss(torch.tensor(H), torch.tensor(H_LABELS), alpha)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert parts["similar_pairs"].item() == 2 and parts["dissimilar_pairs"].item() == 4


def test_hashnet_continuation_schedule_and_method() -> None:
    # The authors' network: beta = (1 + 0.005 t)^0.5 refreshed when t % 200 == 0 (t from 1).
    assert continuation_beta(0, 200, 0.005, 0.5) == 1.0
    assert continuation_beta(198, 200, 0.005, 0.5) == 1.0
    assert continuation_beta(199, 200, 0.005, 0.5) == pytest.approx(math.sqrt(2.0))
    assert continuation_beta(399, 200, 0.005, 0.5) == pytest.approx(math.sqrt(3.0))
    config = _config(**{"method": "hashnet", "options.beta_step": 1})
    method = build_method("hashnet")(config, torch.tensor(H_LABELS), num_classes=2)
    method.after_step()  # one step done: the next forward is t = 2 -> beta = sqrt(1.01)
    z = torch.tensor(H)
    loss, parts = method.loss(HashOutput(hash_logits=z), torch.tensor(H_LABELS), torch.arange(3))
    beta = math.sqrt(1.0 + 0.005 * 2)
    expected, _ = hashnet_loss(torch.tanh(beta * z), torch.tensor(H_LABELS), 10.0 / 2)
    assert parts["beta"].item() == pytest.approx(beta)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    assert "step" in method.state_dict()


# --- ADSH machinery -------------------------------------------------------------------------

FIT_LABELS = [0, 1, 0, 2]


def test_soft_similarity_by_hand() -> None:
    fit = torch.tensor(FIT_LABELS)
    omega = torch.tensor([0, 1])  # classes of the sampled images
    # Pairs Ω x Γ: class 0 matches 2 images, class 1 matches 1: 3 similar of 8.
    assert soft_ratio(omega, fit) == pytest.approx(3 / 5)
    s = asymmetric_similarity(torch.tensor([0, 1]), fit, 3 / 5)
    torch.testing.assert_close(s, torch.tensor([[1.0, -0.6, 1.0, -0.6], [-0.6, 1.0, -0.6, -0.6]]))
    hard = asymmetric_similarity(torch.tensor([2]), fit, None)
    torch.testing.assert_close(hard, torch.tensor([[-1.0, -1.0, -1.0, 1.0]]))


def test_asymmetric_loss_by_hand() -> None:
    u = [[0.5, -0.25], [0.9, 0.1]]
    v = [[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0]]
    s = [[1.0, -0.5, 1.0, -0.5], [-0.5, 1.0, -0.5, -0.5]]
    batch_rows = [0, 1]
    k, n, b, gamma, scale = 2, 4, 2, 200.0, 6.0
    hash_term = sum((_dot(u[i], v[j]) - k * s[i][j]) ** 2 for i in range(b) for j in range(n))
    quant = sum((v[batch_rows[i]][c] - u[i][c]) ** 2 for i in range(b) for c in range(k))
    expected = (hash_term + gamma * quant) / (n * b) * scale
    total, h, q = asymmetric_loss(
        torch.tensor(u), torch.tensor(v), torch.tensor(s), torch.tensor(v)[batch_rows], gamma, scale
    )
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert h.item() == pytest.approx(hash_term / (n * b) * scale, rel=1e-6)
    assert q.item() == pytest.approx(quant / (n * b) * scale, rel=1e-6)


def test_similarity_transpose_times_matches_the_explicit_matrix() -> None:
    torch.manual_seed(0)
    fit = torch.tensor([0, 1, 0, 2, 1, 1])
    omega = torch.tensor([1, 3, 4])
    outputs = torch.randn(3, 5)
    for rho in (None, 0.3):
        s = asymmetric_similarity(fit[omega], fit, rho)  # (|Ω|, N)
        expected = s.t() @ outputs
        got = similarity_transpose_times(outputs, fit[omega], fit, rho, num_classes=3)
        torch.testing.assert_close(got, expected)


def _objective(v: torch.Tensor, u: torch.Tensor, s: torch.Tensor, omega: torch.Tensor, gamma: float) -> float:
    k = v.shape[1]
    return float(((u @ v.t() - k * s) ** 2).sum() + gamma * ((v[omega] - u) ** 2).sum())


def test_dcc_bit_update_is_the_exact_minimiser() -> None:
    """Each bit column of the V-step minimises the objective given the other columns."""
    torch.manual_seed(1)
    fit = torch.tensor([0, 1, 0, 1])
    omega = torch.tensor([0, 3])
    u = torch.tanh(torch.randn(2, 2))
    s = asymmetric_similarity(fit[omega], fit, None)  # (2, 4)
    gamma, k = 3.0, 2
    v0 = torch.tensor([[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    expanded = torch.zeros(4, 2)
    expanded[omega] = u
    q = k * (s.t() @ u) + gamma * expanded
    v = dcc_update(v0.clone(), u, q)
    # bit 0 against brute force with bit 1 as it was, then bit 1 with the new bit 0.
    columns = list(itertools.product([-1.0, 1.0], repeat=4))
    best0 = min(columns, key=lambda c: _objective(torch.stack([torch.tensor(c), v0[:, 1]], 1), u, s, omega, gamma))
    assert v[:, 0].tolist() == list(best0)
    best1 = min(columns, key=lambda c: _objective(torch.stack([v[:, 0], torch.tensor(c)], 1), u, s, omega, gamma))
    assert v[:, 1].tolist() == list(best1)


def test_adsh_method_samples_omega_updates_v_and_defines_the_database() -> None:
    labels = torch.tensor([0, 1, 0, 2, 1, 2])
    config = _config(**{"method": "adsh", "options.num_samples": 4, "options.inner_epochs": 1,
                        "optim.epochs": 1})
    method = build_method("adsh")(config, labels, num_classes=3)
    assert method.database == LEARNED_DATABASE
    method.on_epoch_start(0)
    omega = method.epoch_subset()
    assert len(omega) == 4 and len(set(omega.tolist())) == 4
    rho = soft_ratio(labels[omega], labels)
    u = torch.tanh(torch.randn(4, 2, generator=torch.Generator().manual_seed(3)))
    loss, _ = method.loss(HashOutput(hash_logits=u), labels[omega], omega)
    s = asymmetric_similarity(labels[omega], labels, rho)
    expected, _, _ = asymmetric_loss(u, torch.zeros(6, 2), s, torch.zeros(4, 2), 200.0, 1.0)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    method.on_epoch_end(0)  # the V-step
    expanded = torch.zeros(6, 2)
    expanded[omega] = u
    q = 2 * (s.t() @ u) + 200.0 * expanded
    torch.testing.assert_close(method.codes, dcc_update(torch.zeros(6, 2), u, q))
    assert set(method.learned_database_codes().unique().tolist()) <= {-1.0, 1.0}


# --- SEMICON --------------------------------------------------------------------------------


def test_semicon_loss_is_adsh_scaled_by_12_over_k_and_v_starts_gaussian() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    config = _config(**{"model.bits": 6, "method": "semicon", "options.num_samples": 4,
                        "options.inner_epochs": 1})
    method = build_method("semicon")(config, labels, num_classes=2)
    v = method.codes.clone()
    assert not set(v.unique().tolist()) <= {-1.0, 1.0}  # N(0, 1), as the code's torch.randn
    method.on_epoch_start(0)
    omega = method.epoch_subset()
    u = torch.tanh(torch.randn(4, 6))
    loss, _ = method.loss(HashOutput(hash_logits=u), labels[omega], omega)
    s = asymmetric_similarity(labels[omega], labels, soft_ratio(labels[omega], labels))
    k, n, b = 6, 4, 4
    hand = (((u @ v.t() - k * s) ** 2).sum() + 200.0 * ((v[omega] - u) ** 2).sum()) / (n * b) * 12 / k
    assert loss.item() == pytest.approx(hand.item(), rel=1e-5)


def test_suppression_mask_by_hand() -> None:
    f = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])  # (1, 1, 2, 2)
    e = [math.exp(x) for x in (0.0, 1.0, 2.0, 3.0)]
    a = [x / sum(e) for x in e]
    mean = sum(a) / 4
    std = math.sqrt(sum((x - mean) ** 2 for x in a) / 3)  # unbiased, as torch.std_mean
    expected = [min(max((x - mean) / std**0.15 + 1.0, 0.0), 2.0) for x in a]
    assert suppression_mask(f).flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_semicon_head_splits_the_code_and_icon_keeps_shapes() -> None:
    backbone = build_model_backbone(ModelConfig(backbone="resnet18", pretrained="none"))
    for bits, split in ((12, (6, 2)), (32, (17, 5)), (8, (5, 1))):
        head = SEMICONHead(backbone, bits)
        assert head.hash_global.out_features == split[0]
        assert all(layer.out_features == split[1] for layer in head.hash_local)
    with pytest.raises(ConfigError, match="bits >= 6"):
        SEMICONHead(backbone, 4)
    icon = ChannelTransformer(512)  # 16 groups of 32 channels, as max(512 // 64, 16)
    assert icon.heads == 16
    x = torch.randn(2, 512, 3, 3)
    assert icon(x).shape == x.shape


# --- ExchNet --------------------------------------------------------------------------------


def test_exchnet_diversity_losses_by_hand() -> None:
    p = torch.tensor([[[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [1.0, 0.0, 0.0]]])  # (1, 3 parts, 3)

    def hellinger(a: list[float], b: list[float]) -> float:
        return math.sqrt(sum((math.sqrt(x) - math.sqrt(y)) ** 2 for x, y in zip(a, b, strict=True))) / math.sqrt(2)

    rows = p[0].tolist()
    mean_h = (hellinger(rows[0], rows[1]) + hellinger(rows[0], rows[2]) + hellinger(rows[1], rows[2])) / 3
    assert mean_pairwise_hellinger(p).item() == pytest.approx(mean_h, rel=1e-6)
    assert spatial_diversity_loss(p).item() == pytest.approx(1 - mean_h, rel=1e-6)
    assert channel_diversity_loss(p, 0.4).item() == pytest.approx(max(0.0, 0.4 - mean_h), abs=1e-7)
    assert channel_diversity_loss(p, 0.99).item() == pytest.approx(0.99 - mean_h, rel=1e-6)


def test_exchnet_loss_total_and_anchor_exchange() -> None:
    labels = torch.tensor([0, 1, 0, 1])
    config = _config(**{"model.bits": 4, "model.backbone": "resnet18", "model.pretrained": "none",
                        "method": "exchnet", "options.num_samples": 4,
                        "options.inner_epochs": 1, "options.align_start": 1, "options.parts": 2})
    cls = build_method("exchnet")
    model = cls.build_model(config, 2, build_model_backbone(config.model))
    method = cls(config, labels, num_classes=2)
    method.bind(model)
    assert method.anchors.shape == (2, 2, 512)
    method.on_epoch_start(0)
    omega = method.epoch_subset()
    assert method.forward_kwargs(labels[omega]) == {}  # no anchors yet
    out = model(torch.randn(4, 3, 64, 64))
    loss, parts = method.loss(out, labels[omega], omega)
    expected = (parts["loss_hash"] + 200.0 * parts["loss_quantisation"]
                + spatial_diversity_loss(out.extras["spatial"]) + channel_diversity_loss(out.extras["channel"], 0.4))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    method.on_epoch_end(0)  # builds the anchors: class means of the part features seen
    feats = out.extras["parts"].detach()
    batch_labels = labels[omega]
    for c in (0, 1):
        torch.testing.assert_close(method.anchors[c], feats[batch_labels == c].mean(0))
    kwargs = method.forward_kwargs(batch_labels)
    torch.testing.assert_close(kwargs["anchors"], method.anchors[batch_labels])
    assert set(kwargs["keep"].unique().tolist()) <= {0.0, 1.0}
    model.eval()
    levels = model.backbone(torch.randn(4, 3, 64, 64))
    all_anchor = model.head(levels, anchors=kwargs["anchors"], keep=torch.zeros(4, 2, 1))
    expected_u = torch.tanh(model.head.hash_layer(torch.cat(
        [kwargs["anchors"].flatten(1), levels[2].mean(dim=(2, 3))], dim=1)))
    torch.testing.assert_close(all_anchor.hash_logits, expected_u)


# --- other backbones (EfficientNet-Lite0) -----------------------------------------------------


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_top_stage_copies_map_the_stride16_level_to_the_stride32_level(name) -> None:
    torch.manual_seed(0)
    backbone = build_model_backbone(ModelConfig(backbone=name, pretrained="none")).eval()
    copies = copy_top_stage(backbone, "semicon")
    originals = top_stage_blocks(backbone, "semicon")
    assert len(copies) == len(originals) == (2 if name == "resnet18" else 5)
    own = {id(p) for p in backbone.parameters()}
    assert not any(id(p) in own for block in copies for p in block.parameters())  # independent
    with torch.no_grad():
        levels = backbone(torch.randn(2, 3, 64, 64))
        x = levels[1]  # (2, C, 4, 4)
        for block in copies:
            x = block.eval()(x)
    torch.testing.assert_close(x, levels[2], rtol=0, atol=0)  # (2, C', 2, 2)


def test_top_stage_of_efficientnet_lite0_is_blocks_5_and_6() -> None:
    backbone = build_model_backbone(ModelConfig(backbone="efficientnet_lite0", pretrained="none"))
    expected = list(backbone.body.blocks[5]) + list(backbone.body.blocks[6])
    assert all(a is b for a, b in zip(top_stage_blocks(backbone, "x"), expected, strict=True))


def test_top_stage_of_an_unknown_backbone_is_a_config_error() -> None:
    class Other(torch.nn.Module):
        pass

    with pytest.raises(ConfigError, match=r"method 'semicon'.*not Other"):
        copy_top_stage(Other(), "semicon")


def test_attention_trunk_projects_only_when_channels_do_not_divide_by_64() -> None:
    assert [trunk_channels(c) for c in (64, 112, 256, 1024, 1)] == [64, 128, 256, 1024, 64]
    assert attention_out_channels(112) == 8 and attention_out_channels(1024) == 64
    for channels, projected in ((256, False), (1024, False), (112, True), (40, True)):
        trunk = attention_trunk(channels)
        first = trunk[0]
        convs = [m for m in first.modules() if isinstance(m, torch.nn.Conv2d)]
        is_projection = isinstance(first, torch.nn.Sequential)
        assert is_projection == projected, channels
        assert len(trunk) == (6 if projected else 5)
        if projected:
            assert (convs[0].in_channels, convs[0].out_channels) == (channels, trunk_channels(channels))
            assert convs[0].kernel_size == (1, 1)
            assert isinstance(first[1], torch.nn.BatchNorm2d)
        x = torch.randn(2, channels, 5, 5)
        assert trunk(x).shape == (2, attention_out_channels(channels), 5, 5)


def test_icon_groups_divide_the_channels() -> None:
    # The code's max(C // 64, 16) where it divides C: ResNet and EfficientNet-Lite0 widths.
    assert [icon_groups(c) for c in (512, 2048, 192, 320)] == [16, 32, 16, 16]
    assert icon_groups(40) == 10 and icon_groups(17) == 1  # else the largest divisor not above it
    for channels in (192, 320, 40):
        icon = ChannelTransformer(channels)
        assert channels % icon.heads == 0
        x = torch.randn(2, channels, 2, 2)
        assert icon(x).shape == x.shape
    with pytest.raises(ConfigError, match="do not split into 7 groups"):
        ChannelTransformer(192, heads=7)


def test_semicon_and_exchnet_heads_train_on_efficientnet_lite0() -> None:
    torch.manual_seed(0)
    for method in ("semicon", "exchnet"):
        config = _config(**{"model.bits": 12, "model.backbone": "efficientnet_lite0",
                            "model.pretrained": "none", "method": method})
        model = build_method(method).build_model(config, 3, build_model_backbone(config.model))
        levels = [f.detach() for f in model.backbone(torch.randn(2, 3, 64, 64))]  # as cached
        assert [f.shape[1:] for f in levels] == [(40, 8, 8), (112, 4, 4), (320, 2, 2)]
        out = model.head(levels)
        assert out.hash_logits.shape == (2, 12)
        out.hash_logits.sum().backward()
        trunk = (model.head.attention.trunk if method == "semicon" else model.head.attention[0])
        assert trunk[0][0].weight.shape == (128, 112, 1, 1)  # the 112 -> 128 projection
        params = [p for p in model.head.parameters() if p.requires_grad]
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)
        if method == "semicon":
            assert out.extras["attention"].shape == (2, 3, 4, 4)
            icons = [m for m in model.head.refine_global if isinstance(m, ChannelTransformer)]
            assert [m.norm.num_features for m in icons] == [192, 192, 192, 320]
            # The backbone's own blocks.5/.6 are replaced by the head's copies: frozen.
            blocks = model.backbone.body.blocks
            assert not any(p.requires_grad for i in (5, 6) for p in blocks[i].parameters())
            assert all(p.requires_grad for p in blocks[4].parameters())
        else:
            assert out.extras["parts"].shape == (2, 4, 320)
            assert out.extras["attention"].shape == (2, 4, 4, 4)
            assert model.head.hash_layer.in_features == 320 * 5


# --- registry, config, end to end -------------------------------------------------------------


def test_registry_and_unknown_method() -> None:
    assert set(METHODS) == {"dpsh", "hashnet", "adsh", "semicon", "exchnet"}
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        build_method("nope")
    assert RunConfig().method == "multifusnet"
    assert RunConfig.from_dict(RunConfig().replace(method="adsh").to_dict()).method == "adsh"


def _legacy_dict(config: RunConfig) -> dict:
    """``config`` in the form before each method owned its options: one flat ``baseline``
    section of every method's options (``adsh_gamma``), the run's method's values in it."""
    raw = config.to_dict()
    options = raw.pop("options")
    flat = {f"{m}_{f.name}": f.default for m in METHODS for f in dataclasses.fields(METHODS[m].Options)}
    flat.update({f"{config.method}_{k}": v for k, v in options.items()})
    return {**raw, "baseline": flat}


@pytest.mark.parametrize("method", list(METHODS))
def test_each_method_owns_frozen_options_recorded_as_its_hyperparameters(method) -> None:
    cls = METHODS[method]
    assert dataclasses.is_dataclass(cls.Options) and cls.Options.__dataclass_params__.frozen
    assert cls.Options.__module__ == cls.__module__  # beside the method, in its own module
    config = _config(method=method)
    assert config.options == {}  # the config holds data; the method parses it
    assert method_options(method, config.options) == cls.Options()
    assert with_options(config).options == dataclasses.asdict(cls.Options())
    instance = cls(config, torch.tensor([0, 1, 0, 1]), num_classes=2)
    assert instance.options == cls.Options()
    assert instance.hyperparameters() == dataclasses.asdict(cls.Options())
    assert instance.describe()["hyperparameters"] == dataclasses.asdict(cls.Options())
    # The JSON form round-trips, and the old flat form reads as the same config.
    changed = config.replace(**{f"options.{dataclasses.fields(cls.Options)[0].name}": 3})
    assert RunConfig.from_dict(changed.to_dict()) == changed
    assert with_options(RunConfig.from_dict(_legacy_dict(changed))) == with_options(changed)


def test_configuration_holds_options_as_data_and_the_method_checks_them() -> None:
    assert RunConfig().options == {} and RunConfig().to_dict()["options"] == {}
    assert method_options("multifusnet", {}) == NoOptions()
    adsh = RunConfig().replace(**{"method": "adsh", "options.num_samples": 60})
    assert adsh.options == {"num_samples": 60}
    assert method_options("adsh", adsh.options) == ADSHOptions(num_samples=60)
    assert adsh.replace(method="dpsh").options == {}  # a new method: its defaults
    assert RunConfig(method="adsh", options=ADSHOptions(gamma=2.0)).options["gamma"] == 2.0

    def problems(config: RunConfig) -> str:
        with pytest.raises(ConfigError) as caught:
            validate_run(config)  # the training preflight: every problem at once
        return str(caught.value)

    assert re.search(r"\['gamma'\]: method 'dpsh' takes the options \['eta'\]",
                     problems(RunConfig().replace(**{"method": "dpsh", "options.gamma": 1.0})))
    assert "method 'multifusnet' has no options of its own" in problems(
        RunConfig().replace(**{"options.eta": 1.0}))
    assert "unknown options config key" in problems(
        RunConfig.from_dict({"method": "hashnet", "options": {"eta": 1.0}}))
    assert "options.num_samples (--adsh-num-samples) = 0: must be >= 1" in problems(
        adsh.replace(**{"options.num_samples": 0}))
    assert "options.exchange_prob (--exchnet-exchange-prob) = 2" in problems(
        RunConfig().replace(**{"method": "exchnet", "options.exchange_prob": 2.0}))
    assert "must be an integer" in problems(adsh.replace(**{"options.inner_epochs": 1.5}))
    with pytest.raises(ConfigError, match="options are DPSHOptions, but method 'adsh' takes"):
        method_options("adsh", DPSHOptions())
    with pytest.raises(ConfigError, match=r"options.num_samples \(--adsh-num-samples\) = 0"):
        build_method("adsh")(adsh.replace(**{"options.num_samples": 0}), torch.tensor([0, 1]),
                             num_classes=2)  # a method built directly checks them too


def test_old_flat_baseline_section_is_migrated() -> None:
    new = RunConfig().replace(**{"method": "exchnet", "options.align_start": 2,
                                 "options.num_samples": 500})
    old = _legacy_dict(new)
    old["baseline"]["adsh_gamma"] = 1.0  # another method's option had no effect: dropped
    assert with_options(RunConfig.from_dict(old)) == with_options(new)
    mf = RunConfig.from_dict(_legacy_dict(RunConfig()))
    assert mf == RunConfig() and mf.options == {}
    with pytest.raises(ConfigError, match=r"unknown options config key\(s\) \['gamma'\]"):
        validate_run(RunConfig.from_dict({**old, "method": "dpsh", "baseline": {"dpsh_gamma": 1.0}}))
    with pytest.raises(ConfigError, match="both 'options' and the old 'baseline'"):
        RunConfig.from_dict({**old, "options": {}})


def test_run_names_use_the_old_dotted_option_keys() -> None:
    """Run folders are named as before each method owned its options (no run renamed)."""
    from fusnet.experiments.runs import run_hash, run_identity

    config = RunConfig().replace(**{"method": "exchnet", "options.align_start": 2,
                                    "options.num_samples": 500, "optim.lr": 0.001})
    identity = run_identity(config)
    assert identity == {"method": "exchnet", "optim.lr": 0.001,
                        "baseline.exchnet_align_start": 2, "baseline.exchnet_num_samples": 500}
    assert run_hash(RunConfig().replace(method="dpsh")) == run_hash(
        RunConfig.from_dict(_legacy_dict(RunConfig().replace(method="dpsh"))))


def test_an_old_checkpoint_config_matches_the_new_form() -> None:
    from fusnet.train.checkpoints import _config_differences, _with_defaults

    config = with_options(RunConfig().replace(**{"method": "adsh", "options.num_samples": 60}))
    assert _config_differences(_with_defaults(_legacy_dict(config)), config.to_dict()) == []
    other = with_options(config.replace(**{"options.num_samples": 61}))
    assert _config_differences(_with_defaults(_legacy_dict(config)), other.to_dict()) == [
        "options.num_samples: checkpoint 60 vs now 61"]


def test_cli_shows_each_methods_options_in_its_group_and_refuses_anothers(capsys) -> None:
    from fusnet.cli import build_parser

    train_help = next(
        a for a in build_parser()._subparsers._group_actions[0].choices.items() if a[0] == "train"
    )[1].format_help()
    for method in METHODS:
        assert f"{method} options (with --method {method}):" in train_help
    assert "--adsh-num-samples" in train_help and "--exchnet-align-start" in train_help
    assert cli_main(["train", "--method", "dpsh", "--adsh-num-samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "--adsh-num-samples is an option of --method adsh, but the method is dpsh" in err
    assert "dpsh's options: --dpsh-eta" in err
    with pytest.raises(SystemExit):  # --method choices come from the registry
        cli_main(["train", "--method", "dsph"])


TINY_OPTIONS: dict[str, dict[str, int]] = {
    "adsh": {"options.num_samples": 40, "options.inner_epochs": 1},
    "semicon": {"options.num_samples": 32, "options.inner_epochs": 1},
    "exchnet": {"options.num_samples": 32, "options.inner_epochs": 1, "options.align_start": 1},
}
"""Each method's options in the tiny runs (its own only: another method's are an error)."""


def tiny_config(tmp_path, method: str, **changes) -> RunConfig:
    base = RunConfig().replace(
        **{
            "method": method,
            "data.dataset": "synthetic",
            "data.synthetic_classes": 4,
            "data.image_size": 64,
            "data.batch_size": 16,
            "data.eval_batch_size": 32,
            "model.backbone": "resnet18",
            "model.pretrained": "none",
            "model.bits": 8,
            "optim.epochs": 2,
            "optim.lr": 0.01,
            **TINY_OPTIONS.get(method, {}),
            "device": "cpu",
            "output_dir": str(tmp_path / "run"),
        }
    )
    return base.replace(**changes)


END_TO_END = [
    ("dpsh", "full", NETWORK_DATABASE),
    ("hashnet", "full", NETWORK_DATABASE),
    ("adsh", "full", LEARNED_DATABASE),
    ("semicon", "frozen", LEARNED_DATABASE),
    ("exchnet", "frozen", LEARNED_DATABASE),
]


@pytest.mark.slow
@pytest.mark.parametrize(("method", "mode", "database"), END_TO_END)
def test_end_to_end_writes_metrics_with_map(tmp_path, method, mode, database) -> None:
    config = tiny_config(tmp_path, method, mode=mode, select="last")
    result = train(config)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == method
    assert metrics["database"] == database
    assert metrics["method_details"]["name"] == method
    assert 0.0 <= metrics["map_index_ties"] <= 1.0 and 0.0 <= metrics["map_tie_aware"] <= 1.0
    assert metrics["map_index_ties"] == result.metrics["map_index_ties"]
    assert len(metrics["history"]) == 2 and all(math.isfinite(h["loss"]) for h in metrics["history"])
    # model.pt rebuilds the method's network, which encodes like the trained one.
    model, loaded = load_model(tmp_path / "run" / "model.pt")
    assert loaded.method == method and model.method == method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["semicon", "exchnet"])
def test_end_to_end_on_efficientnet_lite0_frozen(tmp_path, method) -> None:
    config = tiny_config(tmp_path, method, mode="frozen", select="last",
                         **{"model.backbone": "efficientnet_lite0"})
    result = train(config)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["method"] == method and metrics["database"] == LEARNED_DATABASE
    assert 0.0 <= metrics["map_index_ties"] <= 1.0
    assert metrics["map_index_ties"] == result.metrics["map_index_ties"]
    assert len(metrics["history"]) == 2 and all(math.isfinite(h["loss"]) for h in metrics["history"])
    model, loaded = load_model(tmp_path / "run" / "model.pt")
    assert loaded.model.backbone == "efficientnet_lite0" and model.method == method


@pytest.mark.slow
def test_cli_trains_a_baseline_and_learned_codes_are_the_database(tmp_path, capsys) -> None:
    out = tmp_path / "cli"
    code = cli_main([
        "train", "--method", "adsh", "--dataset", "synthetic", "--synthetic-classes", "4",
        "--image-size", "64", "--batch-size", "16", "--backbone", "resnet18", "--pretrained", "none",
        "--bits", "8", "--epochs", "2", "--adsh-num-samples", "40", "--adsh-inner-epochs", "2",
        "--mode", "frozen", "--device", "cpu", "--output-dir", str(out),
    ])
    assert code == 0
    run = out / "bits8"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["method"] == "adsh" and metrics["database"].startswith(LEARNED_DATABASE)
    assert json.loads((out / "metrics.json").read_text())["method"] == "adsh"
    # The database rows of the fit images are the learned V of the selected epoch; the
    # held-out validation images are encoded by the network.
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["method"] == "adsh" and manifest["data"]["val_images"] > 0
    state = load_checkpoint(run / "checkpoints" / "best.pt")["criterion"]
    codes = load_codes(run / "codes.npz")
    fit_index, val_index = split_train_val(codes["db_labels"], 0.1, seed=0)
    assert torch.equal(torch.as_tensor(codes["db_labels"][fit_index]), state["fit_labels"])
    np.testing.assert_array_equal(codes["db_codes"][fit_index], sign_codes(state["codes"]).numpy())
    assert set(np.unique(codes["db_codes"][val_index]).tolist()) <= {-1.0, 1.0}
    # `fusnet encode --split train` gives that database (V), --network-codes the network's.
    assert cli_main(["encode", "--model", str(run / "model.pt"), "--split", "train",
                     "--output", str(tmp_path / "db.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "db.npz") as db, np.load(run / "codes.npz") as saved:
        assert np.array_equal(db["codes"], saved["db_codes"])
        assert np.array_equal(db["labels"], saved["db_labels"])
    assert cli_main(["encode", "--model", str(run / "model.pt"), "--split", "train", "--network-codes",
                     "--output", str(tmp_path / "net.npz"), "--device", "cpu"]) == 0
    with np.load(tmp_path / "net.npz") as net:
        network = unpack_codes(net["codes"], int(net["bits"]))
    assert network.shape == codes["db_codes"].shape
    assert not np.array_equal(network[fit_index], codes["db_codes"][fit_index])
    np.testing.assert_array_equal(network[val_index], codes["db_codes"][val_index])
    # Codes that do not line up with the split (another order) are refused, naming the file.
    with np.load(run / "codes.npz") as saved:
        shuffled = {k: saved[k] for k in saved.files}
    shuffled["db_labels"] = shuffled["db_labels"][::-1].copy()
    np.savez(run / "codes.npz", **shuffled)
    bad = ["encode", "--model", str(run / "model.pt"), "--split", "train",
           "--output", str(tmp_path / "bad.npz"), "--device", "cpu"]
    capsys.readouterr()
    assert cli_main(bad) == 1  # a runtime error: one line on stderr (fusnet.cli.errors)
    err = capsys.readouterr().err
    assert "codes.npz" in err and "do not line up" in err
    (run / "codes.npz").unlink()
    assert cli_main(bad) == 1
    assert "is missing; pass --network-codes" in capsys.readouterr().err
    assert not (tmp_path / "bad.npz").exists()


@pytest.mark.slow
@pytest.mark.parametrize("method", ["adsh", "exchnet", "hashnet", "dpsh"])
def test_resume_continues_exactly(tmp_path, monkeypatch, method) -> None:
    changes = {"mode": "frozen", "select": "last", "optim.epochs": 3,
               **{"adsh": {"options.inner_epochs": 2}, "hashnet": {"options.beta_step": 2},
                  # anchors built after epoch 1, used after
                  "exchnet": {"options.inner_epochs": 1, "options.align_start": 1},
                  }.get(method, {})}
    straight = train(tiny_config(tmp_path / "a", method, **changes))

    interrupted = tiny_config(tmp_path / "b", method, **changes)
    interrupt_in_epoch(interrupted, monkeypatch, epoch=1)
    resumed = train(interrupted, resume=True)

    assert resumed.metrics["map_index_ties"] == straight.metrics["map_index_ties"]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    a = torch.load(tmp_path / "a" / "run" / "checkpoints" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "run" / "checkpoints" / "last.pt", weights_only=True)
    for part in ("model", "criterion"):
        assert all(torch.equal(a[part][key], b[part][key]) for key in a[part]), part
