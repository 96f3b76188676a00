"""Tests for fusnet.models.attention: shapes, gradients, kernel sizes, hand computations."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from fusnet.errors import ConfigError
from fusnet.models.attention import (
    ATTENTION,
    CBAM,
    ECA,
    PSA,
    SE,
    CoordAttention,
    build_attention,
    eca_kernel_size,
    reduced_channels,
)

CHANNELS = [4, 40, 112, 320, 512]


def test_registry_names() -> None:
    assert set(ATTENTION) == {"eca", "se", "cbam", "coord", "psa"}
    assert ATTENTION["eca"] is ECA
    assert ATTENTION["se"] is SE
    assert ATTENTION["cbam"] is CBAM
    assert ATTENTION["coord"] is CoordAttention
    assert ATTENTION["psa"] is PSA


@pytest.mark.parametrize("name", sorted(ATTENTION))
@pytest.mark.parametrize("channels", CHANNELS)
def test_shape_gradient_finite(name: str, channels: int) -> None:
    torch.manual_seed(0)
    module = build_attention(name, channels)
    x = torch.randn(2, channels, 5, 7, requires_grad=True)  # (B, C, H, W), H != W
    y = module(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for pname, p in module.named_parameters():
        assert p.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(p.grad).all()


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_eval_single_image_one_by_one(name: str) -> None:
    module = build_attention(name, 64).eval()
    x = torch.randn(1, 64, 1, 1)  # (B, C, H, W)
    with torch.no_grad():
        y = module(x)
    assert y.shape == x.shape and torch.isfinite(y).all()


def test_unknown_name_and_bad_channels() -> None:
    with pytest.raises(ConfigError, match="unknown attention"):
        build_attention("nonlocal", 64)
    with pytest.raises(ConfigError):
        build_attention("se", 0)
    with pytest.raises(ConfigError):
        build_attention("psa", 3)


@pytest.mark.parametrize(
    ("channels", "expected"),
    [(512, 5), (1024, 5), (2048, 7), (40, 3), (112, 3), (320, 5), (64, 3), (256, 5)],
)
def test_eca_kernel_size(channels: int, expected: int) -> None:
    # k = odd(int((log2(C) + 1) / 2)): 512 -> 5, 1024 -> int(5.5) = 5, 2048 -> 6 -> 7,
    # 40 -> int(3.16) = 3, 112 -> int(3.90) = 3, 320 -> int(4.66) = 4 -> 5.
    assert eca_kernel_size(channels) == expected
    assert ECA(channels).kernel_size == expected
    assert ECA(channels).conv.weight.shape == (1, 1, expected)


def test_eca_fixed_kernel_and_validation() -> None:
    assert ECA(2048, kernel_size=3).kernel_size == 3
    with pytest.raises(ConfigError):
        ECA(64, kernel_size=4)


def test_eca_hand_computation() -> None:
    eca = ECA(4, kernel_size=3)
    with torch.no_grad():
        eca.conv.weight.copy_(torch.tensor([[[1.0, 2.0, -1.0]]]))
    # Channel c is constant m_c everywhere, so GAP gives m = (1, 2, 3, 4).
    m = torch.tensor([1.0, 2.0, 3.0, 4.0])
    x = m.view(1, 4, 1, 1).expand(1, 4, 2, 3).clone()  # (1, 4, 2, 3)
    # Cross-correlation with zero padding: y_c = 1*m_{c-1} + 2*m_c - 1*m_{c+1}.
    pre = torch.tensor(
        [0 + 2 * 1 - 2, 1 + 2 * 2 - 3, 2 + 2 * 3 - 4, 3 + 2 * 4 - 0], dtype=torch.float
    )
    expected = x * torch.sigmoid(pre).view(1, 4, 1, 1)
    torch.testing.assert_close(eca(x), expected)


def test_se_hand_computation() -> None:
    torch.manual_seed(1)
    se = SE(32)
    assert se.fc1.out_features == reduced_channels(32, 16) == 8
    x = torch.randn(2, 32, 3, 3)  # (B, C, H, W)
    s = x.mean(dim=(2, 3))  # (B, C)
    hidden = torch.clamp(s @ se.fc1.weight.T + se.fc1.bias, min=0)  # (B, 8)
    gate = 1 / (1 + torch.exp(-(hidden @ se.fc2.weight.T + se.fc2.bias)))  # (B, C)
    torch.testing.assert_close(se(x), x * gate[:, :, None, None])


def test_se_bottleneck_widths() -> None:
    assert SE(512).fc1.out_features == 32  # the paper's C / 16
    assert SE(2048).fc1.out_features == 128
    assert SE(40).fc1.out_features == 8  # floor of 8 instead of 40 // 16 = 2
    assert SE(4).fc1.out_features == 4  # never wider than C


def test_cbam_identity_gates() -> None:
    # Zero MLP and zero spatial conv: both gates are sigmoid(0) = 0.5, so A(f) = f / 4.
    cbam = CBAM(16)
    for p in cbam.parameters():
        nn.init.zeros_(p)
    x = torch.randn(2, 16, 4, 4)  # (B, C, H, W)
    torch.testing.assert_close(cbam(x), x * 0.25)


def test_coord_gates_depend_on_position() -> None:
    torch.manual_seed(0)
    coord = CoordAttention(32).eval()
    x = torch.randn(1, 32, 6, 6)  # (B, C, H, W)
    y = coord(x)
    ratio = y / x  # (1, C, H, W) = g_h * g_w, a rank-1 map per channel
    r = ratio[0, 0]  # (H, W)
    torch.testing.assert_close(r * r[0, 0], r[:, :1] * r[:1, :], rtol=1e-4, atol=1e-6)
    assert not torch.allclose(r, r[0, 0].expand_as(r))


@pytest.mark.parametrize(
    ("channels", "split", "groups"),
    [
        (512, 128, (1, 4, 8, 16)),
        (320, 80, (1, 4, 8, 16)),
        (40, 10, (1, 2, 5, 10)),
        (112, 28, (1, 4, 7, 14)),
        (42, 11, (1, 1, 1, 1)),
        (4, 1, (1, 1, 1, 1)),
    ],
)
def test_psa_split_and_groups(channels: int, split: int, groups: tuple[int, ...]) -> None:
    psa = PSA(channels)
    assert psa.split == split == math.ceil(channels / 4)
    assert tuple(conv.groups for conv in psa.branches) == groups
    assert tuple(conv.kernel_size[0] for conv in psa.branches) == (3, 5, 7, 9)


def test_psa_softmax_across_branches() -> None:
    # With all-zero SE weights every branch gets softmax weight 1/4.
    torch.manual_seed(0)
    psa = PSA(8)
    nn.init.zeros_(psa.se_fc1.weight)
    nn.init.zeros_(psa.se_fc1.bias)
    nn.init.zeros_(psa.se_fc2.weight)
    nn.init.zeros_(psa.se_fc2.bias)
    x = torch.randn(1, 8, 5, 5)  # (B, C, H, W)
    expected = torch.cat([conv(x) for conv in psa.branches], dim=1) / 4  # (B, C, H, W)
    torch.testing.assert_close(psa(x), expected)
