"""Multi-FusNet: outputs, ablation switches, attention choices."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from fusnet.config import ModelConfig
from fusnet.models import ATTENTION, MultiFusNet

TINY = ModelConfig(
    backbone="resnet18", pretrained="none", bits=16, block_mid=32, level_dim=64,
    hash_hidden=32, transformer_dim=32, transformer_heads=4,
)


def _model(**changes) -> MultiFusNet:
    torch.manual_seed(0)
    return MultiFusNet(dataclasses.replace(TINY, **changes), num_classes=5).eval()


def test_full_model_outputs_have_named_shapes():
    model = _model()
    out = model(torch.randn(2, 3, 64, 64))
    assert out.hash_logits.shape == (2, 16)
    assert out.class_logits.shape == (2, 5)
    assert [f.shape[1] for f in out.levels] == [128, 256, 512]
    assert [f.shape[-1] for f in out.levels] == [8, 4, 2]  # strides 8, 16, 32
    assert all(v.shape == (2, 64) for v in out.level_vectors)
    assert all(torch.isfinite(t).all() for t in (out.hash_logits, out.class_logits))


@pytest.mark.parametrize(
    ("cascade", "fusion", "transformer"),
    [(False, False, False), (True, False, False), (True, True, False), (True, False, True), (True, True, True)],
)
def test_table6_switches_change_the_module_and_keep_the_outputs(cascade, fusion, transformer):
    model = _model(cascade=cascade, fusion=fusion, transformer=transformer)
    head = model.head
    assert len(head.blocks) == (3 if cascade else 1)
    assert (head.enhancer is not None) == transformer
    assert all(isinstance(f, torch.nn.Identity) != fusion for f in head.fusions)
    assert head.hash_head.net[1].in_features == (3 if cascade else 1) * 64
    out = model(torch.randn(2, 3, 64, 64))
    assert out.hash_logits.shape == (2, 16)
    if not fusion:  # fused maps are the backbone maps themselves
        assert all(torch.equal(a, b) for a, b in zip(out.fused, out.levels, strict=True))


@pytest.mark.parametrize("attention", sorted(ATTENTION))
def test_every_attention_module_fits_the_fusion_branch(attention):
    model = _model(attention=attention)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.hash_logits.shape == (2, 16)
    assert not torch.equal(out.fused[0], out.levels[0])  # the attention branch contributes


def test_encode_gives_plus_minus_one_codes():
    codes = _model().encode(torch.randn(3, 3, 64, 64))
    assert codes.shape == (3, 16)
    assert set(codes.unique().tolist()) <= {-1.0, 1.0}


def test_gradients_reach_every_trainable_parameter():
    model = _model().train()
    out = model(torch.randn(4, 3, 64, 64))
    (out.hash_logits.square().mean() + out.class_logits.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []


def test_level_dropout_zeroes_lower_levels_per_image_while_training_only():
    model = _model(level_dropout=0.5, transformer=False)
    images = torch.randn(16, 3, 64, 64)
    with torch.no_grad():
        evaluated = model(images)
        plain = _model(transformer=False)(images)
        model.train()
        torch.manual_seed(1)
        trained = model(images)
    # Evaluation uses every level, unchanged by the switch.
    torch.testing.assert_close(evaluated.hash_logits, plain.hash_logits)
    top_eval, top_train = evaluated.level_vectors[-1], trained.level_vectors[-1]
    assert top_train.abs().sum(dim=1).gt(0).all()  # the top level is never dropped
    for v in trained.level_vectors[:-1]:  # each (16, 64)
        dropped = v.abs().sum(dim=1) == 0  # (16,)
        assert 0 < int(dropped.sum()) < 16  # some images lose the level, some keep it
    assert top_eval.shape == top_train.shape


def test_level_dropout_is_refused_out_of_range():
    from fusnet.config import RunConfig
    from fusnet.errors import ConfigError

    with pytest.raises(ConfigError, match="level_dropout"):
        RunConfig().replace(model=dataclasses.replace(TINY, level_dropout=1.0))


@pytest.mark.parametrize("pool", ["max", "avg", "avgmax"])
def test_level_pool_reduces_each_map_as_named(pool):
    from fusnet.models.multifusnet import LevelBlock

    block = LevelBlock(8, 4, 6, pool=pool).eval()
    x = torch.randn(2, 8, 5, 7)
    mapped = block.expand(block.reduce(x))  # (2, 6, 5, 7)
    expected = {"max": mapped.amax(dim=(2, 3)), "avg": mapped.mean(dim=(2, 3)),
                "avgmax": mapped.amax(dim=(2, 3)) + mapped.mean(dim=(2, 3))}[pool]
    torch.testing.assert_close(block(x), expected)


def test_level_pool_is_refused_when_unknown():
    from fusnet.config import RunConfig
    from fusnet.errors import ConfigError

    with pytest.raises(ConfigError, match="level_pool"):
        RunConfig().replace(model=dataclasses.replace(TINY, level_pool="gem"))


def test_lower_level_gate_starts_as_the_top_level_model_and_learns():
    torch.manual_seed(0)
    model = _model(lower_level_gate=True, transformer=False).eval()
    images = torch.randn(4, 3, 64, 64)
    out = model(images)
    # Gate 0: changing the lower levels' vectors leaves the hash logits unchanged.
    head = model.head.hash_head
    z = torch.cat(out.level_vectors, dim=1)  # (4, L * D)
    lower = head.gated_width
    moved = torch.cat([z[:, :lower] + 5.0, z[:, lower:]], dim=1)
    torch.testing.assert_close(head(moved), head(z))
    # ... and the gate gets a gradient, so the lower levels can come in.
    model.train()
    model(images).hash_logits.square().mean().backward()
    assert head.lower_gate.grad is not None and head.lower_gate.grad.abs().sum() > 0
    with torch.no_grad():
        head.lower_gate.fill_(1.0)
    model.eval()
    assert not torch.allclose(head(moved), head(z))


def test_lower_level_gate_keeps_the_plain_head_state_dict_keys():
    plain = set(_model().state_dict())
    gated = set(_model(lower_level_gate=True).state_dict())
    assert gated - plain == {"head.hash_head.lower_gate"}
    baseline = _model(lower_level_gate=True, cascade=False)  # one level: nothing to gate
    assert "head.hash_head.lower_gate" not in baseline.state_dict()
