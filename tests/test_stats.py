"""Paired t-test and multi-seed summary, against hand computations.

The t distribution has closed forms for 1 and 2 degrees of freedom, used here
so the expected p-values and critical values need no statistics library:

- df = 1 (Cauchy): ``F(t) = 1/2 + atan(t) / pi``, so ``p_two = 1 - 2 atan(|t|) / pi``
  and the ``q`` quantile is ``tan(pi (q - 1/2))``.
- df = 2: ``F(t) = 1/2 + t / (2 sqrt(2 + t^2))``, so ``p_two = 1 - |t| / sqrt(2 + t^2)``
  and, with ``u = q - 1/2``, the ``q`` quantile is ``2u sqrt(2 / (1 - 4u^2))``.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from fusnet.experiments.stats import PairedTTest, mean_and_spread, paired_ttest


def _t2_quantile(q: float) -> float:
    u = q - 0.5
    return 2.0 * u * math.sqrt(2.0 / (1.0 - 4.0 * u * u))


def _t2_p_two(t: float) -> float:
    return 1.0 - abs(t) / math.sqrt(2.0 + t * t)


def _t1_quantile(q: float) -> float:
    return math.tan(math.pi * (q - 0.5))


def _t1_p_two(t: float) -> float:
    return 1.0 - 2.0 * math.atan(abs(t)) / math.pi


def test_quantile_formulas_match_textbook_values() -> None:
    # The printed two-sided 95% critical values: 12.706 (df 1), 4.303 (df 2).
    assert _t1_quantile(0.975) == pytest.approx(12.706, abs=5e-4)
    assert _t2_quantile(0.975) == pytest.approx(4.303, abs=5e-4)


def test_three_pairs_by_hand() -> None:
    a = [3.0, 5.0, 8.0]
    b = [1.0, 2.0, 4.0]
    # d = [2, 3, 4]: mean 3, sum of squares 1 + 0 + 1 = 2, var 2/2 = 1.
    mean, sd, n = 3.0, 1.0, 3
    sem = sd / math.sqrt(n)
    t = mean / sem  # sqrt(27)
    crit = _t2_quantile(0.975)
    res = paired_ttest(a, b)
    assert isinstance(res, PairedTTest)
    assert res.n == 3 and res.df == 2
    assert res.mean == pytest.approx(mean)
    assert res.std == pytest.approx(sd)
    assert res.sem == pytest.approx(sem)
    assert res.t == pytest.approx(t)
    assert res.ci_lower == pytest.approx(mean - crit * sem)
    assert res.ci_upper == pytest.approx(mean + crit * sem)
    assert res.p_two_sided == pytest.approx(_t2_p_two(t))  # 1 - sqrt(27/29)
    assert res.p_two_sided == pytest.approx(1.0 - math.sqrt(27.0 / 29.0))
    # observed direction: mean > 0, so H1 is mean(a - b) > 0
    assert res.alternative == "greater"
    assert res.p_one_sided == pytest.approx(_t2_p_two(t) / 2.0)
    assert res.confidence == 0.95


def test_two_pairs_negative_difference_by_hand() -> None:
    a = [1.0, 2.0]
    b = [2.0, 5.0]
    # d = [-1, -3]: mean -2, var ((1)^2 + (1)^2) / 1 = 2, sem = sqrt(2)/sqrt(2) = 1, t = -2.
    res = paired_ttest(a, b)
    assert res.df == 1
    assert res.mean == pytest.approx(-2.0)
    assert res.std == pytest.approx(math.sqrt(2.0))
    assert res.sem == pytest.approx(1.0)
    assert res.t == pytest.approx(-2.0)
    assert res.p_two_sided == pytest.approx(_t1_p_two(-2.0))
    assert res.alternative == "less"
    assert res.p_one_sided == pytest.approx(_t1_p_two(-2.0) / 2.0)
    crit = _t1_quantile(0.975)
    assert res.ci_lower == pytest.approx(-2.0 - crit)
    assert res.ci_upper == pytest.approx(-2.0 + crit)


def test_one_sided_direction_fixed_in_advance() -> None:
    a, b = [1.0, 2.0], [2.0, 5.0]  # t = -2, df = 1
    p_two = _t1_p_two(-2.0)
    less = paired_ttest(a, b, one_sided="less")
    greater = paired_ttest(a, b, one_sided="greater")
    assert less.alternative == "less" and less.p_one_sided == pytest.approx(p_two / 2)
    assert greater.alternative == "greater"
    assert greater.p_one_sided == pytest.approx(1.0 - p_two / 2)
    assert less.p_two_sided == greater.p_two_sided


def test_other_confidence_level() -> None:
    res = paired_ttest([3.0, 5.0, 8.0], [1.0, 2.0, 4.0], confidence=0.90)
    half = _t2_quantile(0.95) / math.sqrt(3.0)
    assert res.ci_lower == pytest.approx(3.0 - half)
    assert res.ci_upper == pytest.approx(3.0 + half)
    assert res.confidence == 0.90


def test_swapping_arguments_flips_signs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=9), rng.normal(size=9)
    ab, ba = paired_ttest(a, b), paired_ttest(b, a)
    assert ba.mean == pytest.approx(-ab.mean)
    assert ba.t == pytest.approx(-ab.t)
    assert ba.std == pytest.approx(ab.std)
    assert ba.ci_lower == pytest.approx(-ab.ci_upper)
    assert ba.p_two_sided == pytest.approx(ab.p_two_sided)
    assert ba.p_one_sided == pytest.approx(ab.p_one_sided)


def test_agrees_with_scipy_on_random_data() -> None:
    rng = np.random.default_rng(1)
    a = rng.normal(size=15)
    b = a + rng.normal(0.3, 1.0, size=15)
    res = paired_ttest(a, b)
    ref = sps.ttest_rel(a, b)
    ci = ref.confidence_interval(0.95)
    assert res.t == pytest.approx(ref.statistic)
    assert res.p_two_sided == pytest.approx(ref.pvalue)
    assert res.df == ref.df
    assert res.ci_lower == pytest.approx(ci.low)
    assert res.ci_upper == pytest.approx(ci.high)


def test_accepts_numpy_and_pandas() -> None:
    lst = paired_ttest([3.0, 5.0, 8.0], [1.0, 2.0, 4.0])
    arr = paired_ttest(np.array([3, 5, 8]), np.array([1, 2, 4]))
    ser = paired_ttest(pd.Series([3.0, 5.0, 8.0]), pd.Series([1.0, 2.0, 4.0]))
    assert lst == arr == ser


def test_to_dict_and_frozen() -> None:
    res = paired_ttest([3.0, 5.0, 8.0], [1.0, 2.0, 4.0])
    d = res.to_dict()
    assert list(d)[:9] == [
        "mean", "std", "sem", "ci_lower", "ci_upper", "t", "df", "p_one_sided", "p_two_sided"
    ]  # fmt: skip
    assert d["df"] == 2 and d["alternative"] == "greater" and d["n"] == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.mean = 0.0  # type: ignore[misc]


def test_constant_differences(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fusnet.experiments.stats"):
        res = paired_ttest([2.0, 3.0, 4.0], [1.0, 2.0, 3.0])
    assert "degenerate" in caplog.text
    assert res.std == 0.0 and res.sem == 0.0
    assert res.t == math.inf
    assert res.p_two_sided == 0.0 and res.p_one_sided == 0.0
    assert res.ci_lower == res.ci_upper == 1.0
    assert paired_ttest([2.0, 3.0], [1.0, 2.0], one_sided="less").p_one_sided == 1.0
    zero = paired_ttest([1.0, 2.0], [1.0, 2.0])
    assert math.isnan(zero.t) and math.isnan(zero.p_two_sided)


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "lengths 3 and 2"),
        ([1.0], [2.0], {}, "at least 2 pairs"),
        ([1.0, float("nan")], [1.0, 2.0], {}, "non-finite values at positions \\[1\\]"),
        ([[1.0, 2.0]], [[1.0, 2.0]], {}, "1-D"),
        (["x", "y"], [1.0, 2.0], {}, "sequence of numbers"),
        ([1.0, 2.0], [2.0, 5.0], {"confidence": 95}, "between 0 and 1"),
        ([1.0, 2.0], [2.0, 5.0], {"one_sided": "two-sided"}, "one_sided"),
    ],
)
def test_bad_input(a: list, b: list, kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        paired_ttest(a, b, **kwargs)


def test_mean_and_spread_by_hand() -> None:
    # [1, 2, 6]: mean 3, squares 4 + 1 + 9 = 14, var 7.
    out = mean_and_spread([1.0, 2.0, 6.0])
    sem = math.sqrt(7.0) / math.sqrt(3.0)
    half = _t2_quantile(0.975) * sem
    assert out["n"] == 3
    assert out["mean"] == pytest.approx(3.0)
    assert out["std"] == pytest.approx(math.sqrt(7.0))
    assert out["sem"] == pytest.approx(sem)
    assert out["ci_half_width"] == pytest.approx(half)
    assert out["ci_lower"] == pytest.approx(3.0 - half)
    assert out["ci_upper"] == pytest.approx(3.0 + half)


def test_mean_and_spread_two_values_df1() -> None:
    out = mean_and_spread([70.0, 72.0], confidence=0.95)
    # std = sqrt(2), sem = 1, half = tan(0.475 pi) = 12.706
    assert out["std"] == pytest.approx(math.sqrt(2.0))
    assert out["sem"] == pytest.approx(1.0)
    assert out["ci_half_width"] == pytest.approx(_t1_quantile(0.975))


def test_mean_and_spread_single_value() -> None:
    out = mean_and_spread([81.5])
    assert out["mean"] == 81.5 and out["n"] == 1
    assert all(math.isnan(out[k]) for k in ("std", "sem", "ci_half_width", "ci_lower"))


def test_mean_and_spread_bad_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        mean_and_spread([])
    with pytest.raises(ValueError, match="non-finite"):
        mean_and_spread([1.0, math.inf])
    with pytest.raises(ValueError, match="between 0 and 1"):
        mean_and_spread([1.0, 2.0], confidence=1.0)
