"""Class proxy codes (method.md section 1)."""

from __future__ import annotations

import pytest
import torch

from fusnet.errors import ConfigError
from fusnet.models.proxy_codes import (
    class_proxy_codes,
    code_diagnostics,
    fish_proxy_codes,
    procrustes,
    sign_pm1,
)


def test_shape_dtype_and_values() -> None:
    codes = class_proxy_codes(10, 12)
    assert codes.shape == (10, 12)
    assert codes.dtype == torch.float32
    assert bool(((codes == 1) | (codes == -1)).all())


def test_sign_of_zero_is_plus_one() -> None:
    x = torch.tensor([-2.0, -0.0, 0.0, 3.0])
    assert sign_pm1(x).tolist() == [-1.0, 1.0, 1.0, 1.0]


def test_deterministic_per_seed_and_global_rng_untouched() -> None:
    state = torch.get_rng_state()
    a = class_proxy_codes(30, 24, seed=3)
    b = class_proxy_codes(30, 24, seed=3)
    c = class_proxy_codes(30, 24, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def _random_orthogonal(k: int, gen: torch.Generator) -> torch.Tensor:
    q, r = torch.linalg.qr(torch.randn(k, k, generator=gen, dtype=torch.float64))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed


def test_procrustes_is_orthogonal_and_maximises_trace() -> None:
    gen = torch.Generator().manual_seed(0)
    k = 8
    m = torch.randn(k, k, generator=gen, dtype=torch.float64)
    r = procrustes(m)
    torch.testing.assert_close(r @ r.T, torch.eye(k, dtype=torch.float64))
    best = torch.trace(r.T @ m)
    # the maximum of trace(Rᵀ M) over orthogonal R is the nuclear norm of M
    torch.testing.assert_close(best, torch.linalg.svdvals(m).sum())
    for _ in range(50):
        q = _random_orthogonal(k, gen)
        assert torch.trace(q.T @ m) <= best + 1e-9
    # the authors' U @ W (torch.svd's W, untransposed) is orthogonal but not optimal
    u, _, w = torch.svd(m)
    assert torch.trace((u @ w).T @ m) < best - 1e-6


def test_objective_never_increases() -> None:
    result = fish_proxy_codes(100, 48, iterations=15, seed=0)
    steps = torch.tensor(result.steps, dtype=torch.float64)
    assert len(result.steps) == 4 * 15 - 1
    # J = ||T - Ul V||² + δ||B - R V||² after every block update (exact block minimisers)
    assert bool((steps[1:] <= steps[:-1] + 1e-9 * steps[:-1].abs()).all())
    # Observed (not guaranteed): the quantisation term alone also falls here.
    quant = [h["quantization"] for h in result.history]
    assert quant[-1] < quant[0]
    # With T = I and V of full row rank, the fit term is C - k whatever V is.
    assert result.history[-1]["fit"] == pytest.approx(100 - 48, abs=1e-2)


@pytest.mark.parametrize("bits", [12, 24, 32, 48])
def test_distances_of_100_classes(bits: int) -> None:
    diag = code_diagnostics(class_proxy_codes(100, bits))
    assert diag["hamming_mean"] == pytest.approx(bits / 2, abs=0.1 * bits)
    assert sum(diag["hamming_histogram"]) == 100 * 99 // 2
    if bits >= 24:
        assert diag["hamming_min"] > 0
        assert diag["collisions"] == 0
        assert diag["unique_codes"] == 100


def test_more_bits_than_classes() -> None:
    codes = class_proxy_codes(5, 48)
    diag = code_diagnostics(codes)
    assert codes.shape == (5, 48)
    assert diag["collisions"] == 0
    assert diag["hamming_min"] > 0


def test_diagnostics_on_hand_made_codes() -> None:
    codes = torch.tensor(
        [
            [1, 1, 1],
            [1, 1, 1],
            [-1, -1, -1],
            [1, 1, 1],
            [1, -1, 1],
        ],
        dtype=torch.float32,
    )
    diag = code_diagnostics(codes)
    # identical rows 0, 1, 3 -> pairs (0,1), (0,3), (1,3)
    assert diag["collisions"] == 3
    assert diag["unique_codes"] == 3
    # distances: row 2 is 3 from rows 0, 1, 3 and 2 from row 4; row 4 is 1 from 0, 1, 3
    assert diag["hamming_histogram"] == [3, 3, 1, 3]
    assert diag["hamming_min"] == 0
    assert diag["hamming_max"] == 3
    assert diag["hamming_mean"] == pytest.approx((0 * 3 + 1 * 3 + 2 * 1 + 3 * 3) / 10)
    assert diag["bit_mean"] == pytest.approx([0.6, 0.2, 0.6])
    assert diag["bit_balance_max_abs"] == pytest.approx(0.6)


def test_diagnostics_single_class_and_bad_values() -> None:
    diag = code_diagnostics(torch.ones(1, 4))
    assert diag["collisions"] == 0
    assert diag["hamming_min"] != diag["hamming_min"]  # NaN
    with pytest.raises(ValueError, match="-1 and \\+1"):
        code_diagnostics(torch.zeros(3, 4))


@pytest.mark.parametrize(
    ("num_classes", "bits", "iterations", "delta"),
    [(0, 12, 15, 1e-4), (10, 0, 15, 1e-4), (10, 12, -1, 1e-4), (10, 12, 15, 0.0)],
)
def test_bad_arguments(num_classes: int, bits: int, iterations: int, delta: float) -> None:
    with pytest.raises(ConfigError):
        class_proxy_codes(num_classes, bits, iterations=iterations, delta=delta)
