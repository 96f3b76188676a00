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
