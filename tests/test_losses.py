"""Multi-task balanced loss (method.md section 4), against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from fusnet.errors import ConfigError
from fusnet.models.losses import (
    MultiTaskLoss,
    classification_loss,
    hash_loss,
    optimal_alpha,
    smoothed_cross_entropy,
    smoothed_targets,
)

LOGITS = [[2.0, 0.5, -1.0], [0.0, 1.0, 3.0]]
TARGET = [0, 1]


def _hand_smoothed_ce(logits: list[list[float]], target: list[int], p: float) -> float:
    total = 0.0
    for row, y in zip(logits, target, strict=True):
        lse = math.log(sum(math.exp(v) for v in row))
        q_other = (1.0 - p) / (len(row) - 1)
        total -= sum((p if c == y else q_other) * (v - lse) for c, v in enumerate(row))
    return total / len(logits)


def test_smoothed_targets() -> None:
    soft = smoothed_targets(torch.tensor([2, 0]), 5, 0.9)
    torch.testing.assert_close(soft.sum(dim=1), torch.ones(2))
    assert soft[0].tolist() == pytest.approx([0.025, 0.025, 0.9, 0.025, 0.025])


def test_smoothed_cross_entropy_by_hand() -> None:
    loss = smoothed_cross_entropy(torch.tensor(LOGITS), torch.tensor(TARGET), 0.9)
    assert loss.item() == pytest.approx(_hand_smoothed_ce(LOGITS, TARGET, 0.9), rel=1e-6)


def test_differs_from_torch_label_smoothing_convention() -> None:
    logits, target = torch.tensor(LOGITS), torch.tensor(TARGET)
    c = logits.shape[1]
    ours = smoothed_cross_entropy(logits, target, 0.9)
    # torch spreads ε over all C classes: label_smoothing=0.1 puts 0.9 + 0.1/C on the truth
    torch_01 = F.cross_entropy(logits, target, label_smoothing=0.1)
    assert abs(ours.item() - torch_01.item()) > 1e-3
    # ... and matches ours when ε = C (1 - p) / (C - 1)
    torch_eq = F.cross_entropy(logits, target, label_smoothing=c * 0.1 / (c - 1))
    torch.testing.assert_close(ours, torch_eq)


def test_smoothed_cross_entropy_rejects_bad_input() -> None:
    with pytest.raises(ConfigError):
        smoothed_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1]), 1.5)
    with pytest.raises(ValueError):
        smoothed_cross_entropy(torch.zeros(2, 1), torch.tensor([0, 0]))
    with pytest.raises(ValueError):
        smoothed_cross_entropy(torch.zeros(2, 3), torch.tensor([0, 1, 2]))


def test_loss_is_float32_for_low_precision_logits() -> None:
    loss = smoothed_cross_entropy(torch.tensor(LOGITS).bfloat16(), torch.tensor(TARGET))
    assert loss.dtype == torch.float32


def test_classification_loss_averages_logits() -> None:
    zoom = [[1.0, 1.0, 1.0], [2.0, -1.0, 0.0]]
    mean = [
        [(a + b) / 2 for a, b in zip(r1, r2, strict=True)]
        for r1, r2 in zip(LOGITS, zoom, strict=True)
    ]
    target = torch.tensor(TARGET)
    loss = classification_loss(torch.tensor(LOGITS), torch.tensor(zoom), target)
    assert loss.item() == pytest.approx(_hand_smoothed_ce(mean, TARGET, 0.9), rel=1e-6)
    plain = classification_loss(torch.tensor(LOGITS), None, target)
    assert plain.item() == pytest.approx(_hand_smoothed_ce(LOGITS, TARGET, 0.9), rel=1e-6)


def test_hash_loss_by_hand() -> None:
    u = torch.tensor([[0.5, -0.2], [1.5, 0.0]])
    codes = torch.tensor([[1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]])
    target = torch.tensor([2, 0])
    # (0.5-1)² + (-0.2-1)² + (1.5-1)² + (0+1)² = 0.25 + 1.44 + 0.25 + 1 = 2.94, over B·k = 4
    assert hash_loss(u, codes, target).item() == pytest.approx(2.94 / 4)
    with pytest.raises(ValueError):
        hash_loss(u, codes[:, :1], target)


def test_multitask_loss_value_and_gradients() -> None:
    crit = MultiTaskLoss()
    lh = torch.tensor(0.7, requires_grad=True)
    lc = torch.tensor(2.3, requires_grad=True)
    total, parts = crit(lh, lc)
    assert total.item() == pytest.approx(0.7 + 2.3 + 2 * math.log(2.0), rel=1e-6)
    with torch.no_grad():
        crit.alpha1.fill_(0.5)
        crit.alpha2.fill_(2.0)
    total, parts = crit(lh, lc)
    expected = 0.7 / 0.25 + 2.3 / 4.0 + math.log(1.5) + math.log(3.0)
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(expected, rel=1e-6)
    assert parts["weighted_hash"].item() == pytest.approx(0.7 / 0.25, rel=1e-6)
    assert parts["alpha2"].item() == 2.0
    assert not any(v.requires_grad for v in parts.values())
    total.backward()
    # dL/dα = -2 L_task / α³ + 1 / (1 + α)
    assert crit.alpha1.grad.item() == pytest.approx(-2 * 0.7 / 0.125 + 1 / 1.5, rel=1e-5)
    assert crit.alpha2.grad.item() == pytest.approx(-2 * 2.3 / 8.0 + 1 / 3.0, rel=1e-5)
    assert lh.grad.item() == pytest.approx(1 / 0.25)
    assert lc.grad.item() == pytest.approx(1 / 4.0)


def test_multitask_exact_for_negative_alpha_without_floor() -> None:
    crit = MultiTaskLoss()
    with torch.no_grad():
        crit.alpha1.fill_(-0.5)
    total, _ = crit(torch.tensor(0.7), torch.tensor(2.3))
    assert total.item() == pytest.approx(0.7 / 0.25 + 2.3 + math.log(0.5) + math.log(2.0))
    with torch.no_grad():
        crit.alpha1.fill_(-1.5)
    total, _ = crit(torch.tensor(0.7), torch.tensor(2.3))
    assert math.isnan(total.item())


def test_multitask_floor_keeps_loss_finite_and_pushes_alpha_up() -> None:
    floor = 0.01
    crit = MultiTaskLoss(alpha_min=floor)
    with torch.no_grad():
        crit.alpha1.fill_(-3.0)
    total, _ = crit(torch.tensor(0.7), torch.tensor(2.3))
    expected = 0.7 / floor**2 + 2.3 + math.log(1 + floor) + math.log(2.0)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    grad = crit.alpha1.grad.item()
    assert grad == pytest.approx(-2 * 0.7 / floor**3 + 1 / (1 + floor), rel=1e-4)
    assert grad < 0  # gradient descent raises α1 again
    # above the floor the formula is untouched
    with torch.no_grad():
        crit.alpha1.fill_(0.5)
    total, _ = crit(torch.tensor(0.7), torch.tensor(2.3))
    assert total.item() == pytest.approx(0.7 / 0.25 + 2.3 + math.log(1.5) + math.log(2.0))
    with pytest.raises(ConfigError):
        MultiTaskLoss(alpha_min=0.0)


def test_optimal_alpha_is_stationary() -> None:
    a = optimal_alpha(1.0)
    assert a**3 == pytest.approx(2 * (1 + a))
    assert a == pytest.approx(1.7693, abs=1e-4)
    crit = MultiTaskLoss(init_alpha=a)
    total, _ = crit(torch.tensor(1.0), torch.tensor(1.0))
    total.backward()
    assert abs(crit.alpha1.grad.item()) < 1e-5
